"""Dataset-card templates (Jinja) and their renderer and validator.

``render_card(split, context)`` fills ``<split>.md.j2`` (which extends
``base.md.j2``) with the build's context: configs and features for the YAML
header, the statistics tables of :func:`fineproofs.cards.stats.card_tables` (rendered by
the ``table`` macro), counts per stage with drop reasons, provenance (models,
revisions, prompt versions, sampling, thresholds), the decontamination report and
the licence of every source.

``validate_card(text, ...)`` is the offline check every written card passes.
``huggingface_hub`` 2.4's own ``DatasetCard.validate()`` posts the card to the Hub's
``/api/validate-yaml`` (network; ``HfApi.create_commit`` calls the same endpoint
when a README.md is pushed, so a push is validated by the Hub itself). Offline we
check what can be checked locally with the two libraries:

- the card parses with ``huggingface_hub.DatasetCard`` (YAML block, mapping) and its
  metadata survives a ``DatasetCardData`` round trip;
- ``license`` is a Hub licence id (``other`` needs ``license_name``), ``language``
  and ``size_categories`` are in the lists ``datasets`` ships
  (``datasets/utils/resources``), ``task_categories`` are Hub task ids, ``tags`` are
  strings;
- ``configs`` pass ``datasets``' own ``data_files`` validation, exactly one is the
  default, and ``dataset_info`` names the same configs; both parse with
  ``MetadataConfigs`` / ``DatasetInfosDict.from_dataset_card_data`` and the features
  equal the expected ones;
- with ``root``: every config's ``data_files`` match files, and every image the card
  links exists.
"""

from __future__ import annotations

import fnmatch
import json
import re
from importlib import resources
from pathlib import Path

import jinja2

from fineproofs.errors import CardError

REPO_PLACEHOLDER = "ORG/NAME"
# the card's last line (invisible on the Hub): a card without it was cut while being written
CARD_END = "<!-- end of the fineproofs card -->"

# Hub licence identifiers (https://huggingface.co/docs/hub/repositories-licenses)
HUB_LICENSES = frozenset(
    """
apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0
cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0
cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0
cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0
gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl mpl-2.0 odc-by
odbl openmdw-1.0 openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license
fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma apple-amlr
apple-ascl unknown other
""".split()
)

# Hub task ids usable in task_categories (the dataset-relevant ones)
HUB_TASKS = frozenset(
    """
text-generation text2text-generation question-answering text-classification token-classification
table-question-answering zero-shot-classification translation summarization feature-extraction fill-mask
sentence-similarity text-ranking text-retrieval reinforcement-learning robotics tabular-classification
tabular-regression time-series-forecasting image-classification image-to-text text-to-image
automatic-speech-recognition text-to-speech audio-classification visual-question-answering
document-question-answering graph-ml other
""".split()
)


