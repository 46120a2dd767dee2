"""Robustness of the command line on generated bad input: profiles and arguments.

- Profiles: every leaf of the profile schema gets values of the wrong type (a boolean
  where a number goes, a string for a number, a list for a string ...) and values just
  outside its range; every mapping gets an unknown key; every key is given twice; the
  top level is not a mapping; the YAML is broken at random lines; a non-UTF-8 byte lands
  at a random offset; endpoints get bad schemes, hosts and ports; the profile path is a
  directory, a FIFO, missing, empty, a symlink loop. Each: exit 2 (1 for an unreadable
  file), exactly one ``fineproofs:`` line naming the file and the key, no traceback,
  nothing written.
- Arguments: every integer, choice and path option of every command (walked from the
  click tree) gets out-of-range and malformed values; ``--output ''`` and ``--output FILE``;
  ``--shard`` variants; ``view`` on what is not a run directory. Each: exit 2 with a usage
  error, no traceback, nothing written.
- Secrets: URL credentials and a key pasted into ``api_key_env`` never appear in any output.
"""

from __future__ import annotations

import copy
import os
import random
import types
import typing
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from fineproofs.cli import cli
from fineproofs.config import Profile, load_yaml, profile_text

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

BASE = load_yaml(profile_text("embedded"))
ROLES = ("teacher", "student", "judge", "grader", "rubric_writer")


def invoke(args: list[str], **kw):
    return CliRunner().invoke(cli, args, catch_exceptions=True, **kw)


def problems_with(result, what: str, codes=(2,), names: tuple[str, ...] = ()) -> list[str]:
    """Why ``result`` is not a clean failure: exit code in ``codes``, exactly one
    ``fineproofs:`` line (or click's usage error), no traceback, every string of ``names``
    in the output."""
    out = result.output
    bad = []
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        bad.append(f"{what}: raised {type(result.exception).__name__}: {result.exception}")
    if "Traceback" in out:
        bad.append(f"{what}: traceback")
    if result.exit_code not in codes:
        bad.append(f"{what}: exit {result.exit_code} (want {codes}): {out[-400:]!r}")
    ours = [ln for ln in out.splitlines() if ln.startswith("fineproofs:")]
    usage = "\nError: " in "\n" + out and not ours
    if len(ours) != 1 and not usage:
        bad.append(f"{what}: {len(ours)} 'fineproofs:' lines: {out[-400:]!r}")
    bad += [f"{what}: output does not name {n!r}: {out[-400:]!r}" for n in names if n not in out]
    return bad


@pytest.fixture
def no_work(monkeypatch):
    """Any command that gets past validation fails at once instead of building."""
    import fineproofs.pipelines.build as build_mod
    import fineproofs.pipelines.ingest as ingest_mod
    import fineproofs.pipelines.shards as shards_mod

    def refuse(*a, **k):
        raise AssertionError("validation let this through: the command started working")

    monkeypatch.setattr(build_mod.Build, "run", refuse)
    monkeypatch.setattr(build_mod, "merge_shards", refuse)
    monkeypatch.setattr(ingest_mod, "run_ingest", refuse)
    monkeypatch.setattr(shards_mod, "run_shards", refuse)
    for mod, attr in (
        ("fineproofs.train.evaluate", "run_eval"),
        ("fineproofs.train.sft", "run_sft"),
        ("fineproofs.train.rl", "run_rl"),
        ("fineproofs.train.rc", "run_rc"),
        ("fineproofs.viewer", "serve"),
    ):
        try:
            monkeypatch.setattr(__import__(mod, fromlist=[attr]), attr, refuse)
        except (ImportError, AttributeError):
            pass
    from fineproofs.pipelines.sources import crawler

    monkeypatch.setattr(crawler.WikiCrawler, "crawl", refuse)


# ---------------------------------------------------------------------------
# profiles: generated corruptions
# ---------------------------------------------------------------------------


def _unwrap(ann):
    """The annotation without ``None`` (``int | None`` -> int)."""
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        return args[0] if len(args) == 1 else ann
    return ann


def leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()):
    """(path, annotation, constraints) of every scalar/list/dict field of the schema."""
    for name, f in model.model_fields.items():
        ann = _unwrap(f.annotation)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from leaves(ann, (*prefix, name))
        else:
            yield (*prefix, name), ann, f.metadata


def bad_values(ann, metadata) -> list[tuple[str, object]]:
    """Values of the wrong type for ``ann`` and values just outside its constraints."""
    origin = typing.get_origin(ann)
    out: list[tuple[str, object]] = []
    if origin is typing.Literal:
        choices = typing.get_args(ann)
        out += [("not a choice", "bogus-choice"), ("list", [choices[0]])]
        if all(isinstance(c, int) for c in choices):
            out += [("bool", True), ("out of range", max(choices) + 1)]
    elif ann is bool:
        out += [("int for bool", 1), ("string for bool", "true"), ("list", [True])]
    elif ann is int:
        out += [
            ("bool for int", True),
            ("bool false", False),
            ("string for int", "5"),
            ("float for int", 1.5),
            ("list", [1]),
            ("mapping", {"a": 1}),
        ]
    elif ann is float:
        out += [("bool for float", True), ("string for float", "0.5"), ("list", [0.5])]
    elif ann is str:
        out += [("int for str", 5), ("bool for str", False), ("list for str", ["x"]), ("mapping", {"a": "b"})]
    elif origin is list:
        out += [("string for list", "x"), ("mapping for list", {"a": 1}), ("list of mappings", [{"a": [1]}])]
    elif origin is dict:
        out += [("list for mapping", [1]), ("string for mapping", "x")]
    for m in metadata:
        for attr, delta, label in (
            ("ge", -1, "below ge"),
            ("gt", 0, "at gt"),
            ("le", 1, "above le"),
            ("lt", 0, "at lt"),
        ):
            bound = getattr(m, attr, None)
            if bound is not None:
                step = delta if ann is int else delta * 0.5
                out.append((label, bound + step))
        if ann is float and (getattr(m, "ge", None) is not None or getattr(m, "le", None) is not None):
            out.append(("nan", float("nan")))
    return out


def _set(data: dict, path: tuple[str, ...], value) -> dict:
    data = copy.deepcopy(data)
    node = data
    for p in path[:-1]:
        node = node.setdefault(p, {})
    node[path[-1]] = value
    return data


# corruptions that break validators outside this suite's files (reported, not fixed here)


def _type_cases() -> list[tuple[str, dict, str]]:
    """(case, profile data, dotted key the error must name). Each leaf gets every value
    outside its range and two seeded values of a wrong type; the five roles share one
    schema, so each role field is corrupted in one seeded role."""
    rng = random.Random(0)
    cases = []
    for path, ann, meta in leaves(Profile):
        if path[0] in ROLES:
            path = (rng.choice(ROLES), *path[1:])
        values = bad_values(ann, meta)
        ranged = [v for v in values if v[0] in ("below ge", "at gt", "above le", "at lt", "nan", "out of range")]
        typed = [v for v in values if v not in ranged]
        for label, value in ranged + rng.sample(typed, min(2, len(typed))):
            cases.append((f"{'.'.join(path)}={label}", _set(BASE, path, value), ".".join(path)))
    # the issue's own example, in every role-independent spelling
    cases += [(f"limit={v!r}", _set(BASE, ("limit",), v), "limit") for v in (True, False, "5", 0, -1, 2.5)]
    return cases


def _mapping_paths(model: type[BaseModel], prefix=()):
    yield prefix
    for name, f in model.model_fields.items():
        ann = _unwrap(f.annotation)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _mapping_paths(ann, (*prefix, name))


def _unknown_key_cases():
    cases = []
    for i, path in enumerate(_mapping_paths(Profile)):
        key = f"bogus_key_{i}"
        cases.append((f"unknown {'.'.join((*path, key))}", _set(BASE, (*path, key), 1), key))
    return cases


TYPE_CASES = _type_cases()
UNKNOWN_CASES = _unknown_key_cases()


