"""The output folder of a batch: ownership, a run lock, atomic files and their checksums."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from lusd.batch.journal import JOURNAL_NAME, Journal
from lusd.errors import ConfigError
from lusd.files import TMP_PREFIX

LOCK_NAME = ".lusd-batch.lock"
IMAGES, MASKS = "images", "masks"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str | None:
    try:
        return sha256_bytes(path.read_bytes())
    except OSError:
        return None


def remove_temp_files(outdir: Path) -> int:
    """Delete temp files a killed run left behind; returns how many."""
    n = 0
    for sub in (IMAGES, MASKS):
        for p in (outdir / sub).glob(f"{TMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                p.unlink()
                n += 1
    return n


@contextlib.contextmanager
def run_lock(outdir: Path) -> Iterator[None]:
    """Exclusive lock on OUTDIR for the whole run (released by the OS if killed)."""
    outdir.mkdir(parents=True, exist_ok=True)
    fh = open(outdir / LOCK_NAME, "a+")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another lusd batch is already running in {outdir}") from None
        yield
    finally:
        fh.close()


def check_outdir_free(outdir: Path) -> None:
    """ConfigError unless OUTDIR is new, empty or a batch's own: run before anything
    (the run lock included) is written into it, so a refused folder is left as it was."""
    if not outdir.is_dir() or (outdir / JOURNAL_NAME).exists():
        return
    scratch = f"{TMP_PREFIX}{JOURNAL_NAME}"
    others = [
        p.name for p in outdir.iterdir() if p.name != LOCK_NAME and not p.name.startswith(scratch)
    ]
    if others:
        raise ConfigError(
            f"{outdir} is not empty and holds no lusd batch journal; "
            "choose an empty or new output folder (-o) so nothing is overwritten"
        )


def open_journal(outdir: Path, manifest_path: Path, manifest_sha: str) -> Journal:
    """Open (or create) OUTDIR's journal, refusing folders that belong to something else.

    A folder belongs to the manifest at the recorded path; a manifest that moved
    but has the same content is accepted too.
    """
    journal_file = outdir / JOURNAL_NAME
    if not journal_file.exists():
        check_outdir_free(outdir)
        scratch = f"{TMP_PREFIX}{JOURNAL_NAME}"
        # build it under a temp name and rename: a kill here leaves no half-made journal
        tmp = outdir / scratch
        for leftover in outdir.glob(f"{scratch}*"):
            leftover.unlink()
        with Journal(tmp) as fresh:
            fresh.set_meta(manifest=str(manifest_path), manifest_sha256=manifest_sha)
        os.replace(tmp, journal_file)
        return Journal(journal_file)
    journal = Journal(journal_file)
    owner = journal.get_meta("manifest")
    if owner is None:
        journal.close()
        raise ConfigError(f"{journal_file} is not a lusd batch journal")
    if owner != str(manifest_path) and journal.get_meta("manifest_sha256") != manifest_sha:
        journal.close()
        raise ConfigError(
            f"{outdir} belongs to the batch of manifest {owner}, not {manifest_path}; "
            "use another output folder (-o) or run that manifest"
        )
    journal.set_meta(manifest=str(manifest_path), manifest_sha256=manifest_sha)
    return journal


def output_paths(job_id: str) -> tuple[str, str]:
    """Paths of a job's edited image and mask, relative to OUTDIR."""
    return f"{IMAGES}/{job_id}.png", f"{MASKS}/{job_id}.png"
