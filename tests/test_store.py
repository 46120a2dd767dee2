import multiprocessing as mp
import os
import signal
import time

from fineproofs.store import ResponseStore, StoredResponse, request_key


def _resp(key, stage="s", status="ok", reason="", text="t"):
    return StoredResponse(key, stage, "m", status, reason, text, "stop", 3, 4)


def test_key_depends_on_every_part():
    base = dict(
        model="m",
        revision="",
        prompt_version="v1",
        sampling={"t": 1},
        messages=[{"role": "user", "content": "x"}],
        prefill="",
        sample_index=0,
    )
    k = request_key(**base)
    for field, value in [
        ("model", "m2"),
        ("revision", "r"),
        ("prompt_version", "v2"),
        ("sampling", {"t": 0.5}),
        ("messages", [{"role": "user", "content": "y"}]),
        ("prefill", "<score>"),
        ("sample_index", 1),
        ("template_kwargs", {"enable_thinking": False}),
    ]:
        assert request_key(**{**base, field: value}) != k, field
    assert request_key(**base) == k


def test_put_get_summary(tmp_path):
    with ResponseStore(tmp_path / "s.sqlite") as st:
        st.put(_resp("a"), {})
        st.put(_resp("b", status="failed", reason="http_503 after 4 retries"), {})
        st.put(_resp("c", stage="other"), {})
        assert st.get("a").text == "t" and st.get("zzz") is None
        assert set(st.get_many(["a", "b", "q"])) == {"a", "b"}
        summ = {r["stage"]: r for r in st.summary()}
        assert summ["s"]["done"] == 1 and summ["s"]["failed"] == 1
        assert summ["s"]["failed_by_reason"] == {"http_503 after 4 retries": 1}
        # a later success replaces the failure under the same key
        st.put(_resp("b"), {})
        assert st.get("b").ok


def _writer(path, n):
    st = ResponseStore(path)
    for i in range(n):
        st.put(_resp(f"k{i}", text="x" * 1000), {"i": i})


def test_sigkill_never_corrupts(tmp_path):
    path = tmp_path / "s.sqlite"
    for attempt in range(3):
        p = mp.get_context("spawn").Process(target=_writer, args=(path, 100000))
        p.start()
        time.sleep(1.0 + 0.3 * attempt)
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        with ResponseStore(path) as st:
            n = st.count()
            assert n > 0
            # every committed row is whole
            got = st.get_many([f"k{i}" for i in range(n)])
            assert all(r.text == "x" * 1000 for r in got.values())


def test_planned_samples_show_as_pending(tmp_path):
    with ResponseStore(tmp_path / "s.sqlite") as st:
        st.plan("rubrics", ["a", "b", "c"])
        st.put(_resp("a", stage="rubrics"), {})
        st.put(_resp("b", stage="rubrics", status="failed", reason="http_500 after 4 retries"), {})
        (row,) = st.summary()
        assert (row["done"], row["failed"], row["pending"]) == (1, 1, 1)


def test_identical_requests_in_one_call_are_generated_once(tmp_path):
    from fineproofs.engines.base import Completion, Engine, GenerationRequest
    from fineproofs.generation import CachedGenerator

    class Counting(Engine):
        model_id = "counting"
        rows = 0

        def generate(self, requests):
            for i, r in enumerate(requests):
                Counting.rows += r.n
                yield i, [Completion(f"reply {j}") for j in range(r.n)]

    req = GenerationRequest([{"role": "user", "content": "same"}], n=2)
    with ResponseStore(tmp_path / "s.sqlite") as st:
        out = CachedGenerator(Counting(), st, progress=False).run([req, req], stage="x", prompt_version="v")
    assert Counting.rows == 2
    assert [r.text for r in out[0]] == [r.text for r in out[1]] == ["reply 0", "reply 1"]


def test_weights_fingerprint_follows_a_local_model_dir(tmp_path):
    import os

    from fineproofs.models import model_fingerprint

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    before = model_fingerprint(str(tmp_path))
    assert before.startswith("dir:") and model_fingerprint(str(tmp_path)) == before
    (tmp_path / "model.safetensors").write_bytes(b"y" * 11)  # re-trained into the same directory
    os.utime(tmp_path / "model.safetensors", ns=(1, 1))
    assert model_fingerprint(str(tmp_path)) != before
    assert model_fingerprint("Qwen/Qwen3-4B-Thinking-2507") == ""


# ----- the store at scale: indexed statements, running totals, bounded WAL -----


def _brute_summary(st):
    """summary() the slow way (a scan of both tables), to check the running totals against."""
    rows = st._db.execute(
        "SELECT stage, status, reason, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) "
        "FROM responses GROUP BY stage, status, reason"
    ).fetchall()
    pending = dict(
        st._db.execute(
            "SELECT p.stage, COUNT(*) FROM planned p LEFT JOIN responses r ON p.key = r.key WHERE r.key IS NULL "
            "GROUP BY p.stage"
        ).fetchall()
    )
    out = {}
    for stage in {r[0] for r in rows} | set(pending):
        mine = [r for r in rows if r[0] == stage]
        out[stage] = {
            "done": sum(r[3] for r in mine if r[1] == "ok"),
            "failed": sum(r[3] for r in mine if r[1] != "ok"),
            "failed_by_reason": {r[2] or "unknown": r[3] for r in mine if r[1] != "ok"},
            "pending": pending.get(stage, 0),
            "prompt_tokens": sum(r[4] for r in mine),
            "completion_tokens": sum(r[5] for r in mine),
        }
    return out


