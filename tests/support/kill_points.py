"""Run the ``lusd`` CLI and SIGKILL it at the N-th time it reaches a chosen point (tests only).

``python kill_points.py POINT N MARKER_DIR -- batch MANIFEST -o OUT --model M --no-progress``

Nothing in lusd is changed: the points are hooks around the real code it runs.

* ``write-before-rename``: in ``lusd.files._write``, an output PNG's temp file is written
  and fsynced, ``os.replace`` onto the final name is about to run.
* ``write-after-rename``: that ``os.replace`` has just run; the journal has not yet recorded
  the row (``BatchRun.commit`` writes the image, then the mask, then calls ``finish``).
* ``commit-finish``: inside ``Journal.finish``'s transaction, every statement has run
  (the row reads ``done`` on that connection) and COMMIT is about to run.
* ``commit-any``: before the COMMIT of any journal transaction (creating the journal,
  meta, planning the rows, starting a job, ...).

Just before the kill a JSON marker ``POINT-PID.json`` is written (and fsynced) to
MARKER_DIR with what the point saw, so the test knows the kill landed there.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

POINTS = ("write-before-rename", "write-after-rename", "commit-finish", "commit-any")


def _kill(point: str, marker_dir: Path, **seen: object) -> None:
    marker = marker_dir / f"{point}-{os.getpid()}.json"
    with open(marker, "w") as fh:
        json.dump({"point": point, "pid": os.getpid(), **seen}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str, n: int, marker_dir: Path) -> None:
    """Hook ``point`` so that its ``n``-th hit in this process SIGKILLs it."""
    from lusd.batch.journal import Journal, _Transaction
    from lusd.files import TMP_PREFIX

    hits = 0

    def hit() -> bool:
        nonlocal hits
        hits += 1
        return hits == n

    if point.startswith("write-"):
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            src, dst = Path(src), Path(dst)
            output = (
                src.name.startswith(TMP_PREFIX)
                and dst.suffix == ".png"
                and dst.parent.name in ("images", "masks")
            )
            if not output:
                return real_replace(src, dst, *args, **kwargs)
            seen = dict(job_id=dst.stem, kind=dst.parent.name, tmp=src.name)
            seen["tmp_bytes"] = src.stat().st_size
            if point == "write-before-rename" and hit():
                _kill(point, marker_dir, **seen, target_existed=dst.exists())
            real_replace(src, dst, *args, **kwargs)
            if point == "write-after-rename" and hit():
                seen.update(tmp_gone=not src.exists(), bytes=dst.stat().st_size)
                _kill(point, marker_dir, **seen)

        os.replace = replace  # lusd.files calls os.replace through the os module
        return

    real_exit = _Transaction.__exit__
    finishing: list[str] = []  # the job id while Journal.finish runs

    def exit_(self, exc_type, *rest):
        committing = self.outer and exc_type is None and self.db.in_transaction
        if committing and (point == "commit-any" or finishing) and hit():
            seen: dict[str, object] = {"in_transaction": True}
            if finishing:  # the row as this connection sees it in the open transaction
                row = self.db.execute(
                    "SELECT state FROM jobs WHERE id = ?", (finishing[0],)
                ).fetchone()
                seen.update(job_id=finishing[0], uncommitted_state=row[0])
            _kill(point, marker_dir, **seen)
        return real_exit(self, exc_type, *rest)

    _Transaction.__exit__ = exit_

    if point == "commit-finish":
        real_finish = Journal.finish

        def finish(self, done):
            finishing.append(done.job_id)
            try:
                return real_finish(self, done)
            finally:
                finishing.pop()

        Journal.finish = finish


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[3] != "--" or argv[0] not in POINTS:
        sys.exit(f"usage: kill_points.py {{{','.join(POINTS)}}} N MARKER_DIR -- LUSD-ARGS...")
    point, n, marker_dir = argv[0], int(argv[1]), Path(argv[2])
    marker_dir.mkdir(parents=True, exist_ok=True)
    install(point, n, marker_dir)
    from lusd.cli import main as lusd_main

    sys.argv = ["lusd", *argv[4:]]
    lusd_main()


if __name__ == "__main__":
    main(sys.argv[1:])