def _write(tmp_path: Path, data_or_text, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    if isinstance(data_or_text, bytes):
        path.write_bytes(data_or_text)
    elif isinstance(data_or_text, str):
        path.write_text(data_or_text)
    else:
        path.write_text(yaml.safe_dump(data_or_text, sort_keys=False, allow_unicode=True))
    return path


def _check_profiles(tmp_path: Path, cases, codes=(2,), sample_commands: int = 3) -> list[str]:
    """Every case through ``profiles show``; the first few also through ``build`` and
    ``ingest`` (nothing may be written)."""
    bad = []
    for k, (case, content, key) in enumerate(cases):
        path = _write(tmp_path, content)
        before = path.read_bytes()
        commands = [["profiles", "show", str(path)]]
        if k < sample_commands:
            commands += [
                ["build", "--profile", str(path), "--output", str(tmp_path / "out")],
                ["ingest", "--profile", str(path), "--output", str(tmp_path / "out")],
            ]
        for args in commands:
            result = invoke(args)
            bad += problems_with(result, f"{args[0]} [{case}]", codes, (path.name, *([key] if key else [])))
            if (tmp_path / "out").exists():
                bad.append(f"{args[0]} [{case}]: wrote its output")
        if path.read_bytes() != before:
            bad.append(f"[{case}]: the profile file changed")
    return bad


def test_valid_profile_round_trip(tmp_path):
    """The generator's base: the bundled profile, written back, is accepted."""
    path = _write(tmp_path, BASE)
    assert invoke(["profiles", "show", str(path)]).exit_code == 0


def test_wrong_types_and_ranges(tmp_path, no_work):
    cases = TYPE_CASES
    assert len(cases) > 300
    assert not (bad := _check_profiles(tmp_path, cases)), "\n".join(bad[:40])


def test_unknown_keys(tmp_path, no_work):
    assert not (bad := _check_profiles(tmp_path, UNKNOWN_CASES)), "\n".join(bad)


def _duplicate_key_cases() -> list[tuple[str, str, str]]:
    """Every ``key:`` line of the block-style profile, given twice in its mapping."""
    lines = yaml.safe_dump(Profile.model_validate(BASE).model_dump(), sort_keys=False).splitlines()
    cases = []
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if ":" not in stripped or stripped.startswith("- "):
            continue
        key = stripped.split(":", 1)[0]
        indent = line[: len(line) - len(stripped)]
        first = f"{indent}{key}: null" if stripped.endswith(":") else line  # the first of the two wins nothing
        dup = [*lines[:i], first, *lines[i:]]
        cases.append((f"duplicate {key} (line {i + 1})", "\n".join(dup) + "\n", key))
    return sorted(random.Random(4).sample(cases, min(len(cases), 90)))  # the five roles repeat one schema


def test_duplicate_keys(tmp_path, no_work):
    cases = _duplicate_key_cases()
    assert len(cases) >= 90
    assert not (bad := _check_profiles(tmp_path, cases)), "\n".join(bad[:40])


NON_MAPPINGS = [
    "[]",
    "- a\n- b\n",
    "just text\n",
    "17\n",
    "null\n",
    "~\n",
    "",
    "\n\n",
    "# only a comment\n",
    "--- []\n",
    "!!binary aGVsbG8=\n",
    "'quoted'\n",
    "true\n",
]


def test_non_mapping_top_level(tmp_path, no_work):
    cases = [(f"top level {t!r}", t, "") for t in NON_MAPPINGS]
    assert not (bad := _check_profiles(tmp_path, cases, sample_commands=len(cases))), "\n".join(bad)


BREAKERS = [
    "\tindented: with a tab",
    "{",
    "key: [unclosed",
    'key: "unterminated',
    "- item in a mapping",
    "a: b: c",
    "  : no key",
    "*undefined_alias",
    "key: !!python/object:os.system x",
    "]",
    "&a a: &a b",
    "key: !custom_tag x",
    "%YAML 9.9",
]


def _broken_yaml_cases(n: int = 40):
    rng = random.Random(1)
    lines = yaml.safe_dump(BASE, sort_keys=False).splitlines()
    cases = []
    for k in range(n):
        breaker = BREAKERS[k % len(BREAKERS)]
        i = rng.randrange(len(lines) + 1)
        cases.append((f"yaml {breaker!r} at line {i}", "\n".join([*lines[:i], breaker, *lines[i:]]) + "\n", ""))
    return cases


def test_invalid_yaml(tmp_path, no_work):
    assert not (bad := _check_profiles(tmp_path, _broken_yaml_cases())), "\n".join(bad)


def test_non_utf8_bytes(tmp_path, no_work):
    rng = random.Random(2)
    text = profile_text("embedded").encode()
    cases = []
    for _ in range(20):
        i = rng.randrange(len(text))
        junk = rng.choice([b"\xff", b"\xe9", b"\xc3", b"\x80\x80", b"\xed\xa0\x80"])
        cases.append((f"byte {junk!r} at {i}", text[:i] + junk + text[i:], "UTF-8"))
    cases.append(("utf-16", profile_text("embedded").encode("utf-16"), "UTF-8"))
    cases.append(("latin-1 comment", ("# café\n" + profile_text("embedded")).encode("latin-1"), "UTF-8"))
    assert not (bad := _check_profiles(tmp_path, cases)), "\n".join(bad)


BAD_ENDPOINTS = [
    "http://h:99999/v1",
    "http://h:0/v1",
    "http://h:65536/v1",
    "http://h:-1/v1",
    "http://h:abc/v1",
    "ftp://h:8000/v1",
    "file:///etc/passwd",
    "ws://h:8000/v1",
    "h:8000/v1",
    "localhost:8000",
    "http:///v1",
    "http://",
    "",
    "   ",
    "http://h :8000/v1",
    "//h:8000/v1",
    "javascript:alert(1)",
    "http://user:s3cret@h:70000/v1",
]


def test_bad_endpoints(tmp_path, no_work):
    """http endpoints with a bad scheme, no host or a port outside 1-65535: one ConfigError
    naming the key (credentials never echoed)."""
    rng = random.Random(3)
    cases = []
    for ep in BAD_ENDPOINTS:
        role = rng.choice(ROLES)
        data = _set(
            BASE, (role, "engine"), {"kind": "http", "model": "m", "endpoints": ["http://127.0.0.1:8000/v1", ep]}
        )
        cases.append((f"{role} endpoint {ep!r}", data, f"{role}.engine"))
    bad = _check_profiles(tmp_path, cases)
    assert not bad, "\n".join(bad)
    result = invoke(["profiles", "show", str(_write(tmp_path, cases[-1][1]))])
    assert "s3cret" not in result.output


def test_good_endpoints_accepted(tmp_path):
    for ep in [
        "http://127.0.0.1:8000/v1",
        "https://api.example.com/v1",
        "http://[::1]:8000/v1",
        "http://user:pw@host:1/v1",
        "https://host:65535",
    ]:
        data = _set(BASE, ("judge", "engine"), {"kind": "http", "model": "m", "endpoints": [ep]})
        result = invoke(["profiles", "show", str(_write(tmp_path, data))])
        assert result.exit_code == 0, (ep, result.output)


def _special_paths(tmp_path: Path):
    d = tmp_path / "a_dir.yaml"
    d.mkdir()
    yield "directory", d, (2,)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    yield "fifo", fifo, (2,)
    yield "missing", tmp_path / "missing.yaml", (2,)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    yield "empty", empty, (2,)
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    yield "symlink loop", loop, (1, 2)
    dangling = tmp_path / "dangling.yaml"
    dangling.symlink_to(tmp_path / "nowhere.yaml")
    yield "dangling symlink", dangling, (1, 2)
    if os.geteuid() != 0:  # root reads anything
        unreadable = tmp_path / "unreadable.yaml"
        unreadable.write_text(profile_text("embedded"))
        unreadable.chmod(0)
        yield "unreadable", unreadable, (1, 2)


def test_profile_path_is_not_a_file(tmp_path, no_work):
    bad = []
    for what, path, codes in _special_paths(tmp_path):
        for args in (
            ["profiles", "show", str(path)],
            ["build", "--profile", str(path), "--output", str(tmp_path / "o")],
            ["ingest", "--profile", str(path), "--output", str(tmp_path / "o")],
        ):
            bad += problems_with(invoke(args), f"{args[0]} [{what}]", codes, (path.name,))
            if (tmp_path / "o").exists():
                bad.append(f"{args[0]} [{what}]: wrote its output")
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------------------
# arguments, walked from the click tree
# ---------------------------------------------------------------------------


def commands(group: click.Group = cli, prefix: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


# required arguments and options that make a command get as far as validating the rest
REQUIRED = {
    "decontaminate": lambda d: [str(d / "in.jsonl"), "--against", str(d / "in.jsonl"), "--output", str(d / "o.jsonl")],
    "ingest": lambda d: ["--output", str(d / "o")],
    "crawl": lambda d: ["--api", "http://127.0.0.1:9/api.php", "--title", "X", "--output", str(d / "o")],
    "eval": lambda d: ["--output", str(d / "o")],
    "push": lambda d: [str(d), "--repo-id", "o/n"],
    "stats": lambda d: [str(d)],
    "status": lambda d: [str(d)],
    "view": lambda d: [str(d)],
    "sft": lambda d: ["--output", str(d / "o")],
    "rl": lambda d: ["--output", str(d / "o")],
    "rc": lambda d: ["--output", str(d / "o")],
    "show": lambda d: ["embedded"],
}


def _option_values(param: click.Option) -> list[str]:
    t = param.type
    vals = []
    if isinstance(t, click.IntRange):
        if t.min is not None:
            vals += [str(t.min - 1), str(t.min - 10**6)]
        if t.max is not None:
            vals += [str(t.max + 1), str(10**12)]
    if isinstance(t, (click.types.IntParamType, click.IntRange)):
        vals += ["abc", "1.5", "", " ", "1e3", "0x10", "--"]
    elif isinstance(t, click.types.FloatParamType):
        vals += ["abc", ""]
    elif isinstance(t, click.Choice):
        vals += ["bogus", "", str(t.choices[0]).upper() + "x"]
    return vals


def _argument_cases():
    cases = []
    for path, cmd in commands():
        for param in cmd.params:
            if not isinstance(param, click.Option) or param.is_flag:
                continue
            for v in _option_values(param):
                cases.append((path, param.opts[0], v))
    return cases


ARG_CASES = _argument_cases()


def test_bad_option_values_everywhere(tmp_path, no_work, monkeypatch):
    """Every integer / float / choice option of every command, out of range or malformed."""
    (tmp_path / "in.jsonl").write_text('{"problem": "Prove it."}\n')
    monkeypatch.chdir(tmp_path)
    limits = {p[-1] for p, opt, _ in ARG_CASES if opt == "--limit"}
    assert {"build", "ingest", "eval", "crawl"} <= limits
    assert len(ARG_CASES) > 80
    bad = []
    for path, opt, value in ARG_CASES:
        before = sorted(os.listdir(tmp_path))
        args = [*path, *REQUIRED.get(path[-1], lambda d: [])(tmp_path), opt, value]
        result = invoke(args)
        bad += problems_with(result, f"{' '.join(path)} {opt} {value!r}", (2,), (opt,))
        if sorted(os.listdir(tmp_path)) != before:
            bad.append(f"{' '.join(path)} {opt} {value!r}: wrote {set(os.listdir(tmp_path)) - set(before)}")
    assert not bad, "\n".join(bad[:40])


def _output_options():
    for path, cmd in commands():
        for param in cmd.params:
            if isinstance(param.type, click.Path) and ("--output" in getattr(param, "opts", ())):
                yield path, param


def test_output_empty_or_wrong_kind(tmp_path, no_work, monkeypatch):
    """``--output ''`` (it would be the current directory) and ``--output`` naming a regular
    file where a directory goes (or a directory where a file goes): exit 2, nothing written."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    (tmp_path / "in.jsonl").write_text('{"problem": "Prove it."}\n')
    afile = tmp_path / "a_file"
    afile.write_text("user file\n")
    adir = tmp_path / "a_dir"
    adir.mkdir()
    monkeypatch.chdir(workdir)
    outputs = list(_output_options())
    assert {p[-1] for p, _ in outputs} >= {"build", "ingest", "eval", "crawl", "decontaminate"}
    bad = []
    for path, param in outputs:
        base = list(REQUIRED.get(path[-1], lambda d: [])(tmp_path))
        if "--output" in base:
            i = base.index("--output")
            del base[i : i + 2]
        wrong_kind = str(adir) if not param.type.dir_okay else str(afile)
        for value in ("", " ", wrong_kind):
            result = invoke([*path, *base, "--output", value])
            bad += problems_with(result, f"{' '.join(path)} --output {value!r}", (2,))
            if os.listdir(workdir) or afile.read_text() != "user file\n" or os.listdir(adir):
                bad.append(f"{' '.join(path)} --output {value!r}: wrote something")
    assert not bad, "\n".join(bad)


def test_output_spelled_the_same_everywhere():
    """Every command with --output also takes -o (and --profile, -p)."""
    missing = [
        f"{' '.join(path)} {name}"
        for path, cmd in commands()
        for p in cmd.params
        for name, short in (("--output", "-o"), ("--profile", "-p"))
        if name in getattr(p, "opts", ()) and short not in p.opts
    ]
    assert not missing


SHARDS = ["3/2", "2/2", "x", "1/0", "0/0", "-1/2", "1/2/3", "/", "", "a/b", "1", "1/-2", "1.5/2", "999999999999/2"]


def test_shard_argument(tmp_path, no_work):
    bad = []
    for s in SHARDS:
        result = invoke(["build", "--shard", s, "--output", str(tmp_path / "o")])
        bad += problems_with(result, f"--shard {s!r}", (2,), ("--shard",))
        if (tmp_path / "o").exists():
            bad.append(f"--shard {s!r}: wrote its output")
    assert not bad, "\n".join(bad)


def test_view_on_what_is_not_a_run_directory(tmp_path, no_work):
    (tmp_path / "empty").mkdir()
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine\n")
    (user / "sub").mkdir()
    (tmp_path / "file").write_text("x")
    bad = []
    for target in ("empty", "user", "file", "missing"):
        result = invoke(["view", str(tmp_path / target)])
        bad += problems_with(result, f"view {target}", (2,))
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------------------
# secrets
# ---------------------------------------------------------------------------

SECRET = "s3cret"
PASTED_KEYS = [
    "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123",
    "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345",
    "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd",
    "gsk_live-AbCdEfGhIjKlMnOp0123",
]


def _secret_profile(tmp_path: Path, key: str | None, port: int = 1) -> Path:
    data = copy.deepcopy(BASE)
    for role in ROLES:
        engine = {
            "kind": "http",
            "model": "m",
            "endpoints": [f"http://user:{SECRET}@127.0.0.1:{port}/v1"],
            "max_retries": 0,
            "request_timeout_s": 2.0,
        }
        if key:
            engine["api_key_env"] = key
        data[role] = {**data[role], "engine": engine}
    return _write(tmp_path, data, f"secret-{abs(hash(key)) % 1000}-{port}.yaml")


def test_secrets_never_printed(tmp_path, monkeypatch):
    """URL credentials and a key pasted into api_key_env: not in the build preflight's
    error, nor in status, nor in the validation error."""
    import fineproofs.pipelines.ingest as ingest_mod

    def ran(*a, **k):
        raise AssertionError("the preflight let it through")

    monkeypatch.setattr(ingest_mod, "run_ingest", ran)
    bad = []
    for key in [None, *PASTED_KEYS]:
        prof = _secret_profile(tmp_path, key)
        for args in (
            ["build", "--profile", str(prof), "--output", str(tmp_path / "o")],
            ["build", "--split", "sft", "--profile", str(prof), "--output", str(tmp_path / "o")],
            *([["ingest", "--profile", str(prof), "--output", str(tmp_path / "o2")]] if key else []),
        ):
            result = invoke(args)
            if result.exit_code == 0 or "Traceback" in result.output:
                bad.append(f"{args[:2]} key={key}: {result.output[-300:]!r}")
            for s in (SECRET, key):
                if s and s in result.output:
                    bad.append(f"{args[:2]} key={key}: printed {s!r}")
        if key is None:
            result = invoke(["status", str(tmp_path)])
            assert SECRET not in result.output
    assert not bad, "\n".join(bad)