def _summary(st):
    return {r["stage"]: {k: v for k, v in r.items() if k not in ("stage", "cost")} for r in st.summary()}


def test_running_totals_match_a_recount_through_plans_failures_and_replacements(tmp_path):
    import random

    rng = random.Random(0)
    with ResponseStore(tmp_path / "s.sqlite") as st:
        for step in range(60):
            stage = rng.choice(["rubrics", "rollouts", "grades"])
            keys = [f"k{rng.randrange(300)}" for _ in range(rng.randrange(1, 20))]
            if rng.random() < 0.4:
                st.plan(stage, keys)
            else:
                batch = []
                for k in dict.fromkeys(keys):
                    failed = rng.random() < 0.3
                    r = StoredResponse(
                        k,
                        stage,
                        "m",
                        "failed" if failed else "ok",
                        rng.choice(["http_503 after 4 retries", "timeout"]) if failed else "",
                        "t",
                        "stop",
                        rng.randrange(9),
                        rng.randrange(9),
                    )
                    batch.append((r, {}))
                st.put_many(batch)  # a key stored again (a retried failure) is updated in place
            assert _summary(st) == _brute_summary(st), step
        assert st.count() == st._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        assert st.count("grades", "ok") == _brute_summary(st).get("grades", {}).get("done", 0)
        before = st.summary()
        st.recount()
        assert st.summary() == before


def test_a_store_written_before_the_totals_is_migrated_on_open(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE responses (key TEXT PRIMARY KEY, stage TEXT NOT NULL, model TEXT NOT NULL,
            status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', text TEXT NOT NULL DEFAULT '',
            finish_reason TEXT NOT NULL DEFAULT '', prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0,
            request TEXT NOT NULL, created REAL NOT NULL);
        CREATE TABLE planned (key TEXT PRIMARY KEY, stage TEXT NOT NULL);
    """)
    db.executemany(
        "INSERT INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            (
                f"k{i}",
                "judge",
                "m",
                "ok" if i % 3 else "failed",
                "" if i % 3 else "timeout",
                "x",
                "stop",
                2,
                5,
                0.5,
                "{}",
                0.0,
            )
            for i in range(30)
        ],
    )
    db.executemany("INSERT INTO planned VALUES (?, 'judge')", [(f"k{i}",) for i in range(35)])
    db.commit()
    db.close()
    with ResponseStore(path) as st:
        (row,) = st.summary()
        assert (row["done"], row["failed"], row["pending"]) == (20, 10, 5)
        assert (row["prompt_tokens"], row["completion_tokens"], row["cost"]) == (60, 150, 15.0)
        assert st.get("k1").text == "x" and st.get("k1").reasoning == ""
        st.put(_resp("k30", stage="judge"), {})  # new rows keep the migrated totals current
        st.put(_resp("k0", stage="judge"), {})  # a failure replaced by a success
        (row,) = st.summary()
        assert (row["done"], row["failed"], row["pending"]) == (22, 9, 4)
    with ResponseStore(path) as st:  # opened again: no second recount, same figures
        (again,) = st.summary()
        assert again == row


def test_every_statement_is_an_index_search(tmp_path):
    """EXPLAIN QUERY PLAN of each statement the store (and its triggers) runs: no scan of
    ``responses`` or ``planned`` except ``keys()``, which reads the key index only."""
    from fineproofs.store import QUERIES

    with ResponseStore(tmp_path / "s.sqlite") as st:
        for name, q in QUERIES.items():
            sql = st._put_sql if name == "put" else q.format(select=st._select, marks="?,?,?")
            plan = " | ".join(r[3] for r in st._db.execute("EXPLAIN QUERY PLAN " + sql, ["x"] * sql.count("?")))
            if name == "keys":
                assert plan == "SCAN responses USING COVERING INDEX sqlite_autoindex_responses_1", plan
            elif name == "totals":
                assert plan == "SCAN totals", plan  # a handful of rows: one per (stage, status, reason)
            elif name in ("put", "plan"):
                assert plan == "", plan  # plain inserts (their triggers are the trigger_* lookups)
            else:
                assert plan.startswith("SEARCH ") and "SCAN" not in plan, (name, plan)


def test_get_many_batches_over_the_variable_limit(tmp_path):
    from fineproofs.store import KEY_BATCH

    n = 3 * KEY_BATCH + 7
    with ResponseStore(tmp_path / "s.sqlite") as st:
        st.put_many([(_resp(f"k{i}"), {}) for i in range(n)])
        keys = [f"k{i}" for i in range(n)] + ["absent"] + ["k0"] * 5
        got = st.get_many(iter(keys))
        assert len(got) == n and got["k0"].key == "k0"


def test_wal_stays_bounded_while_a_long_build_writes(tmp_path):
    """60 MB written in 250 transactions: the WAL is checkpointed as it goes and truncated
    back, so its file stays near the checkpoint interval, not the data written."""
    from fineproofs.store import WAL_AUTOCHECKPOINT_PAGES

    path = tmp_path / "s.sqlite"
    wal = tmp_path / "s.sqlite-wal"
    peak = 0
    with ResponseStore(path) as st:
        for b in range(250):
            st.put_many([(_resp(f"k{b}-{i}", text="x" * 24_000), {}) for i in range(10)])
            peak = max(peak, wal.stat().st_size)
        assert st.count() == 2500
        st.checkpoint("TRUNCATE")
        assert wal.stat().st_size == 0
    assert peak < WAL_AUTOCHECKPOINT_PAGES * 4096 * 1.5, peak
    assert path.stat().st_size > 55e6