class CardValidationError(CardError):
    """The card would not pass the Hub's checks; ``problems`` lists why."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("dataset card is invalid:\n" + "\n".join(f"  - {p}" for p in problems))


def _env() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(lambda name: (resources.files("fineproofs.cards") / name).read_text())
    # Markdown, not HTML: values from the data are escaped by the `cell` filter where they land in tables
    env = jinja2.Environment(  # noqa: S701
        loader=loader,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = _cell
    return env


def _cell(value) -> str:
    """A markdown table cell: pipes escaped, newlines flattened, HTML shown as text
    (a source name or licence from the data can never become markup in the card)."""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\n", " ")


def render_card(split: str, context: dict) -> str:
    text = _env().get_template(f"{split}.md.j2").render(**context)
    return text.rstrip("\n") + f"\n\n{CARD_END}\n"


def _resource_json(name: str):
    import datasets.utils.resources as res

    return json.loads((resources.files(res) / name).read_text())


_LISTS = ("configs", "dataset_info", "language", "task_categories", "size_categories", "tags")


def _shape_problems(data: dict) -> list[str]:
    """Metadata values of the wrong type (a number where a list of mappings goes, ...)."""
    out = [
        f"`{k}` must be a list, not {type(data[k]).__name__}"
        for k in _LISTS
        if k in data and data[k] is not None and not isinstance(data[k], (list, str))
    ]
    for k in ("configs", "dataset_info"):
        items = data.get(k)
        if isinstance(items, list) and not all(isinstance(c, dict) for c in items):
            out.append(f"every entry of `{k}` must be a mapping")
        elif isinstance(items, list):
            for c in items:
                files = c.get("data_files")
                if files is not None and not isinstance(files, (str, list, dict)):
                    out.append(f"`{k}` entry {c.get('config_name')!r}: data_files must be a path, a list or a mapping")
    return out


def validate_card(text: str, *, expected_features: dict | None = None, root: Path | None = None):
    """Check a dataset card offline (see module docstring); returns the parsed
    ``huggingface_hub.DatasetCard`` or raises :class:`CardValidationError`."""
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    problems: list[str] = []
    try:
        card = DatasetCard(text)
    except Exception as e:  # huggingface_hub raises ValueError on a bad YAML block
        raise CardValidationError([f"huggingface_hub cannot parse the card: {e}"]) from e
    if not text.startswith("---\n"):
        problems.append("the card must start with a YAML metadata block (---)")
    data = card.data.to_dict()
    if shape := _shape_problems(data):  # the checks below assume these shapes
        raise CardValidationError(shape)
    try:
        DatasetCardData(**data)
    except Exception as e:
        problems.append(f"metadata does not round-trip through DatasetCardData: {e}")
    for key in ("license", "language", "task_categories", "size_categories", "pretty_name", "configs", "dataset_info"):
        if key not in data or data[key] in (None, "", []):
            problems.append(f"metadata is missing `{key}`")

    lic = data.get("license")
    for v in lic if isinstance(lic, list) else [lic] if lic else []:
        if v not in HUB_LICENSES:
            problems.append(f"license {v!r} is not a Hub licence id (use one of the ids or `other`)")
    if lic == "other" and not data.get("license_name"):
        problems.append("license `other` needs `license_name`")
    langs = _resource_json("languages.json")
    for v in data.get("language") or []:
        if v not in langs:
            problems.append(f"language {v!r} is not a known language code")
    sizes = _resource_json("size_categories.json")
    for v in data.get("size_categories") or []:
        if v not in sizes:
            problems.append(f"size_categories {v!r} is not one of {sizes}")
    for v in data.get("task_categories") or []:
        if v not in HUB_TASKS:
            problems.append(f"task_categories {v!r} is not a Hub task id")
    if not all(isinstance(t, str) for t in data.get("tags") or []):
        problems.append("tags must be strings")

    configs = data.get("configs") or []
    names = [c.get("config_name") for c in configs if isinstance(c, dict)]
    if len(names) != len(configs) or None in names:
        problems.append("every entry of `configs` needs a `config_name`")
    if len(set(names)) != len(names):
        problems.append(f"duplicate config names: {names}")
    if configs and sum(1 for c in configs if isinstance(c, dict) and c.get("default")) != 1:
        problems.append("exactly one config must be marked `default: true`")
    for c in configs:
        try:
            MetadataConfigs._raise_if_data_files_field_not_valid(c)
        except ValueError as e:
            problems.append(f"config {c.get('config_name')!r}: invalid data_files: {str(e).strip().splitlines()[0]}")
    info_names = [i.get("config_name") for i in data.get("dataset_info") or []]
    if sorted(n for n in info_names if n) != sorted(n for n in names if n):
        problems.append(f"dataset_info configs {info_names} differ from configs {names}")
    try:
        MetadataConfigs.from_dataset_card_data(card.data)
        infos = DatasetInfosDict.from_dataset_card_data(card.data)
    except Exception as e:
        problems.append(f"datasets cannot read the configs / dataset_info: {e}")
        infos = {}
    for name, features in (expected_features or {}).items():
        got = infos.get(name)
        if got is None or got.features != features:
            problems.append(f"config {name!r}: dataset_info features differ from the expected features")

    if root is not None:
        root = Path(root)
        files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        for c in configs:
            for df in c.get("data_files") or []:
                pats = df["path"] if isinstance(df, dict) else df
                for pat in [pats] if isinstance(pats, str) else pats:
                    if not any(fnmatch.fnmatch(f, pat) for f in files):
                        problems.append(f"config {c.get('config_name')!r}: no file matches {pat!r}")
        for link in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", card.text):
            if "://" not in link and not (root / link).is_file():
                problems.append(f"the card links {link}, which does not exist next to it")
    if not card.text.strip():
        problems.append("the card has no description")
    if problems:
        raise CardValidationError(problems)
    return card
