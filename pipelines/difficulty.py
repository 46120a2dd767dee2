"""The ``difficulty`` stage: a problem's valid rollout grades become FineProofs-RL's
``scores``, ``rewards``, ``num_rewards``, ``reward_mean`` and ``reward_std``.

Only valid grades count: a rollout whose judge failed is left out (``num_rewards``
says how many counted), never counted as 0. Once a problem's difficulty is known
its rollouts' text is released (it is in ``stages/rollouts.jsonl``), so memory does
not grow with k × reply size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fineproofs.pipelines.stage import Failed, Work
from fineproofs.records import Difficulty

__all__ = ["Difficulty", "DifficultyStage"]


class DifficultyStage:
    name = "difficulty"
    record = Difficulty
    key_name = "problem_id"

    def run(self, items: Iterable[Work]) -> Iterator[Work | Failed]:
        for w in items:
            graded = [s for s in w.rollouts if s.key in w.rollout_grades or s.key in w.rollout_failures]
            if graded:
                graded.sort(key=lambda s: s.sample_index)
                w.difficulty = Difficulty(
                    w.id,
                    [w.rollout_grades[s.key].score for s in graded if s.key in w.rollout_grades],
                    failed=sum(1 for s in graded if s.key in w.rollout_failures),
                )
            w.rollouts, w.rollout_grades, w.rollout_failures = [], {}, {}  # in the stage files now
            yield w

    def records(self, work: Work) -> list[dict]:
        return [work.difficulty.to_dict()] if work.difficulty is not None else []
