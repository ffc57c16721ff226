"""Review flags: which finished edits a person should look at, by the judge's score.

With ``--review-threshold T`` every row is judged (:mod:`lusd.judge`); a done row whose
score is below T "needs review". :func:`review_counts` sums a batch up for the report's,
the CLI's and the metrics files' line ("41 of 50 edits (82%) accepted without review; ...").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lusd.inputs import check_number


def judge_range() -> tuple[float, float]:
    """The lowest and highest score the judge gives (``lusd.judge.SCORE_MIN``/``SCORE_MAX``)."""
    from lusd.judge import SCORE_MAX, SCORE_MIN  # imports torch: only when a threshold is given

    return float(SCORE_MIN), float(SCORE_MAX)


def check_review_threshold(value: Any, name: str = "--review-threshold") -> float:
    """``value`` as a threshold within the judge's range; a one-line ConfigError otherwise."""
    low, high = judge_range()
    return check_number(value, f"{name} (a judge score)", low, high)


def needs_review(score: float | None, threshold: float | None) -> bool | None:
    """True when a judged edit scores below ``threshold``; None without a score or threshold."""
    if score is None or threshold is None:
        return None
    return score < threshold


@dataclass(frozen=True)
class ReviewCounts:
    """Every row of a batch in exactly one bucket (they sum to ``total``)."""

    threshold: float
    total: int
    accepted: int
    review: int
    failed: int
    not_run: int
    unjudged: int

    @property
    def line(self) -> str:
        """The sentence a manager reads."""
        share = f" ({100 * self.accepted / self.total:.0f}%)" if self.total else ""
        parts = [
            f"{self.accepted} of {self.total} edits{share} accepted without review",
            f"{self.review} need review (judge score < {self.threshold:g})",
        ]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.not_run:
            parts.append(f"{self.not_run} not run yet")
        if self.unjudged:
            parts.append(f"{self.unjudged} done without a judge score (run the batch again)")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "total": self.total,
            "accepted": self.accepted,
            "needs_review": self.review,
            "failed": self.failed,
            "not_run": self.not_run,
            "unjudged": self.unjudged,
            "line": self.line,
        }


def review_counts(
    jobs: Iterable[Mapping[str, Any]], bad_rows: int, threshold: float | None
) -> ReviewCounts | None:
    """The batch's review buckets from its journal rows (``state``, ``judge_score``); bad
    manifest rows count as failed. None without a threshold."""
    if threshold is None:
        return None
    accepted = review = failed = not_run = unjudged = 0
    for job in jobs:
        if job["state"] == "failed":
            failed += 1
        elif job["state"] != "done":
            not_run += 1
        elif job["judge_score"] is None:
            unjudged += 1
        elif needs_review(job["judge_score"], threshold):
            review += 1
        else:
            accepted += 1
    total = accepted + review + failed + bad_rows + not_run + unjudged
    return ReviewCounts(
        threshold, total, accepted, review, failed + bad_rows, not_run, unjudged
    )  # fmt: skip
