"""Dataset-card templates (Jinja) and their renderer.

``render_card(split, context)`` fills ``<split>.md.j2`` (which extends
``base.md.j2``) with the build's context: configs and features for the YAML
header, counts per stage with drop reasons, provenance (models, revisions,
prompt versions, sampling, thresholds) and the decontamination report.
"""

from __future__ import annotations

from importlib import resources

import jinja2


def _env() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(lambda name: (resources.files("fineproofs.cards") / name).read_text())
    env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    return env


def render_card(split: str, context: dict) -> str:
    return _env().get_template(f"{split}.md.j2").render(**context)
