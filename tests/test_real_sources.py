"""The real FineProofs sources (AI-MO/aops, AI-MO/olympiads): presets, field expressions
into nested and list columns, and the published ``source`` labels, on small invented
files shaped like those datasets (``tests/data/sources``). The Hub path runs through
``datasets`` streaming on a local dataset directory (``hf:<dir>``), offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fineproofs import fieldpath
from fineproofs.config import ConfigError, Profile, SourcesConfig, load_profile, profile_text, public_yaml
from fineproofs.pipelines.ingest import run_ingest
from fineproofs.pipelines.sources import ParseError, SourceReader, resolve_sources
from fineproofs.pipelines.sources.rows import map_row

DATA = Path(__file__).parent / "data" / "sources"
AOPS = DATA / "aops_sample.jsonl"
OLYMPIADS = DATA / "olympiads_sample.jsonl"


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _docs(sources: dict) -> list:
    cfg = SourcesConfig.model_validate(sources)
    return list(
        SourceReader(
            resolve_sources(cfg.paths), columns=cfg.columns, licence=cfg.licence, hub_split=cfg.hub_split
        ).run()
    )


def _profile(sources: dict, limit: int | None = None) -> Profile:
    data = load_profile("embedded").model_dump()
    data["sources"] = sources
    data["limit"] = limit
    return Profile.model_validate(data)


# -- field expressions ---------------------------------------------------------------------


def test_field_expressions_reach_nested_and_list_fields():
    row = _rows(AOPS)[0]
    get = lambda text: fieldpath.parse(text).get(row)  # noqa: E731
    assert get("metadata.path").endswith("/2811904.json")
    assert get("tags[2]") == get("tags[-1]") == "2022 Lakeside Invitational Olympiad"
    assert get("metadata.n_reply") == 3 and get("candidates[0]").startswith("Use")
    assert get("year(tags[1])") == 2022 and get("year(metadata.path)") == 2022
    assert get("segment(metadata.path, -2)") == "2022 Lakeside Invitational Olympiad"
    assert get("segment(metadata.path, 0)") == "Contest Collections"
    # what does not resolve is None: absent key, index out of range, a key into a list
    assert get("metadata.url") is None and get("tags[7]") is None and get("tags.x") is None
    assert get("metadata.url | tags[9] | tags[0]") == "origin:aops"
    assert get("year(tags[0])") is None  # no year in the text


@pytest.mark.parametrize(
    "text, why",
    [
        ("tags[", "whole number in brackets"),
        ("tags[one]", "whole number in brackets"),
        ("year(tags[1]", "year() is not closed"),
        ("segment(metadata.path)", "takes an expression and an index"),
        ("upper(problem)", "unknown function upper()"),
        ("metadata..path", "expected a key after '.'"),
        ("problem |", "expected a column name"),
        ("[0]", "needs a column before it"),
    ],
)
def test_bad_expressions_say_why(text, why):
    with pytest.raises(ValueError) as e:
        fieldpath.parse(text)
    assert why in str(e.value) and repr(text) in str(e.value)


def test_bad_path_in_a_profile_is_a_config_error(tmp_path):
    prof = tmp_path / "p.yaml"
    embedded = profile_text("embedded")
    body = embedded.replace("sources:\n  paths: [demo]", "sources:\n  preset: aops\n  columns: {year: 'year(tags[1]'}")
    assert body != embedded
    prof.write_text(body)
    with pytest.raises(ConfigError) as e:
        load_profile(str(prof))
    msg = str(e.value)
    detail = [ln for ln in msg.splitlines() if "year(tags[1]" in ln]
    assert len(detail) == 1 and "sources" in detail[0] and "columns.year" in detail[0]
    assert "year() is not closed" in detail[0]
    with pytest.raises(ConfigError, match="unknown problem field 'yeer'"):
        prof.write_text(body.replace("columns: {year: 'year(tags[1]'}", "columns: {yeer: 'tags[1]'}"))
        load_profile(str(prof))
    with pytest.raises(
        ConfigError, match=r"sources\.paths\.0\.source: .*columns\.competition: bad field expression .exam\["
    ):
        prof.write_text(
            body.replace(
                "preset: aops\n  columns: {year: 'year(tags[1]'}",
                "paths: [{preset: olympiads, columns: {competition: 'exam['}}]",
            )
        )
        load_profile(str(prof))
    with pytest.raises(ConfigError, match="Input should be 'aops' or 'olympiads'"):
        prof.write_text(body.replace("preset: aops\n  columns: {year: 'year(tags[1]'}", "preset: aopz"))
        load_profile(str(prof))


# -- presets -------------------------------------------------------------------------------


def test_presets_resolve_into_entries_and_round_trip():
    cfg = SourcesConfig.model_validate({"paths": [{"preset": "aops"}, {"preset": "olympiads"}]})
    aops, olymp = cfg.paths
    assert (aops.path, aops.split, aops.source_label) == ("hf:AI-MO/aops", "train", "aops")
    assert (olymp.path, olymp.source_label) == ("hf:AI-MO/olympiads", "olympiads")
    assert aops.columns["year"] == "year(tags[1]) | year(metadata.path)"
    assert str(aops) == "hf:AI-MO/aops (preset aops) as source 'aops'"
    assert SourcesConfig.model_validate(cfg.model_dump()) == cfg  # a run's saved profile reloads the same
    prof = _profile({"paths": [{"preset": "aops"}, {"preset": "olympiads"}, "demo"]})
    assert Profile.model_validate(yaml.safe_load(public_yaml(prof))) == prof
    short = SourcesConfig.model_validate({"preset": "aops"})  # no paths: the preset's dataset
    assert short.paths == [aops]
    assert SourcesConfig().paths == ["demo"]  # nothing changes without a preset


def test_user_overrides_win_over_the_preset():
    cfg = SourcesConfig.model_validate(
        {
            "paths": [
                str(AOPS),
                "demo",
                {
                    "path": str(AOPS),
                    "preset": "aops",
                    "source_label": "forum",
                    "columns": {"competition": "tags[-1]"},
                    "licence": "CC0",
                },
            ],
            "preset": "aops",
            "columns": {"url": "metadata.path"},
            "hub_split": "validation",
        }
    )
    plain, demo, own = cfg.paths
    assert demo == "demo"  # the bundled sample keeps its own labels
    assert plain.columns["url"] == "metadata.path" and plain.columns["competition"].startswith("tags[2]")
    assert plain.split == "validation" and plain.source_label == "aops"
    assert own.columns["competition"] == "tags[-1]" and own.columns["url"] == "metadata.path"
    assert (own.source_label, own.licence) == ("forum", "CC0")


def test_map_row_with_the_aops_mapping():
    cols = SourcesConfig.model_validate({"preset": "aops"}).paths[0].columns
    full, no_contest, bare, no_problem = _rows(AOPS)
    r = map_row(full, cols)
    assert (r["competition"], r["year"]) == ("2022 Lakeside Invitational Olympiad", 2022)
    assert r["solutions"] and r["answer"] == ""
    r = map_row(no_contest, cols)  # contest from the path when the tag is missing
    assert (r["competition"], r["year"]) == ("Riverbend Team Contest", 2019)
    r = map_row(bare, cols)  # no metadata, no year tag: empty fields, the row proceeds
    assert (r["competition"], r["year"]) == ("", None) and r["problem"].startswith("Prove")
    with pytest.raises(ParseError) as e:
        map_row(no_problem, cols)
    assert e.value.reason == "missing_field" and "'problem'" in e.value.detail
    with pytest.raises(ParseError, match="competition is a struct"):
        map_row(full, {"competition": "metadata"})  # a struct is never stringified


# -- reading: local files, parquet, Hub streaming -----------------------------------------


def test_local_jsonl_rows_get_the_published_labels():
    docs = _docs({"paths": [{"path": str(AOPS), "preset": "aops"}, {"path": str(OLYMPIADS), "preset": "olympiads"}]})
    ok = [d for d in docs if d.metadata["format"] == "item"]
    bad = [d for d in docs if d.metadata["format"] == "error"]
    assert len(ok) == 5 and len(bad) == 1 and bad[0].metadata["raw_error"].startswith("missing_field")
    assert bad[0].metadata["locator"] == f"{AOPS.name}#L4"  # shown relative to the source as given
    by = {d.metadata["locator"].rsplit("/", 1)[-1]: d.metadata for d in ok}
    assert {m["source"] for m in by.values()} == {"aops", "olympiads"}
    assert by["olympiads_sample.jsonl#L1"]["competition"] == "IMO" and by["olympiads_sample.jsonl#L1"]["year"] == 2015
    assert by["olympiads_sample.jsonl#L1"]["category"] == "Number Theory"
    assert by["olympiads_sample.jsonl#L2"]["year"] == 2011  # from metadata.resource_path
    assert by["aops_sample.jsonl#L1"]["licence"].startswith("unstated: see the AI-MO/aops dataset card")


def _parquet_dir(tmp_path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "aops_hub"
    (d / "data").mkdir(parents=True)
    # nested struct and list columns, as the Hub stores them; row 3's metadata is null
    pq.write_table(pa.Table.from_pylist(_rows(AOPS)), d / "data" / "train-00000-of-00001.parquet")
    return d


def test_parquet_and_hub_streaming_of_a_local_dataset_dir(tmp_path):
    d = _parquet_dir(tmp_path)
    local = _docs({"paths": [str(d / "data" / "train-00000-of-00001.parquet")], "preset": "aops"})
    hub = _docs({"paths": [f"hf:{d}"], "preset": "aops"})  # datasets.load_dataset(streaming=True), offline
    for docs in (local, hub):
        ok = [x.metadata for x in docs if x.metadata["format"] == "item"]
        assert [(m["source"], m["competition"], m["year"]) for m in ok] == [
            ("aops", "2022 Lakeside Invitational Olympiad", 2022),
            ("aops", "Riverbend Team Contest", 2019),
            ("aops", "", None),
        ]
        assert [x.metadata["raw_error"].split(":")[0] for x in docs if x.metadata["format"] == "error"] == [
            "missing_field"
        ]
    # the Hub split, subset and file patterns travel with the entry
    pinned = _docs({"paths": [{"path": f"hf:{d}", "preset": "aops", "data_files": ["data/*.parquet"]}]})
    assert len(pinned) == 4
    (err,) = _docs({"paths": [{"path": f"hf:{d}", "preset": "aops", "split": "test"}]})
    assert err.metadata["raw_error"].startswith("unreadable: DataError") and "split 'test'" in err.metadata["raw_error"]


def test_reader_refuses_a_bad_mapping_passed_directly():
    with pytest.raises(ConfigError, match="columns.year"):
        SourceReader(resolve_sources([str(AOPS)]), columns={"year": "year(tags[1]"})


# -- end to end ----------------------------------------------------------------------------


def test_ingest_real_source_shapes_end_to_end(tmp_path):
    d = _parquet_dir(tmp_path)
    sources = {"paths": [{"path": f"hf:{d}", "preset": "aops"}, {"path": str(OLYMPIADS), "preset": "olympiads"}]}
    published = {
        ("aops", "2022 Lakeside Invitational Olympiad", 2022, ""),
        ("aops", "Riverbend Team Contest", 2019, ""),
        ("aops", "", None, ""),
        ("olympiads", "IMO", 2015, "Number Theory"),
        ("olympiads", "USAMO", 2011, "Algebra"),
    }
    r = run_ingest(_profile(sources), tmp_path / "all")
    assert r.counts["read"] == 6 and r.dropped["parsed"] == {"missing_field": 1}
    assert {(p.source, p.competition, p.year, p.category) for p in r.problems} == published
    assert all(p.licence.startswith("unstated: see the AI-MO/") for p in r.problems)
    quarantined = [json.loads(x) for f in r.quarantine_dir.rglob("*.jsonl") for x in f.read_text().splitlines()]
    assert [q["metadata"]["filter_reason"].split(":")[0] for q in quarantined] == ["missing_field"]
    limited = run_ingest(_profile(sources), tmp_path / "limited", limit=2)  # `fineproofs ingest --limit 2`
    assert len(limited.problems) == 2
    assert {(p.source, p.competition, p.year, p.category) for p in limited.problems} <= published
