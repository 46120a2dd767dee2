"""Statistics of a built split: the tables the dataset card shows, and its plots.

One function, :func:`card_tables`, computes every table of the card from the run
directory: the parquet shards (read with polars) for the distributions, and
``card_data.json`` (written next to the card by
:func:`fineproofs.cards.card.write_card`) for what the shards cannot tell:
counts and drop reasons per stage, the decontamination report, provenance and
licences. The card template renders these tables as markdown, ``fineproofs stats``
renders the very same tables with rich, so the two never disagree.

Tables (``key``: content):

- ``rows``: rows per config;
- ``counts`` / ``dropped``: what each stage kept, what it dropped and why;
- ``grades``: grade histogram 0-7 (SFT: grader grades of the kept samples, config
  ``all``; RL: judge grades of every graded rollout);
- ``reward_mean``: distribution of the student's mean reward per problem (SFT: the
  reward column of ``default``; RL: ``reward_mean``), in tenths;
- ``sources`` / ``categories``: problems and rows per source / per category (RL rows
  carry no category: it is joined from ``problems/problems.jsonl`` on the statement);
- ``decontamination``: per benchmark, problems checked and flagged; ``decontam_methods``:
  flags per method; ``decontam_probes``: the detector's recall per disguise kind and its
  false positives on the project's probe set, with the build's benchmarks indexed;
- ``provenance``: model, revision and sampling per role; ``licences``: per source.

Plots (matplotlib, Agg backend) go to ``plots/*.png`` next to the card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fineproofs import rundir
from fineproofs.cards.spec import CARDS, card_spec, detect_split
from fineproofs.errors import DataError

CARD_DATA = rundir.CARD_DATA
PLOTS_DIR = "plots"
GRADES = list(range(8))
REWARD_BINS = [round(i / 10, 1) for i in range(11)]


def read_split(run_dir: Path) -> dict[str, Any]:
    """config name -> polars DataFrame of all its shards (configs in card order)."""
    import polars as pl

    data = Path(run_dir) / "data"
    frames = {}
    if not data.is_dir():
        return frames
    names = sorted(p.name for p in data.iterdir() if p.is_dir() and any(p.glob("*.parquet")))
    for name in sorted(names, key=lambda n: (n != "default", n)):
        files = sorted(str(f) for f in (data / name).glob("*.parquet"))
        try:
            frames[name] = pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")
        except (pl.exceptions.PolarsError, OSError) as e:
            raise DataError(
                f"{data / name}: a parquet shard is damaged ({str(e).splitlines()[0]}); re-run the build to rewrite it"
            ) from e
    return frames


def read_card_data(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CARD_DATA
    if not path.exists():
        return {}
    data = rundir.read_manifest(path)
    wrong = _card_data_errors(data)
    if wrong:
        raise DataError(f"{path} is damaged ({wrong[0]}); re-run the build to rewrite it")
    return data


def _is_map_of(value: Any, kind: type | tuple[type, ...], keys: tuple[str, ...] = ()) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, kind) and all(k in v for k in keys) if keys else isinstance(v, kind) for v in value.values()
    )


def _card_data_errors(data: dict[str, Any]) -> list[str]:
    """What in ``card_data.json`` does not have the shape :func:`card_tables` reads."""
    scalar = (str, int, float, bool, type(None))
    role = ("model", "temperature", "top_p", "max_tokens")
    dec = data.get("decontamination")
    checks = {
        "counts": lambda v: _is_map_of(v, scalar),
        "dropped": lambda v: _is_map_of(v, dict) and all(_is_map_of(r, scalar) for r in v.values()),
        "thresholds": lambda v: isinstance(v, dict),
        "roles": lambda v: _is_map_of(v, dict, role),
        "source_licences": lambda v: (
            isinstance(v, list) and all(isinstance(x, dict) and "source" in x and "licence" in x for x in v)
        ),
        "decontamination": lambda v: v is None or isinstance(v, dict),
        "pretty_name": lambda v: isinstance(v, (str, type(None))),
    }
    wrong = [f"{k} has the wrong shape" for k, ok in checks.items() if k in data and not ok(data[k])]
    if isinstance(dec, dict):
        for k, ok in (
            ("benchmarks", lambda v: _is_map_of(v, dict)),
            ("methods", lambda v: isinstance(v, list)),
            ("by_method", lambda v: _is_map_of(v, scalar)),
            ("probes", lambda v: isinstance(v, dict) and _is_map_of(v.get("kinds") or {}, dict, ("probes", "caught"))),
        ):
            if dec.get(k) is not None and not ok(dec[k]):
                wrong.append(f"decontamination.{k} has the wrong shape")
    return wrong


def _table(key: str, title: str, columns: list[str], rows: list[list[Any]], note: str = "") -> dict[str, Any]:
    return {"key": key, "title": title, "columns": columns, "rows": rows, "note": note}


def _bin_label(i: int) -> str:
    lo, hi = REWARD_BINS[i], REWARD_BINS[i + 1]
    return f"[{lo:.1f}, {hi:.1f}{']' if i == 9 else ')'}"


def distributions(run_dir: Path, frames: dict[str, Any] | None = None) -> dict[str, Any]:
    """Raw distributions (counts) for the tables and the plots."""
    import polars as pl

    frames = read_split(run_dir) if frames is None else frames
    split = detect_split(frames)
    out: dict[str, Any] = {
        "split": split,
        "rows": {k: v.height for k, v in frames.items()},
        "grades": dict.fromkeys(GRADES, 0),
        "reward_bins": [0] * 10,
        "reward_missing": 0,
        "sources": [],
        "categories": [],
    }
    if split not in CARDS:  # no rows
        return out
    series = card_spec(split).series(frames, Path(run_dir))
    grades, rewards, per_problem, samples = series.grades, series.rewards, series.per_problem, series.samples
    for g, n in grades.value_counts().iter_rows():
        if g is not None and 0 <= g <= 7:
            out["grades"][int(g)] = int(n)
    out["reward_missing"] = int(rewards.null_count() + rewards.is_nan().sum()) if rewards.len() else 0
    valid = rewards.drop_nulls().drop_nans() if rewards.dtype.is_float() else rewards.drop_nulls()
    for v in valid.to_list():
        out["reward_bins"][min(int(v * 10 + 1e-9), 9)] += 1
    for col, key in (("source", "sources"), ("category", "categories")):
        p = per_problem.with_columns(pl.col(col).fill_null("").replace("", "unknown")).group_by(col).len()
        s = (
            samples.with_columns(pl.col(col).fill_null("").replace("", "unknown"))
            .group_by(col)
            .len()
            .rename({"len": "rows"})
        )
        both = p.join(s, on=col, how="full", coalesce=True).fill_null(0).sort(["len", col], descending=[True, False])
        out[key] = [(r[col], int(r["len"]), int(r["rows"])) for r in both.iter_rows(named=True)]
    return out


def card_tables(
    run_dir: Path, meta: dict[str, Any] | None = None, dist: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Every table of the card, keyed by ``key`` (insertion order = card order)."""
    meta = read_card_data(run_dir) if meta is None else meta
    dist = distributions(run_dir) if dist is None else dist
    split = dist["split"]
    t: dict[str, dict[str, Any]] = {}
    t["rows"] = _table("rows", "Rows per config", ["config", "rows"], [[k, v] for k, v in dist["rows"].items()])
    t["counts"] = _table(
        "counts", "Counts per stage", ["stage", "kept"], [[k, v] for k, v in meta.get("counts", {}).items()]
    )
    t["dropped"] = _table(
        "dropped",
        "Dropped, with reasons",
        ["stage", "reason", "count"],
        [[s, r, n] for s, reasons in meta.get("dropped", {}).items() for r, n in reasons.items()],
    )
    total = sum(dist["grades"].values())
    spec = card_spec(split) if split in CARDS else None
    what = spec.grades_note if spec else ""
    correct = meta.get("thresholds", {}).get("correct_grade")
    grade_rows = []
    for g in GRADES:
        n = dist["grades"][g]
        label = str(g)
        if spec and spec.grade_labels and correct is not None:
            label += " (correct)" if g >= correct else " (incomplete)" if n else ""
        grade_rows.append([label, n, f"{100 * n / total:.1f}%" if total else "-"])
    t["grades"] = _table("grades", "Grade histogram", ["grade", "count", "share"], grade_rows, what)
    rwhat = spec.reward_note if spec else ""
    rrows = [[_bin_label(i), n] for i, n in enumerate(dist["reward_bins"])]
    if dist["reward_missing"]:
        rrows.append(["not measured", dist["reward_missing"]])
    t["reward_mean"] = _table("reward_mean", "reward_mean distribution", ["reward_mean", "problems"], rrows, rwhat)
    t["sources"] = _table(
        "sources", "Problems per source", ["source", "problems", "rows"], [list(r) for r in dist["sources"]]
    )
    t["categories"] = _table(
        "categories", "Problems per category", ["category", "problems", "rows"], [list(r) for r in dist["categories"]]
    )
    dec = meta.get("decontamination") or {}
    t["decontamination"] = _table(
        "decontamination",
        "Decontamination",
        ["benchmark", "problems", "flagged"],
        [[k, v.get("problems", 0), v.get("flagged", 0)] for k, v in (dec.get("benchmarks") or {}).items()],
        "methods: " + (", ".join(dec.get("methods") or []) or "none (not decontaminated)"),
    )
    t["decontam_methods"] = _table(
        "decontam_methods",
        "Flags per decontamination method",
        ["method", "flagged"],
        [[k, v] for k, v in (dec.get("by_method") or {}).items()],
    )
    probes = dec.get("probes") or {}
    kinds = probes.get("kinds") or {}
    t["decontam_probes"] = _table(
        "decontam_probes",
        "Detector on the probe set (fineproofs/data/decontam/probes.json)",
        ["probe kind", "probes", "caught", "rate"],
        [
            [k, v["probes"], v["caught"], round(v["caught"] / v["probes"], 3) if v["probes"] else 0.0]
            for k, v in kinds.items()
        ],
        (
            f"recall {probes.get('disguise_recall')} on mechanical disguises, {probes.get('paraphrase_recall')} "
            f"on paraphrases; {probes.get('false_positives')} of {probes.get('negatives')} unrelated problems "
            "flagged (the negative row counts those)"
        )
        if kinds
        else "",
    )
    t["provenance"] = _table(
        "provenance",
        "Provenance",
        ["role", "model", "revision", "temperature", "top_p", "max tokens", "seed", "samples"],
        [
            [
                r,
                f"`{m['model']}`",
                m.get("revision") or "-",
                m["temperature"],
                m["top_p"],
                m["max_tokens"],
                m.get("seed", "-"),
                m.get("samples", "-"),
            ]
            for r, m in meta.get("roles", {}).items()
        ],
    )
    t["licences"] = _table(
        "licences",
        "Licence of each source",
        ["source", "licence"],
        [[s["source"], s["licence"]] for s in meta.get("source_licences", [])],
    )
    return t


