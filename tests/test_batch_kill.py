"""SIGKILL the batch process at random moments, resume, and check nothing is lost or doubled."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image
from test_batch_fakes import write_manifest

from lusd.batch.journal import Journal

TESTS = Path(__file__).parent


def _started(out: Path) -> int:
    """How many jobs the journal has seen start (0 before the journal exists)."""
    try:
        db = sqlite3.connect(f"file:{out / 'journal.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT COUNT(*) FROM events WHERE event = 'started'").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _kill_loop(
    cmd: list[str],
    kills_wanted: int,
    window: tuple[float, float],
    seed: int,
    out: Path | None = None,
) -> int:
    """Start ``cmd`` repeatedly and SIGKILL it at a random moment; returns the kills done.

    Without ``out`` the moment is a random delay after the start. With ``out`` (for
    slow-starting processes) most kills wait until 1-3 more jobs have started in the
    journal, plus a random fraction of ``window``, so they land during real work
    whatever the machine's speed; one run in five is killed during start-up instead.
    """
    rng = random.Random(seed)
    kills = 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}
    for _ in range(kills_wanted * 4):
        before = _started(out) if out else 0
        in_work = out is not None and rng.random() > 0.2
        target = before + rng.randint(1, 3)
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
            deadline = time.monotonic() + rng.uniform(*window)
            while proc.poll() is None:
                if in_work and _started(out) >= target:
                    time.sleep(rng.uniform(0, window[0]))
                    break
                if not in_work and time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
            if proc.poll() is not None:  # it finished: nothing left to interrupt
                log.seek(0)
                err = log.read().decode(errors="replace")
                assert proc.returncode == 0, f"batch failed on its own: {err[-2000:]}"
                return kills
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        kills += 1
        if kills >= kills_wanted:
            break
    return kills


def check_consistent(out: Path, n_rows: int) -> None:
    """Every row done exactly once, files complete and matching the journal, DB intact."""
    db = sqlite3.connect(out / "journal.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    with Journal(out / "journal.sqlite") as j:
        rows = j.jobs()
        assert len(rows) == n_rows
        assert {r["state"] for r in rows} == {"done"}
        events = j.events()
    done_events: dict[str, int] = {}
    for e in events:
        if e["event"] == "done":
            done_events[e["job_id"]] = done_events.get(e["job_id"], 0) + 1
    assert done_events == {r["id"]: 1 for r in rows}, "a row was finished twice or never"
    for sub, col in (("images", "output"), ("masks", "mask")):
        files = sorted(p.name for p in (out / sub).iterdir())
        assert files == sorted(Path(r[col]).name for r in rows), f"stray or missing {sub}"
    for r in rows:
        for col in ("output", "mask"):
            data = (out / r[col]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == r[f"{col}_sha256"]
            with Image.open(out / r[col]) as im:
                im.load()  # a truncated PNG raises here


def test_sigkill_at_random_moments_then_resume(tmp_path):
    # Kills wait for journal progress, so a fast machine cannot finish the rows early:
    # at 0.1 s a row, a kill lets at most 8 rows start (0.8 s start-up window), and
    # 12 kills cannot use up 120 rows. (A plain timer ran out of rows after 9 kills.)
    n = 120
    manifest = write_manifest(tmp_path, n)
    out = tmp_path / "out"
    cmd = [sys.executable, str(TESTS / "test_batch_fakes.py"), str(manifest), str(out), "0.1"]
    kills = _kill_loop(cmd, 12, (0.15, 0.8), seed=1, out=out)
    assert kills >= 10, f"only {kills} kills landed while the batch ran"
    with Journal(out / "journal.sqlite") as j:
        interrupted = [e for e in j.events() if e["event"] == "interrupted"]
        assert 0 < j.counts()["done"] < n or interrupted
    res = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(TESTS)}, timeout=300)
    assert res.returncode == 0
    check_consistent(out, n)


@pytest.mark.slow
def test_sigkill_cli_with_tiny_model(tmp_path, tiny_model_dir):
    """The real `lusd batch` command on the tiny SD model (num_steps=2), killed >= 10 times."""
    # each kill lets 1-3 jobs start first: with 16 rows a fast machine ran out of rows
    # after 7-9 kills
    n = 40
    manifest = write_manifest(tmp_path, n, extra={"num_steps": 2})
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-c",
        "from lusd.cli import main; main()",
        "batch",
        str(manifest),
        "-o",
        str(out),
        "--model",
        str(tiny_model_dir),
        "--no-progress",
    ]
    kills = _kill_loop(cmd, 10, (0.3, 3.0), seed=2, out=out)
    assert kills >= 10
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    check_consistent(out, n)
    with Journal(out / "journal.sqlite") as j:
        interrupted = sum(e["event"] == "interrupted" for e in j.events())
    assert interrupted >= 3, "the kills should have caught edits in progress"
