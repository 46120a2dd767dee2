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