# ---------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------


def write_plots(dist: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """PNG plots next to the card; returns name -> path relative to ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    folder = Path(out_dir) / PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}

    def save(fig, name: str) -> None:
        for ax in fig.axes:
            (ax.xaxis if name.startswith("problems_per") else ax.yaxis).set_major_locator(MaxNLocator(integer=True))
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png", dpi=80, metadata={"Software": None})
        plt.close(fig)
        paths[name] = f"{PLOTS_DIR}/{name}.png"

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(GRADES, [dist["grades"][g] for g in GRADES], color="#4c72b0")
    ax.set_xticks(GRADES)
    ax.set_xlabel("grade (0-7)")
    ax.set_ylabel(CARDS[dist["split"]].unit if dist["split"] in CARDS else "rollouts")
    ax.set_title("Grade histogram")
    save(fig, "grade_histogram")

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar([i / 10 + 0.05 for i in range(10)], dist["reward_bins"], width=0.09, color="#55a868")
    ax.set_xlim(0, 1)
    ax.set_xlabel("reward_mean")
    ax.set_ylabel("problems")
    ax.set_title("reward_mean distribution")
    save(fig, "reward_mean")

    for key, name, title in (
        ("sources", "problems_per_source", "Problems per source"),
        ("categories", "problems_per_category", "Problems per category"),
    ):
        items = dist[key] or [("none", 0, 0)]
        fig, ax = plt.subplots(figsize=(5, 0.6 + 0.35 * len(items)))
        ax.barh([str(x[0]) for x in items][::-1], [x[1] for x in items][::-1], color="#c44e52")
        ax.set_xlabel("problems")
        ax.set_title(title)
        save(fig, name)
    return paths


# ---------------------------------------------------------------------------
# terminal
# ---------------------------------------------------------------------------


def print_stats(run_dir: Path, console=None) -> None:
    """``fineproofs stats``: the card's tables in the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    meta = read_card_data(run_dir)
    dist = distributions(run_dir)
    if dist["split"] == "unknown":
        raise DataError(
            f"{run_dir}: no split found (expected data/<config>/*.parquet): run `fineproofs build` into it first"
        )
    console.print(f"[bold]{meta.get('pretty_name') or Path(run_dir).name}[/] ({dist['split']})")
    if not meta:
        console.print(f"[yellow]{run_dir}/{CARD_DATA} is missing: only the tables computed from the shards[/]")
    for t in card_tables(run_dir, meta, dist).values():
        if not t["rows"] and t["key"] not in ("rows", "decontamination"):
            continue
        console.print(f"\n[bold]{t['title']}[/]")
        table = Table()
        for i, c in enumerate(t["columns"]):
            table.add_column(c, justify="left" if i == 0 or c in ("model", "licence", "reason") else "right")
        for r in t["rows"]:
            table.add_row(*[str(x).replace("`", "") for x in r])
        console.print(table)
        if t["note"]:
            console.print(t["note"].replace("`", ""), style="dim")
