"""Chat templates for training with a loss on the assistant turn only.

TRL's ``assistant_only_loss`` needs a chat template with ``{% generation %}`` /
``{% endgeneration %}`` markers around what the assistant says. Few models ship one:

1. a template that already has the markers is kept;
2. for families TRL knows (Qwen3, Llama 3, ...) TRL's patched training template is used;
3. otherwise, for ChatML models (``<|im_start|>role\\n...<|im_end|>``: SmolLM2, Qwen),
   fineproofs builds a training template that renders **exactly** like the model's
   own: the default system prompt and the generation prompt are read off the
   original by rendering probe conversations, and the candidate is accepted only if
   it reproduces the original's text on every probe (with and without a system turn,
   with and without a thinking block, with the generation prompt). Two assistant
   renderings are tried: the content verbatim (SmolLM2), and Qwen3-thinking style
   (``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``, the form the FineProofs-SFT
   ``messages`` already have).

The generation span covers the assistant's text and its ``<|im_end|>``, so the
model learns to stop; the newline after it, which the model never generates, is
outside the span.
"""

from __future__ import annotations

import json

from fineproofs.config import ConfigError

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

_PROBES = [
    ([{"role": "user", "content": "PROBE-Q"}], True),
    ([{"role": "user", "content": "PROBE-Q"}, {"role": "assistant", "content": "PROBE-P"}], False),
    (
        [
            {"role": "user", "content": "PROBE-Q"},
            {"role": "assistant", "content": "<think>\nPROBE-R\n</think>\n\nPROBE-P"},
        ],
        False,
    ),
    (
        [
            {"role": "system", "content": "PROBE-S"},
            {"role": "user", "content": "PROBE-Q"},
            {"role": "assistant", "content": "PROBE-P"},
        ],
        False,
    ),
]


def _lit(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def chatml_training_template(
    default_system: str | None = None, generation_prompt: str = "", think: bool = False
) -> str:
    """A ChatML template with ``{% generation %}`` markers.

    ``default_system``: system text inserted when the conversation has none (SmolLM2
    does this); ``generation_prompt``: what ``add_generation_prompt`` appends (default
    ``<|im_start|>assistant\\n``); ``think``: render assistant turns Qwen3-thinking style.
    """
    gen = generation_prompt or f"{IM_START}assistant\n"
    parts = ["{%- for message in messages %}"]
    if default_system is not None:
        block = f"{IM_START}system\n{default_system}{IM_END}\n"
        parts.append("{%- if loop.first and messages[0]['role'] != 'system' %}{{- " + _lit(block) + " }}{%- endif %}")
    parts.append("{%- if message['role'] == 'assistant' %}")
    parts.append("{{- " + _lit(f"{IM_START}assistant\n") + " }}")
    if think:
        parts.append(
            "{%- set content = message['content'] %}{%- set reasoning = '' %}"
            "{%- if message.reasoning_content is string %}{%- set reasoning = message.reasoning_content %}"
            "{%- elif '</think>' in content %}"
            "{%- set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
            "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}{%- endif %}"
            "{%- generation %}{{- '<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') + "
            + _lit(IM_END)
            + " }}{%- endgeneration %}"
        )
    else:
        parts.append("{%- generation %}{{- message['content'] + " + _lit(IM_END) + " }}{%- endgeneration %}")
    parts.append("{{- '\\n' }}")
    parts.append("{%- else %}")
    parts.append(
        "{{- " + _lit(IM_START) + " + message['role'] + '\\n' + message['content'] + " + _lit(IM_END + "\n") + " }}"
    )
    parts.append("{%- endif %}")
    parts.append("{%- endfor %}")
    parts.append("{%- if add_generation_prompt %}{{- " + _lit(gen) + " }}{%- endif %}")
    return "".join(parts)


def _render(tok, messages, add_generation_prompt: bool, template: str | None = None) -> str:
    return tok.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt, chat_template=template
    )


def renders_like(tok, template: str, reference: str | None = None) -> bool:
    """Whether ``template`` renders every probe exactly like ``reference`` (default: the tokenizer's own)."""
    for msgs, agp in _PROBES:
        try:
            if _render(tok, msgs, agp, template) != _render(tok, msgs, agp, reference):
                return False
        except Exception:
            return False
    return True


def _chatml_parts(tok) -> tuple[str | None, str]:
    user = [{"role": "user", "content": "PROBE-Q"}]
    plain = _render(tok, user, False)
    with_gen = _render(tok, user, True)
    if not with_gen.startswith(plain):
        raise ConfigError("the model's chat template changes earlier text when adding the generation prompt")
    gen = with_gen[len(plain) :]
    head = plain.split(f"{IM_START}user\n", 1)[0]
    default_system = None
    if head.startswith(f"{IM_START}system\n") and head.endswith(f"{IM_END}\n"):
        default_system = head[len(f"{IM_START}system\n") : -len(f"{IM_END}\n")]
    return default_system, gen


def has_generation_markers(template: str | None) -> bool:
    from trl.chat_template_utils import has_generation_markers as _has

    return bool(template) and _has(template)


def training_chat_template(tok, choice: str = "auto") -> str:
    """The chat template to train with (see the module docstring for the order tried)."""
    if choice not in ("auto", "", None):
        from pathlib import Path

        path = Path(choice)
        if not path.is_file():
            raise ConfigError(f"model.chat_template: {choice} is not a file (use 'auto' or a .jinja path)")
        text = path.read_text()
        if not has_generation_markers(text):
            raise ConfigError(f"model.chat_template: {choice} has no {{% generation %}} markers")
        return text
    original = tok.chat_template
    if isinstance(original, dict):
        original = original.get("default")
    if not original:
        raise ConfigError("the tokenizer has no chat template; set model.chat_template to a .jinja file")
    if has_generation_markers(original):
        return original
    try:
        from trl.chat_template_utils import get_training_chat_template

        patched = get_training_chat_template(tok)
        if patched:
            return patched
    except ValueError:
        pass
    if IM_START in original:
        default_system, gen = _chatml_parts(tok)
        for think in (False, True):
            cand = chatml_training_template(default_system, gen, think=think)
            if renders_like(tok, cand):
                return cand
    raise ConfigError(
        "cannot build a training chat template with {% generation %} markers that renders like this model's "
        "template; write one and set model.chat_template to its path"
    )
