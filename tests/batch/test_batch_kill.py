"""SIGKILL the batch process at random moments, resume, and check nothing is lost or doubled."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lusd.batch.journal import Journal
from tests.support.batch_fakes import write_manifest

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"  # batch_fakes.py and kill_points.py run as scripts
_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


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


def _kill_once(
    cmd: list[str], rng: random.Random, window: tuple[float, float], out: Path | None = None
) -> str | None:
    """Start ``cmd`` and SIGKILL it at a random moment: returns "work" or "start-up" (where
    the kill was aimed), None when the batch finished first.

    Without ``out`` the moment is a random delay after the start. With ``out`` (for
    slow-starting processes) most kills wait until 1-3 more jobs have started in the
    journal, plus a random fraction of ``window``, so they land during real work
    whatever the machine's speed; one run in five is killed during start-up instead.
    """
    before = _started(out) if out else 0
    in_work = out is not None and rng.random() > 0.2
    target = before + rng.randint(1, 3)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=_ENV, stdout=subprocess.DEVNULL, stderr=log)
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
            return None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return "work" if in_work else "start-up"


def _kill_loop(
    cmd: list[str],
    kills_wanted: int,
    window: tuple[float, float],
    seed: int,
    out: Path | None = None,
) -> int:
    """Start ``cmd`` repeatedly and SIGKILL it at random moments (``_kill_once``); returns
    the kills done, fewer than wanted when the batch finished first."""
    rng = random.Random(seed)
    kills = 0
    for _ in range(kills_wanted * 4):
        if _kill_once(cmd, rng, window, out) is None:
            return kills
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
    cmd = [sys.executable, str(SUPPORT / "batch_fakes.py"), str(manifest), str(out), "0.1"]
    kills = _kill_loop(cmd, 12, (0.15, 0.8), seed=1, out=out)
    assert kills >= 10, f"only {kills} kills landed while the batch ran"
    with Journal(out / "journal.sqlite") as j:
        interrupted = [e for e in j.events() if e["event"] == "interrupted"]
        assert 0 < j.counts()["done"] < n or interrupted
    res = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert res.returncode == 0
    check_consistent(out, n)


def _lusd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from lusd.cli import main; main()", *args]


def _job_state(out: Path, job_id: str) -> str | None:
    """A job's state as a new reader of the killed run's journal sees it."""
    db = sqlite3.connect(f"file:{out / 'journal.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        db.close()
    return None if row is None else row[0]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _pixels(path: Path) -> tuple[str, np.ndarray]:
    with Image.open(path) as im:
        return im.mode, np.asarray(im)


def _kill_at(point: str, nth: int, args: list[str], markers: Path) -> dict:
    """Run the CLI under kill_points.py, which SIGKILLs it at the ``nth`` hit of ``point``."""
    before = set(markers.glob(f"{point}-*.json"))
    cmd = [sys.executable, str(SUPPORT / "kill_points.py"), point, str(nth), str(markers), "--"]
    res = subprocess.run([*cmd, *args], env=_ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, f"{point} #{nth} not reached: {res.stderr[-2000:]}"
    (new,) = set(markers.glob(f"{point}-*.json")) - before
    return json.loads(new.read_text())


@pytest.mark.slow
def test_kill_anywhere_cli_with_tiny_model(tmp_path, tiny_model_dir):
    """The real `lusd batch` on the tiny SD model, SIGKILLed 20 times and resumed each time:
    at random moments, inside the atomic writes of the outputs (temp file written but not
    renamed; renamed but the row not yet recorded) and inside journal transactions just
    before COMMIT. Then every row is done once, nothing stray is left, and every output's
    pixels equal those of a clean run of the same manifest."""
    # rows are cheap (~0.2 s) and each kill lets a few finish: 40 rows ran out before
    # the 20th kill; start-up (~5 s) is what the kills cost
    n = 80
    manifest = write_manifest(tmp_path, n, extra={"num_steps": 2})
    out, clean, markers = tmp_path / "out", tmp_path / "clean", tmp_path / "markers"
    common = [str(manifest), "--model", str(tiny_model_dir), "--no-progress"]
    args = ["batch", "-o", str(out), *common]
    rng = random.Random(3)
    # the first kill is in the first COMMIT of all: the new journal, still under its temp name
    kinds = ["random"] * 8 + ["write-before-rename", "write-after-rename", "commit-finish"] * 3
    kinds += ["commit-plan", "commit-work"]
    rng.shuffle(kinds)
    kinds.insert(0, "commit-new-journal")
    landed: dict[str, int] = {}
    for kind in kinds:
        if kind == "random":
            where = _kill_once(_lusd(*args), rng, (0.3, 3.0), out)
            assert where is not None, "the batch finished before all 20 kills"
            kind = f"random ({where})"
        elif kind.startswith("commit-") and kind != "commit-finish":
            # commit-any counts every COMMIT of the run: 1 = creating the journal, then
            # 2 meta writes and one per row while planning (n rows), then start/finish
            nth = {"commit-new-journal": 1, "commit-plan": rng.randint(2, n)}.get(kind)
            _kill_at("commit-any", nth or rng.randint(n + 6, n + 12), args, markers)
        else:
            nth = rng.randint(1, 4) if kind.startswith("write-") else rng.randint(1, 2)
            seen = _kill_at(kind, nth, args, markers)
            job, sub = seen["job_id"], seen.get("kind")
            # a kill before the journal commits the row leaves it running: rerun on resume
            assert _job_state(out, job) == "running", (kind, seen)
            if kind == "write-before-rename":
                tmp = out / sub / seen["tmp"]
                assert seen["tmp_bytes"] > 0 and tmp.stat().st_size == seen["tmp_bytes"]
            elif kind == "write-after-rename":
                assert seen["tmp_gone"] and (out / sub / f"{job}.png").stat().st_size
            else:
                assert seen["uncommitted_state"] == "done", seen
        landed[kind] = landed.get(kind, 0) + 1
    assert sum(landed.values()) == 20
    for point in ("write-before-rename", "write-after-rename", "commit-finish"):
        assert landed[point] == 3 == len(list(markers.glob(f"{point}-*.json")))
    assert len(list(markers.glob("commit-any-*.json"))) == 3
    with Journal(out / "journal.sqlite") as j:
        assert j.counts()["done"] < n, "the kills should not have finished the batch"

    res = subprocess.run(_lusd(*args), env=_ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    check_consistent(out, n)
    with Journal(out / "journal.sqlite") as j:
        interrupted = sum(e["event"] == "interrupted" for e in j.events())
    # each write/finish kill left its row running, so the next plan set it back to pending
    assert interrupted >= 9, f"{interrupted} interrupted events for 9 mid-row kills"

    res = subprocess.run(
        _lusd("batch", "-o", str(clean), *common), env=_ENV, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    check_consistent(clean, n)
    # no temp files, scratch journals or WAL files left: the same tree as the clean run's
    assert _tree(out) == _tree(clean)
    for sub in ("images", "masks"):
        for path in sorted((clean / sub).iterdir()):
            mode, want = _pixels(path)
            got_mode, got = _pixels(out / sub / path.name)
            assert (got_mode, got.shape) == (mode, want.shape), path.name
            assert np.array_equal(got, want), f"{sub}/{path.name} differs from the clean run"
