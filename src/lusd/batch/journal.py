"""The SQLite journal of a batch run: one row per job, an append-only event log, metrics.

Only the driver process writes it. A job becomes ``done`` in the same transaction
that records its output checksums, after both files are in place, so a crash at
any moment leaves either a finished job or one that is run again.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lusd.errors import ConfigError

JOURNAL_NAME = "journal.sqlite"
#: Columns added to ``jobs`` after the first release, with their SQL types (older
#: journals get them when opened).
_ADDED_COLUMNS = {
    "candidates": "INTEGER NOT NULL DEFAULT 1",
    "judge_score": "REAL",
    "needs_review": "INTEGER",
}
STATES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    line INTEGER NOT NULL,
    image TEXT NOT NULL,
    source_prompt TEXT NOT NULL,
    target_prompt TEXT NOT NULL,
    focus TEXT,
    seed INTEGER NOT NULL,
    preset TEXT NOT NULL,
    config TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    started_at REAL,
    finished_at REAL,
    seconds REAL,
    unet_calls INTEGER,
    iterations INTEGER,
    filter_retries INTEGER,
    focus_words TEXT,
    output TEXT,
    mask TEXT,
    output_sha256 TEXT,
    mask_sha256 TEXT,
    worker TEXT,
    candidates INTEGER NOT NULL DEFAULT 1,
    judge_score REAL,
    needs_review INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    event TEXT NOT NULL,
    at REAL NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (job_id, name)
);
"""


@dataclass
class Done:
    """What the driver records when a job finished well."""

    job_id: str
    output: str
    mask: str
    output_sha256: str
    mask_sha256: str
    seconds: float
    stats: dict[str, Any]
    metrics: dict[str, float]
    worker: str = ""
    #: the judge's score of the kept candidate (None: not judged)
    judge_score: float | None = None
    #: below the review threshold (None: no threshold or no score)
    needs_review: bool | None = None


