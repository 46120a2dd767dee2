"""What each page shows, read from the :class:`~fineproofs.viewer.index.RunIndex`.

Functions here return plain dicts and lists (no HTML): the templates render them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fineproofs import rundir
from fineproofs.viewer.index import RunIndex, open_store, proof_fingerprint

PAGE_SIZE = 50
REWARD_BANDS = {
    "none": "reward IS NULL",
    "0": "reward = 0",
    "0-0.25": "reward > 0 AND reward < 0.25",
    "0.25-0.5": "reward >= 0.25 AND reward < 0.5",
    "0.5-0.75": "reward >= 0.5 AND reward < 0.75",
    "0.75-1": "reward >= 0.75 AND reward < 1",
    "1": "reward >= 1",
}
HUMAN_FILTERS = {
    "graded": "EXISTS (SELECT 1 FROM human h WHERE h.pid = p.pid)",
    "ungraded": "NOT EXISTS (SELECT 1 FROM human h WHERE h.pid = p.pid)",
    "disagree": "EXISTS (SELECT 1 FROM human h JOIN samples s ON s.key = h.key WHERE h.pid = p.pid "
    "AND s.score IS NOT NULL AND s.score != h.grade)",
}


@dataclass
class ProblemQuery:
    q: str = ""
    source: str = ""
    competition: str = ""
    status: str = ""  # kept | dropped | unknown
    reward: str = ""  # a key of REWARD_BANDS
    grade: str = ""  # 0..7: some sample has that judge grade; "failed": some grade failed
    human: str = ""  # a key of HUMAN_FILTERS
    page: int = 1
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_query(cls, params: dict[str, str]) -> ProblemQuery:
        f = cls(
            **{
                k: params.get(k, "").strip()[:500]
                for k in ("q", "source", "competition", "status", "reward", "grade", "human")
            }
        )
        try:
            f.page = max(1, int(params.get("page", "1")))
        except ValueError:
            f.page = 1
        return f

    def where(self) -> tuple[str, list[Any]]:
        clauses, args = ["1=1"], []
        if self.q:
            like = "%" + self.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append("(p.statement LIKE ? ESCAPE '\\' OR p.pid = ? OR p.competition LIKE ? ESCAPE '\\')")
            args += [like, self.q, like]
        for col in ("source", "competition", "status"):
            if getattr(self, col):
                clauses.append(f"p.{col} = ?")
                args.append(getattr(self, col))
        if self.reward in REWARD_BANDS:
            clauses.append(REWARD_BANDS[self.reward])
        if self.grade.isdigit() and 0 <= int(self.grade) <= 7:
            clauses.append("EXISTS (SELECT 1 FROM samples s WHERE s.pid = p.pid AND s.score = ?)")
            args.append(int(self.grade))
        elif self.grade == "failed":
            clauses.append("EXISTS (SELECT 1 FROM samples s WHERE s.pid = p.pid AND s.gstatus = 'failed')")
        if self.human in HUMAN_FILTERS:
            clauses.append(HUMAN_FILTERS[self.human])
        return " AND ".join(clauses), args

    def params(self, **override: Any) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("q", "source", "competition", "status", "reward", "grade", "human")}
        d["page"] = self.page
        d.update(override)
        return {k: v for k, v in d.items() if v not in ("", None)}


def list_problems(index: RunIndex, f: ProblemQuery) -> dict[str, Any]:
    where, args = f.where()
    con = index.db()
    total = con.execute(f"SELECT COUNT(*) FROM problems p WHERE {where}", args).fetchone()[0]
    pages = max(1, -(-total // PAGE_SIZE))
    f.page = min(f.page, pages)
    rows = con.execute(
        "SELECT pid, substr(statement, 1, 280) AS snippet, source, competition, year, category, status, stage, "
        f"reason, reward, n_samples, n_graded FROM problems p WHERE {where} ORDER BY n LIMIT ? OFFSET ?",
        [*args, PAGE_SIZE, (f.page - 1) * PAGE_SIZE],
    ).fetchall()
    return {"total": total, "pages": pages, "page": f.page, "rows": [dict(r) for r in rows]}


def facets(index: RunIndex) -> dict[str, list[str]]:
    con = index.db()
    out = {}
    for col in ("source", "competition"):
        out[col] = [
            r[0]
            for r in con.execute(
                f"SELECT {col} FROM problems WHERE {col} != '' GROUP BY {col} ORDER BY COUNT(*) DESC LIMIT 300"
            )
        ]
    return out


SAMPLES_PER_PAGE = 16


def problem_detail(index: RunIndex, pid: str, human: dict[str, dict[str, Any]], page: int = 1) -> dict[str, Any] | None:
    """Everything the problem page shows; samples ``SAMPLES_PER_PAGE`` at a time."""
    con = index.db()
    row = con.execute("SELECT * FROM problems WHERE pid = ?", (pid,)).fetchone()
    if row is None:
        return None
    rec = index.read(row["file"], row["off"], row["len"])
    if "statement" not in rec and "text" in rec:  # a problem dropped at ingest: datatrove document
        rec = {**(rec.get("metadata") or {}), "statement": rec["text"]}
    rub = con.execute("SELECT * FROM rubrics WHERE pid = ?", (pid,)).fetchone()
    rubric = index.read(rub["file"], rub["off"], rub["len"]) if rub else {}
    pages = max(1, -(-row["n_samples"] // SAMPLES_PER_PAGE))
    page = min(max(page, 1), pages)
    rows = con.execute(
        "SELECT * FROM samples WHERE pid = ? ORDER BY role DESC, idx LIMIT ? OFFSET ?",
        (pid, SAMPLES_PER_PAGE, (page - 1) * SAMPLES_PER_PAGE),
    ).fetchall()
    store = index.run_dir / rundir.STORE
    scon = open_store(store) if store.exists() and rows else None
    try:
        samples = [_sample(index, s, rec.get("statement", ""), human, scon) for s in rows]
    finally:
        if scon is not None:
            scon.close()
    quarantine = [
        dict(q)
        for q in con.execute("SELECT stage, reason, item FROM quarantine WHERE pid = ? ORDER BY n LIMIT 500", (pid,))
    ]
    return {
        "row": dict(row),
        "problem": rec,
        "rubric": rubric,
        "rubric_text": _rubric_text(rubric),
        "structured": structured_rubric(rubric, pid),
        "samples": samples,
        "quarantine": quarantine,
        "page": page,
        "pages": pages,
    }


def _sample(index: RunIndex, s: Any, statement: str, human: dict[str, dict[str, Any]], scon: Any) -> dict[str, Any]:
    rec = index.read(s["file"], s["off"], s["len"])
    grade = index.read(s["gfile"], s["goff"], s["glen"])
    return {
        "key": s["key"],
        "role": s["role"],
        "idx": s["idx"],
        "rec": rec,
        "grade": grade,
        "replies": judge_replies(index, scon, grade, s["fp"], statement),
        "human": human.get(s["key"]),
    }


def judge_replies(index: RunIndex, scon: Any, grade: dict[str, Any], fp: str, statement: str) -> list[dict[str, Any]]:
    """Every judge reply for one sample: from the grade record if it carries them, else from the store."""
    if isinstance(grade.get("reply"), str):
        return [{"text": grade["reply"], "status": grade.get("status", ""), "source": "grade record"}]
    if isinstance(grade.get("replies"), list):
        return [{"text": str(r), "status": "", "source": "grade record"} for r in grade["replies"]]
    con = index.db()
    keys = grade.get("reply_keys") if isinstance(grade.get("reply_keys"), list) else None
    if keys is None:
        cands = con.execute(
            "SELECT key, stage, sample_index, phead FROM replies WHERE fp = ? ORDER BY sample_index", (fp,)
        ).fetchall()
        head = " ".join(statement.split())[:120]
        matching = [c for c in cands if head and head in c["phead"]]
        keys = [c["key"] for c in (matching or cands)][:50]
    return _store_replies(scon, [str(k) for k in keys])


def _store_replies(con: Any, keys: list[str]) -> list[dict[str, Any]]:
    if not keys or con is None:
        return []
    q = ",".join("?" * len(keys))
    rows = con.execute(
        f"SELECT key, stage, model, status, reason, text, finish_reason, prompt_tokens, completion_tokens, request "
        f"FROM responses WHERE key IN ({q})",
        keys,
    ).fetchall()
    out = []
    for key, stage, model, status, reason, text, finish, pt, ct, request in rows:
        try:
            req = json.loads(request)
        except ValueError:
            req = {}
        out.append(
            {
                "key": key,
                "stage": stage,
                "model": model,
                "status": status,
                "reason": reason,
                "text": (req.get("prefill") or "") + (text or ""),
                "finish_reason": finish,
                "prompt_tokens": pt,
                "completion_tokens": ct,
                "sample_index": req.get("sample_index"),
                "source": "store",
            }
        )
    return sorted(out, key=lambda r: (r["sample_index"] is None, r["sample_index"] or 0))


def _rubric_text(rubric: dict[str, Any]) -> str:
    r = rubric.get("rubric", rubric.get("text", ""))
    return r if isinstance(r, str) else ""


def structured_rubric(rubric: dict[str, Any], pid: str) -> dict[str, Any] | None:
    """Checkpoints by chain, zero credit and deductions: from the record's structured fields if present,
    else parsed from its text; ``None`` when neither works (the page then shows the text)."""
    if isinstance(rubric.get("items"), list):
        items, zero, deds = rubric["items"], rubric.get("zero_credit") or [], rubric.get("deductions") or []
    else:
        text = _rubric_text(rubric)
        if not text:
            return None
        try:
            from fineproofs.rubric import parse_rubric
        except ImportError:
            return None
        try:
            r = parse_rubric(text, pid)
        except ValueError:
            return None
        items = [vars(i) for i in r.items]
        zero, deds = r.zero_credit, [vars(d) for d in r.deductions]
    chains: dict[str, list[dict[str, Any]]] = {}
    for it in items:
        if isinstance(it, dict):
            chains.setdefault(str(it.get("chain") or ""), []).append(it)
    return {
        "chains": sorted(chains.items()),
        "zero_credit": [str(z) for z in zero],
        "deductions": [d for d in deds if isinstance(d, dict)],
    }


def list_quarantine(index: RunIndex, stage: str, q: str, page: int) -> dict[str, Any]:
    clauses, args = ["1=1"], []
    if stage:
        clauses.append("stage = ?")
        args.append(stage)
    if q:
        clauses.append("(reason LIKE ? OR item LIKE ?)")
        args += [f"%{q}%", f"%{q}%"]
    where = " AND ".join(clauses)
    con = index.db()
    total = con.execute(f"SELECT COUNT(*) FROM quarantine WHERE {where}", args).fetchone()[0]
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(page, 1), pages)
    rows = []
    for r in con.execute(
        f"SELECT * FROM quarantine WHERE {where} ORDER BY n LIMIT ? OFFSET ?",
        [*args, PAGE_SIZE, (page - 1) * PAGE_SIZE],
    ):
        rec = index.read(r["file"], r["off"], r["len"])
        text = rec.get("text") if isinstance(rec.get("text"), str) else ""
        rows.append({**dict(r), "text": text[:300]})
    stages = [(s, n) for s, n in con.execute("SELECT stage, COUNT(*) FROM quarantine GROUP BY stage ORDER BY stage")]
    return {"rows": rows, "total": total, "pages": pages, "page": page, "stages": stages}


def overview(index: RunIndex) -> dict[str, Any]:
    con = index.db()
    m = index.manifest
    status = dict(con.execute("SELECT status, COUNT(*) FROM problems GROUP BY status").fetchall())
    samples = dict(con.execute("SELECT role, COUNT(*) FROM samples GROUP BY role").fetchall())
    plots_dir = index.run_dir / "plots"
    plots = sorted(p.name for p in plots_dir.glob("*.png")) if plots_dir.is_dir() else []
    return {
        "manifest": m,
        "counts": m.get("counts") or {},
        "dropped": m.get("dropped") or {},
        "rows": m.get("rows") or {},
        "status": status,
        "samples": samples,
        "plots": plots,
        "quarantined": con.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0],
    }


def sample_context(index: RunIndex, key: str) -> dict[str, Any] | None:
    """What a human grade and the calibration export need about one sample."""
    con = index.db()
    s = con.execute("SELECT * FROM samples WHERE key = ?", (key,)).fetchone()
    if s is None:
        return None
    p = con.execute("SELECT * FROM problems WHERE pid = ?", (s["pid"],)).fetchone()
    problem = index.read(p["file"], p["off"], p["len"]) if p else {}
    rub = con.execute("SELECT * FROM rubrics WHERE pid = ?", (s["pid"],)).fetchone()
    rubric = _rubric_text(index.read(rub["file"], rub["off"], rub["len"])) if rub else ""
    rec = index.read(s["file"], s["off"], s["len"])
    sols = problem.get("solutions") or []
    return {
        "key": key,
        "pid": s["pid"],
        "score": s["score"],
        "statement": problem.get("statement", ""),
        "proof": rec.get("proof", ""),
        "rubric": rubric,
        "reference_solution": sols[0] if sols else "",
        "fp": proof_fingerprint(str(rec.get("proof") or "")),
    }