class Journal:
    """Thin typed wrapper over the SQLite file (one connection, driver process only)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise ConfigError(f"{self.path.parent} has no batch journal ({JOURNAL_NAME})")
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
            self._add_columns()
        except sqlite3.Error as error:
            self.db.close()
            raise ConfigError(f"{self.path}: not a usable batch journal ({error})") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_columns(self) -> None:
        """Bring a journal written by an older lusd up to the current ``jobs`` columns."""
        have = {row["name"] for row in self.db.execute("PRAGMA table_info(jobs)")}
        for name, sql_type in _ADDED_COLUMNS.items():
            if name not in have:
                self.db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {sql_type}")

    # -- meta ---------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["value"]

    def set_meta(self, **values: str) -> None:
        with self._tx():
            self.db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    # -- jobs ---------------------------------------------------------------
    def jobs(self, state: str | None = None) -> list[sqlite3.Row]:
        if state is None:
            return self.db.execute("SELECT * FROM jobs ORDER BY line").fetchall()
        return self.db.execute(
            "SELECT * FROM jobs WHERE state = ? ORDER BY line", (state,)
        ).fetchall()

    def job(self, job_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for row in self.db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"):
            out[row["state"]] = row["n"]
        return out

    def upsert_job(self, job: Any, *, reset: bool) -> None:
        """Insert a JobSpec as pending, or refresh its request; ``reset`` makes it pending."""
        values = dict(
            id=job.id,
            line=job.line,
            image=job.image,
            source_prompt=job.source_prompt,
            target_prompt=job.target_prompt,
            focus=";".join(job.focus) if job.focus else None,
            seed=job.seed,
            preset=job.preset,
            config=json.dumps(job.config.to_dict(), sort_keys=True),
            config_hash=job.config_hash,
            candidates=job.candidates,
        )
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        update = ", ".join(f"{k} = excluded.{k}" for k in values if k != "id")
        with self._tx():
            exists = self.job(job.id) is not None
            self.db.execute(
                f"INSERT INTO jobs ({cols}, state) VALUES ({marks}, 'pending') "
                f"ON CONFLICT(id) DO UPDATE SET {update}",
                list(values.values()),
            )
            if reset:
                self.db.execute(
                    "UPDATE jobs SET state = 'pending', failures = 0, error = NULL WHERE id = ?",
                    (job.id,),
                )
            self._event(job.id, "reset" if reset and exists else "added" if not exists else None)

    def set_pending(self, job_id: str, event: str, detail: str | None = None) -> None:
        with self._tx():
            self.db.execute("UPDATE jobs SET state = 'pending' WHERE id = ?", (job_id,))
            self._event(job_id, event, detail)

    def start(self, job_id: str, worker: str = "") -> None:
        with self._tx():
            self.db.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?, "
                "worker = ? WHERE id = ?",
                (time.time(), worker, job_id),
            )
            self._event(job_id, "started", worker or None)

    def finish(self, done: Done) -> None:
        s = done.stats
        with self._tx():
            self.db.execute(
                "UPDATE jobs SET state = 'done', error = NULL, finished_at = ?, seconds = ?, "
                "unet_calls = ?, iterations = ?, filter_retries = ?, focus_words = ?, output = ?, "
                "mask = ?, output_sha256 = ?, mask_sha256 = ?, worker = ?, judge_score = ?, "
                "needs_review = ? WHERE id = ?",
                (
                    time.time(),
                    done.seconds,
                    _int(s.get("unet_calls")),
                    _int(s.get("iterations")),
                    _int(s.get("filter_retries")),
                    ";".join(s.get("focus_words") or []) or None,
                    done.output,
                    done.mask,
                    done.output_sha256,
                    done.mask_sha256,
                    done.worker,
                    done.judge_score,
                    done.needs_review,
                    done.job_id,
                ),
            )
            self.db.execute("DELETE FROM metrics WHERE job_id = ?", (done.job_id,))
            self._put_metrics(done.job_id, done.metrics)
            self._event(done.job_id, "done", done.output_sha256)

    def fail(self, job_id: str, error: str, seconds: float | None = None) -> None:
        with self._tx():
            self.db.execute(
                "UPDATE jobs SET state = 'failed', failures = failures + 1, error = ?, "
                "finished_at = ?, seconds = ?, judge_score = NULL, needs_review = NULL "
                "WHERE id = ?",
                (error, time.time(), seconds, job_id),
            )
            self._event(job_id, "failed", error)

    def set_review_threshold(self, threshold: float | None) -> None:
        """Record this run's review threshold and flag every done row by it (None: no flags)."""
        with self._tx():
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES ('review_threshold', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (json.dumps(threshold),),
            )
            self.db.execute(
                "UPDATE jobs SET needs_review = CASE WHEN state = 'done' AND "
                "judge_score IS NOT NULL AND ? IS NOT NULL THEN judge_score < ? END",
                (threshold, threshold),
            )

    def review_threshold(self) -> float | None:
        """The review threshold of the last run (None: it had none)."""
        return json.loads(self.get_meta("review_threshold") or "null")

    # -- metrics ------------------------------------------------------------
    def put_metrics(self, job_id: str, metrics: dict[str, float]) -> None:
        with self._tx():
            self._put_metrics(job_id, metrics)

    def metrics(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for row in self.db.execute("SELECT job_id, name, value FROM metrics"):
            out.setdefault(row["job_id"], {})[row["name"]] = row["value"]
        return out

    def events(self, job_id: str | None = None) -> list[sqlite3.Row]:
        if job_id is None:
            return self.db.execute("SELECT * FROM events ORDER BY seq").fetchall()
        return self.db.execute(
            "SELECT * FROM events WHERE job_id = ? ORDER BY seq", (job_id,)
        ).fetchall()

    # -- internals ----------------------------------------------------------
    def _put_metrics(self, job_id: str, metrics: dict[str, float]) -> None:
        self.db.executemany(
            "INSERT INTO metrics (job_id, name, value) VALUES (?, ?, ?) "
            "ON CONFLICT(job_id, name) DO UPDATE SET value = excluded.value",
            [(job_id, k, None if v is None else float(v)) for k, v in metrics.items()],
        )

    def _event(self, job_id: str, event: str | None, detail: str | None = None) -> None:
        if event:
            self.db.execute(
                "INSERT INTO events (job_id, event, at, detail) VALUES (?, ?, ?, ?)",
                (job_id, event, time.time(), detail),
            )

    def _tx(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (re-entrant)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not self.outer:
            return
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
