"""The bad-input sweep: malformed inputs for every way into lusd, and what must happen.

Shared by ``tests/cli/test_bad_inputs.py`` (one test per case) and ``bench/bad_inputs.py``
(the table in docs/reliability.md). Each case builds its inputs in a fresh folder, runs
the real CLI app in-process (typer's runner, so a traceback would show in its output)
or the web app's editor, and returns one :class:`Outcome` per attempt. :func:`problems`
holds the promises every case is judged by:

* refused: a non-zero exit and exactly one ``error:`` line on stderr (web: one line);
* accepted: exit 0 and every output decodes at the size the input (upright) has;
* bad rows (batch, eval): each bad row named on exactly one line, every good row done;
* always: no traceback, no exception escaping, no partial or stray file in the output folder.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import logging
import math
import os
import re
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from PIL import Image

#: Size (w, h) of the good test photo; small so that each edit takes a fraction of a second.
PHOTO_SIZE = (56, 40)
GOOD_PROMPTS = ("a cat", "a cat wearing a hat")
#: Every run is this short: the sweep is about inputs, not about edits.
STEPS = "2"
#: Files a batch output folder may hold besides ``images/<id>.png`` and ``masks/<id>.png``.
BATCH_STATE = {
    ".lusd-batch.lock", "journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm",
    "metrics.csv", "metrics.json",
}  # fmt: skip
#: Lines `lusd batch` may print on stderr besides one line per bad row.
_BATCH_NOTES = re.compile(r"^(see the failures with: lusd report |note: )")
_ROW_LINE = re.compile(r"^(skipped|failed) \S+ line (\d+)\b")


@dataclass
class Outcome:
    """What one attempt did: exit code, output, and the files it left behind."""

    label: str
    code: int
    out: str = ""
    err: str = ""
    #: an exception other than SystemExit that got out of the command (a crash)
    escaped: str = ""
    #: the folder the attempt writes into, with its file names (relative) before the attempt
    folder: Path | None = None
    before: frozenset[str] = frozenset()
    #: files the attempt may leave in ``folder`` (relative names)
    allowed: frozenset[str] = frozenset()
    #: outputs that must decode, with the size (w, h) they must have
    outputs: dict[Path, tuple[int, int]] = field(default_factory=dict)
    #: batch and eval: ids of the rows that must be done, and the bad rows' lines and phrases
    good_ids: frozenset[str] = frozenset()
    done_ids: frozenset[str] = frozenset()
    bad_rows: dict[int, str] = field(default_factory=dict)

    @property
    def lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    @property
    def message(self) -> str:
        """The one-line error (without ``error:``), or the bad rows' lines joined."""
        lines = self.lines
        if self.code == 0 and not self.bad_rows:
            return ""
        if len(lines) == 1:
            return lines[0].removeprefix("error: ")
        rows = [line for line in lines if _ROW_LINE.match(line)]
        return " | ".join(rows or lines)


@dataclass(frozen=True)
class Case:
    """One malformed input: where it goes in, what must happen, a phrase of the message."""

    id: str
    command: str
    what: str
    expect: str  # "accepted", "refused" or "bad rows"
    says: str
    run: Callable[[Ctx], list[Outcome]]


CASES: list[Case] = []


def case(command: str, what: str, expect: str, says: str = ""):
    def register(function: Callable[[Ctx], Outcome | list[Outcome]]) -> Callable:
        def run(ctx: Ctx) -> list[Outcome]:
            result = function(ctx)
            return result if isinstance(result, list) else [result]

        name = function.__name__.removeprefix("case_").replace("_", "-")
        CASES.append(Case(name, command, what, expect, says, run))
        return function

    return register


# ---------------------------------------------------------------------------------------------
# The judge


def problems(case: Case, outcomes: list[Outcome]) -> list[str]:
    """Every broken promise of ``case`` (empty when it was handled well)."""
    found: list[str] = []
    for o in outcomes:
        where = f"{o.label}: " if len(outcomes) > 1 else ""
        found += [where + p for p in _problems(case, o)]
    return found


def _problems(case: Case, o: Outcome) -> list[str]:
    found = []
    if o.escaped:
        found.append(f"an exception escaped: {o.escaped}")
    if "Traceback" in o.out + o.err:
        found.append("a traceback was printed")
    lines = o.lines
    if case.expect == "refused":
        if o.code == 0:
            found.append("exit code 0, expected a refusal")
        if len(lines) != 1:
            found.append(f"{len(lines)} stderr lines, expected one: {lines[:4]}")
        elif case.command != "web app" and not lines[0].startswith("error: "):
            found.append(f"the line does not start with 'error:': {lines[0]!r}")
        if case.says.lower() not in o.message.lower():
            found.append(f"the message lacks {case.says!r}: {o.message!r}")
    elif case.expect == "accepted":
        if o.code != 0:
            found.append(f"exit code {o.code}, expected success: {lines[:2]}")
        elif lines:
            found.append(f"stderr is not empty: {lines[:2]}")
    else:  # bad rows
        found += _row_problems(case, o, lines)
    found += _file_problems(o)
    return found


def _row_problems(case: Case, o: Outcome, lines: list[str]) -> list[str]:
    found = []
    if o.code == 0 and case.command == "lusd batch":
        found.append("exit code 0, expected 1 (some rows are bad)")
    if o.good_ids - o.done_ids:
        found.append(f"good rows not done: {sorted(o.good_ids - o.done_ids)}")
    for line_no, phrase in o.bad_rows.items():
        named = [line for line in lines if re.search(rf"\bline {line_no}\b", line)]
        if len(named) != 1:
            found.append(f"row on line {line_no} named on {len(named)} lines, expected one")
        elif phrase.lower() not in named[0].lower():
            found.append(f"row on line {line_no}: message lacks {phrase!r}: {named[0]!r}")
    rows = set(o.bad_rows)
    for line in lines:
        match = re.search(r"\bline (\d+)\b", line)
        if match and int(match.group(1)) in rows or _BATCH_NOTES.match(line):
            continue
        found.append(f"unexpected stderr line: {line!r}")
    return found


def _file_problems(o: Outcome) -> list[str]:
    found = []
    if o.folder is not None and o.folder.is_dir():
        now = {p.relative_to(o.folder).as_posix() for p in o.folder.rglob("*") if p.is_file()}
        stray = sorted(now - o.before - o.allowed - {str(p) for p in _relative(o)})
        if stray:
            found.append(f"partial or stray files left: {stray[:5]}")
    for path, size in o.outputs.items():
        try:
            with Image.open(path) as image:
                image.load()
                if image.size != size:
                    found.append(f"{path.name} is {image.size}, expected {size}")
        except Exception as error:  # noqa: BLE001 - any failure to decode is the finding
            found.append(f"{path.name} does not decode: {type(error).__name__}: {error}")
    return found


def _relative(o: Outcome) -> list[str]:
    if o.folder is None:
        return []
    return [p.relative_to(o.folder).as_posix() for p in o.outputs if p.is_relative_to(o.folder)]


def verdict(case: Case, outcomes: list[Outcome]) -> str:
    """The table's outcome column: "accepted, edited ..." or "refused: <message>"."""
    first = outcomes[0]
    if case.expect == "accepted" and all(o.code == 0 for o in outcomes):
        sizes = sorted({f"{w}×{h}" for o in outcomes for (w, h) in o.outputs.values()})
        return f"accepted, edited ({', '.join(sizes)})" if sizes else "accepted"
    if case.expect == "bad rows":
        return f"bad rows refused, good rows done: {first.message}"
    count = f" ({len(outcomes)} values)" if len(outcomes) > 1 else ""
    return f"refused{count}: {first.message}"


# ---------------------------------------------------------------------------------------------
# The workplace of one case


class Session:
    """What cases share: the tiny model, its broken copies, a finished batch, a loaded pipe."""

    def __init__(self, root: Path, model: Path) -> None:
        self.root, self.model = root, model
        self._cache: dict[str, Any] = {}

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


class Ctx:
    """A fresh folder for one case, and the ways to run lusd on what it builds there."""

    def __init__(self, session: Session, folder: Path) -> None:
        self.session, self.tmp = session, folder
        self.model = session.model
        folder.mkdir(parents=True, exist_ok=True)

    # -- inputs -------------------------------------------------------------------------------
    def photo(self, name: str = "photo.png", **save: Any) -> Path:
        return self.save(photo_image(), name, **save)

    def save(self, image: Image.Image, name: str, **save: Any) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, **save)
        return path

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def broken_model(self, name: str, damage: Callable[[Path], None]) -> Path:
        """A copy of the tiny model with ``damage`` done to it (made once per session)."""

        def make() -> Path:
            folder = self.session.root / "models" / name
            shutil.copytree(self.model, folder)
            damage(folder)
            return folder

        return self.session.cached(f"model:{name}", make)

    def unwritable(self) -> Path:
        """A folder nobody may write in (root may write anywhere but in /proc)."""
        folder = self.tmp / "locked"
        folder.mkdir(exist_ok=True)
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):
            return Path("/proc/1/lusd-out")
        return folder / "out"

    # -- lusd edit ----------------------------------------------------------------------------
    def edit(
        self,
        image: Path | str,
        *extra: Any,
        target: str = GOOD_PROMPTS[1],
        source: str = GOOD_PROMPTS[0],
        model: Path | None = None,
        output: Path | None = None,
        size: tuple[int, int] | None = PHOTO_SIZE,
        label: str = "",
    ) -> Outcome:
        """``lusd edit`` with the tiny model; ``size`` is what a success must produce."""
        output = output or self.tmp / "out" / "edited.png"
        args = ["edit", image, "-t", target, "--model", model or self.model, "-o", output]
        steps_given = any(str(a).startswith(("--steps", "num_steps=")) for a in extra)
        args += [*extra] if steps_given else ["--steps", STEPS, *extra]
        if source:
            args += ["-s", source]
        outputs = {output: size} if size else {}
        return self.cli(args, output.parent, outputs=outputs, label=label)

    def cli(
        self,
        args: list[Any],
        folder: Path | None = None,
        *,
        outputs: dict[Path, tuple[int, int]] | None = None,
        allowed: frozenset[str] = frozenset(),
        label: str = "",
    ) -> Outcome:
        from typer.testing import CliRunner

        from lusd.cli import app

        before = _files(folder)
        with _logged() as logged:
            result = CliRunner().invoke(app, [str(a) for a in args])
        escaped = result.exception
        code = result.exit_code
        outcome = Outcome(
            label=label or " ".join(str(a) for a in args[1:2]),
            code=code,
            out=result.stdout,
            err=result.stderr + logged.getvalue(),
            escaped="" if escaped is None or isinstance(escaped, SystemExit) else repr(escaped),
            folder=folder,
            before=before,
            allowed=allowed,
        )
        if code == 0:
            outcome.outputs = dict(outputs or {})
        return outcome

    def edit_values(self, option: str, values: tuple[str, ...], **kwargs: Any) -> list[Outcome]:
        photo = self.photo()
        return [
            self.edit(photo, *_option(option, v), label=f"{option} {v}", **kwargs) for v in values
        ]

    # -- lusd batch ---------------------------------------------------------------------------
    def batch(
        self,
        rows: list[dict[str, Any]] | None = None,
        *,
        bad: dict[int, str] | None = None,
        good: tuple[str, ...] = ("good",),
        raw: bytes | None = None,
        manifest: str = "manifest.csv",
        extra: tuple[Any, ...] = (),
        outdir: Path | None = None,
        model: Path | None = None,
        label: str = "",
    ) -> Outcome:
        """``lusd batch`` on a manifest: a good row ``good`` first, then ``rows``.

        ``bad`` maps the manifest line of each bad row to a phrase its line must hold;
        ``raw`` replaces the whole manifest (then ``good`` lists the ids that must be done).
        """
        self.photo("images/good.png")
        path = self.tmp / manifest
        if raw is not None:
            path.write_bytes(raw)
        else:
            good_row = {"id": "good", "image": "images/good.png"}
            good_row.update(source_prompt=GOOD_PROMPTS[0], target_prompt=GOOD_PROMPTS[1])
            write_rows(path, [good_row, *(rows or [])])
        outdir = outdir or self.tmp / "out"
        args = ["batch", path, "-o", outdir, "--model", model or self.model, "--steps", STEPS]
        outcome = self.cli([*args, "--no-progress", *extra], outdir, label=label)
        done = _done_ids(outdir)
        outcome.done_ids = frozenset(done)
        outcome.good_ids = frozenset(good)
        outcome.bad_rows = dict(bad or {})
        outcome.allowed = frozenset(BATCH_STATE if outcome.done_ids or outcome.bad_rows else ())
        outcome.outputs = {outdir / f"{d}/{i}.png": PHOTO_SIZE for i in done for d in _SUBS}
        return outcome

    def batch_values(self, option: str, values: tuple[str, ...]) -> list[Outcome]:
        return [
            self.batch(extra=_option(option, v), outdir=self.tmp / f"out{i}", label=f"{option} {v}")
            for i, v in enumerate(values)
        ]

    def finished_batch(self) -> Path:
        """A copy of one finished two-row batch (run once per session)."""

        def make() -> Path:
            ctx = Ctx(self.session, self.session.root / "finished")
            outcome = ctx.batch([dict(good_row("second"), seed=1)], good=("good", "second"))
            assert outcome.code == 0, outcome.err
            return ctx.tmp

        source = self.session.cached("finished", make)
        copy = self.tmp / "finished"
        shutil.copytree(source, copy, symlinks=True)
        return copy

    # -- web app ------------------------------------------------------------------------------
    def web(
        self,
        upload: Path | None,
        *,
        source: str = GOOD_PROMPTS[0],
        target: str = GOOD_PROMPTS[1],
        strength: Any = 3,
        seed: Any = 0,
        size: tuple[int, int] = PHOTO_SIZE,
        label: str = "",
    ) -> Outcome:
        """The web app's edit (``Editor.run``) on an uploaded file: a record or one line."""
        from lusd.errors import LUSDError

        editor_module = web_editor_module()
        workdir = self.tmp / "app"
        workdir.mkdir(exist_ok=True)
        pipe = self.session.cached("pipe", lambda: _tiny_pipe(self.model))
        settings = editor_module.AppSettings(base_overrides={"num_steps": int(STEPS)})
        outcome = Outcome(
            label=label or str(upload), code=0, folder=workdir, before=_files(workdir)
        )
        try:
            editor = editor_module.Editor(pipe, settings, workdir)
            record = editor.run(str(upload) if upload else None, source, target, "", strength, seed)
        except LUSDError as error:
            outcome.code, outcome.err = 1, str(error)
        except Exception as error:  # noqa: BLE001 - the finding is that it escaped
            outcome.code, outcome.escaped = 2, f"{type(error).__name__}: {error}"
        else:
            outcome.outputs = {Path(record.result_path): size, Path(record.mask_path): size}
            outcome.allowed = frozenset(
                Path(p).relative_to(workdir).as_posix()
                for p in (record.input_path, record.overlay_path)
            )
        return outcome


_SUBS = ("images", "masks")


def web_editor_module():
    """The web app's editing logic (``Editor``, ``AppSettings``): the ``lusd.web`` package."""
    import lusd.web

    return lusd.web


def _tiny_pipe(model: Path):
    from lusd.loading import load_pipeline

    pipe = load_pipeline(str(model))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@contextlib.contextmanager
def _logged() -> Iterator[io.StringIO]:
    """What the CLI's log handler (stderr, warnings and up) would print during the block.

    In-process, pytest's handlers take lusd's and the libraries' log records; this puts
    them back beside stderr, so a logged traceback or error line counts like a printed one.
    """
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.WARNING)
    loggers = [logging.getLogger(name) for name in ("", "diffusers", "transformers")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield buffer
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def _files(folder: Path | None) -> frozenset[str]:
    if folder is None or not folder.is_dir():
        return frozenset()
    return frozenset(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _done_ids(outdir: Path) -> set[str]:
    journal = outdir / "journal.sqlite"
    if not journal.is_file():
        return set()
    import sqlite3

    with contextlib.closing(sqlite3.connect(journal)) as db:
        return {row[0] for row in db.execute("SELECT id FROM jobs WHERE state = 'done'")}


def _option(option: str, value: str) -> list[str]:
    if option.startswith("--set "):
        return ["--set", f"{option.removeprefix('--set ')}={value}"]
    return [option, value]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def good_row(row_id: str, image: str = "images/good.png", **values: Any) -> dict[str, Any]:
    row = {"id": row_id, "image": image, "source_prompt": GOOD_PROMPTS[0]}
    row["target_prompt"] = GOOD_PROMPTS[1]
    return {**row, **values}


def photo_image(size: tuple[int, int] = PHOTO_SIZE, seed: int = 0) -> Image.Image:
    w, h = size
    pixels = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but holds almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))


def bomb_png() -> bytes:
    """12000 x 12000 pixels (144 megapixels) in a 17 kB file: one bit each, all zero."""
    buffer = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buffer, format="PNG")
    return buffer.getvalue()


def exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    photo_image().save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@contextlib.contextmanager
def disk_full_after_check() -> Iterator[None]:
    """The disk fills up between the checks and the write: every fsync fails with ENOSPC."""
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with mock.patch("lusd.files.os.fsync", side_effect=error):
        yield


@contextlib.contextmanager
def disk_full() -> Iterator[None]:
    """Every disk reports 100 bytes free."""
    usage = shutil._ntuple_diskusage(10**9, 10**9 - 100, 100)  # type: ignore[attr-defined]
    with mock.patch("lusd.inputs.shutil.disk_usage", return_value=usage):
        yield


# Values for every numeric option: not a number, far below and far above any limit.
NAN_NEG_HUGE = ("nan", "-1e9", "1e30")
INT_NAN_NEG_HUGE = ("nan", "-1000000000", "1" + "0" * 30)


def numeric_fields() -> list[tuple[str, bool]]:
    """(name, is_int) of every numeric EditConfig field."""
    from dataclasses import fields

    from lusd.config import EditConfig

    out = []
    for f in fields(EditConfig):
        value = getattr(EditConfig(), f.name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append((f.name, isinstance(value, int)))
    return out


# ---------------------------------------------------------------------------------------------
# lusd edit: the picture


@case("lusd edit", "zero-byte .png", "refused", "empty file")
def case_edit_zero_bytes(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.write("empty.png", b""))


@case("lusd edit", "truncated PNG (first half of the file)", "refused", "truncated")
def case_edit_truncated_png(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.write("cut.png", truncated(encoded(photo_image(), "PNG"))))


@case("lusd edit", "truncated JPEG", "refused", "truncated")
def case_edit_truncated_jpeg(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.write("cut.jpg", truncated(encoded(photo_image(), "JPEG"))))


@case("lusd edit", "a text file named .png", "refused", "not an image")
def case_edit_text_as_png(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.write("notes.png", "shopping list: milk, eggs\n"))


@case("lusd edit", "decompression bomb: 144-megapixel PNG in 17 kB", "refused", "pixels")
def case_edit_bomb(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.write("bomb.png", bomb_png()))


@case("lusd edit", "the bomb with --max-pixels raised to 10^9", "refused", "pixels")
def case_edit_bomb_raised_limit(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.write("bomb.png", bomb_png()), "--max-pixels", 10**9)


@case("lusd edit", "PNG header declaring 20000×20000", "refused", "400,000,000 pixels")
def case_edit_huge_header(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.write("huge.png", png_header(20000, 20000)))


@case("lusd edit", "1×1 image", "accepted")
def case_edit_one_pixel(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.save(Image.new("RGB", (1, 1), (200, 30, 30)), "dot.png"), size=(1, 1))


@case("lusd edit", "16-bit greyscale PNG", "accepted")
def case_edit_16_bit(ctx: Ctx) -> Outcome:
    values = np.random.default_rng(1).integers(0, 65535, PHOTO_SIZE[::-1]).astype(np.uint16)
    return ctx.edit(ctx.save(Image.fromarray(values), "deep.png"))


@case("lusd edit", "CMYK JPEG", "accepted")
def case_edit_cmyk(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.save(photo_image().convert("CMYK"), "print.jpg"))


@case("lusd edit", "palette PNG", "accepted")
def case_edit_palette(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.save(photo_image().convert("P"), "palette.png"))


@case("lusd edit", "RGBA PNG, half transparent", "accepted")
def case_edit_alpha(ctx: Ctx) -> Outcome:
    image = photo_image().convert("RGBA")
    image.putalpha(128)
    return ctx.edit(ctx.save(image, "alpha.png"))


@case("lusd edit", "greyscale PNG", "accepted")
def case_edit_grey(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.save(photo_image().convert("L"), "grey.png"))


@case("lusd edit", "animated GIF (3 frames)", "accepted")
def case_edit_animated(ctx: Ctx) -> Outcome:
    frames = [photo_image(seed=i).convert("P") for i in range(3)]
    path = ctx.save(frames[0], "anim.gif", save_all=True, append_images=frames[1:])
    return ctx.edit(path)


@case("lusd edit", "JPEG with EXIF orientation 6 (rotated 90°)", "accepted")
def case_edit_exif_rotated(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.write("rotated.jpg", exif_jpeg(6)), size=PHOTO_SIZE[::-1])


@case("lusd edit", "JPEG with an invalid EXIF orientation (9)", "accepted")
def case_edit_exif_invalid(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.write("odd.jpg", exif_jpeg(9)))


@case("lusd edit", "path with spaces and non-ASCII letters", "accepted")
def case_edit_path_spaces(ctx: Ctx) -> Outcome:
    photo = ctx.photo("my photos/café crème.png")
    return ctx.edit(photo, output=ctx.tmp / "out" / "édité avec espaces.png")


@case("lusd edit", "image that does not exist", "refused", "not found")
def case_edit_missing(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.tmp / "nowhere.png")


@case("lusd edit", "a folder as the image", "refused", "not a file")
def case_edit_folder(ctx: Ctx) -> Outcome:
    (ctx.tmp / "album.png").mkdir()
    return ctx.edit(ctx.tmp / "album.png")


# ---------------------------------------------------------------------------------------------
# lusd edit: regions


@case("lusd edit", "--region: a text file, not an image", "refused", "not an image")
def case_edit_region_not_image(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), "--region", ctx.write("where.png", "the top left, please\n"))


@case("lusd edit", "--region: an all-black mask (nothing may change)", "refused", "empty")
def case_edit_region_empty(ctx: Ctx) -> Outcome:
    black = ctx.save(Image.new("L", PHOTO_SIZE, 0), "black.png")
    return ctx.edit(ctx.photo(), "--region", black)


@case("lusd edit", "--region: a mask of another aspect ratio", "refused", "aspect ratio")
def case_edit_region_aspect(ctx: Ctx) -> Outcome:
    mask = ctx.save(Image.new("L", (40, 40), 255), "square.png")
    return ctx.edit(ctx.photo(), "--region", mask)


@case("lusd edit", "--box outside, inverted, zero-area, not four numbers", "refused", "box")
def case_edit_bad_boxes(ctx: Ctx) -> list[Outcome]:
    boxes = ("60,0,80,10", "30,30,10,10", "10,10,10,20", "1,2,3", "a,b,c,d")
    return ctx.edit_values("--box", boxes)


@case("lusd edit", "--region and --box together", "refused", "not both")
def case_edit_region_and_box(ctx: Ctx) -> Outcome:
    mask = ctx.save(Image.new("L", PHOTO_SIZE, 255), "white.png")
    return ctx.edit(ctx.photo(), "--region", mask, "--box", "0,0,10,10")


@case("lusd edit", "--box with --raw (no paste-back)", "refused", "paste_back")
def case_edit_box_raw(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), "--box", "0,0,10,10", "--raw")


@case("lusd batch", "region column: missing file, box outside, empty mask", "bad rows", "region")
def case_batch_bad_regions(ctx: Ctx) -> Outcome:
    ctx.save(Image.new("L", PHOTO_SIZE, 0), "black.png")
    rows = [
        good_row("missing", region="nowhere.png"),
        good_row("outside", region="50,30,90,60"),
        good_row("empty", region="black.png"),
    ]
    return ctx.batch(rows, bad={3: "region", 4: "region", 5: "region"})


# ---------------------------------------------------------------------------------------------
# lusd edit: prompts


@case("lusd edit", "target prompt of 100 words", "refused", "tokens long")
def case_edit_long_prompt(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), target="a cat wearing a hat " * 20)


@case("lusd edit", "target prompt of 200,000 characters", "refused", "tokens long")
def case_edit_huge_prompt(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), target="hat " * 50_000)


@case("lusd edit", "non-Latin prompts (Japanese)", "accepted")
def case_edit_japanese(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), source="猫", target="帽子をかぶった猫")


@case("lusd edit", "target prompt of stop-words only ('the of and a')", "refused", "stop-words")
def case_edit_stop_words(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), target="the of and a")


@case("lusd edit", "target prompt of punctuation only ('...!?')", "refused", "no words")
def case_edit_punctuation(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), target="...!?")


@case("lusd edit", "blank target prompt", "refused", "empty")
def case_edit_blank_prompt(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), target="   ")


@case("lusd edit", "a --focus word not in the prompt", "refused", "does not occur")
def case_edit_bad_focus(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), "--focus", "dog")


# ---------------------------------------------------------------------------------------------
# lusd edit: numbers


@case("lusd edit", "--steps nan / -1 / 0 / 10^12", "refused", "")
def case_edit_steps(ctx: Ctx) -> list[Outcome]:
    return ctx.edit_values("--steps", ("nan", "-1", "0", str(10**12)))


@case("lusd edit", "--seed nan / -1 / 2^64", "refused", "seed")
def case_edit_seed(ctx: Ctx) -> list[Outcome]:
    return ctx.edit_values("--seed", ("nan", "-1", str(2**64)))


@case("lusd edit", "--candidates nan / 0 / 17", "refused", "candidates")
def case_edit_candidates(ctx: Ctx) -> list[Outcome]:
    return ctx.edit_values("--candidates", ("nan", "0", "17"))


@case("lusd edit", "--preset that no rule provides", "refused", "unknown preset")
def case_edit_unknown_preset(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), "--preset", "turbo")


@case("lusd edit", "a rule's setting out of range / of the wrong type / of another rule",
      "refused", "cds_weight")  # fmt: skip
def case_edit_rule_settings(ctx: Ctx) -> list[Outcome]:
    photo = ctx.photo()
    values = ("cds_weight=-1", "cds_weight=heavy", "pds_grid=10")
    return [
        ctx.edit(photo, "--preset", "cds", "--set", v, label=f"--preset cds --set {v}")
        for v in values
    ]


@case("lusd edit", "--max-pixels nan / 0 / -5", "refused", "max-pixels")
def case_edit_max_pixels(ctx: Ctx) -> list[Outcome]:
    return ctx.edit_values("--max-pixels", ("nan", "0", "-5"))


def _field_case(name: str, is_int: bool) -> None:
    values = INT_NAN_NEG_HUGE if is_int else NAN_NEG_HUGE

    def run(ctx: Ctx) -> list[Outcome]:
        return ctx.edit_values(f"--set {name}", values)

    run.__name__ = f"case_edit_set_{name}"
    what = f"--set {name}=" + ("nan / -10^9 / 10^30" if is_int else " / ".join(values))
    case("lusd edit", what, "refused", name)(run)


def _register_field_cases() -> None:
    for name, is_int in numeric_fields():
        _field_case(name, is_int)


_register_field_cases()


# ---------------------------------------------------------------------------------------------
# lusd edit: output folder


@case("lusd edit", "output folder not writable", "refused", "not writable")
def case_edit_unwritable(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), output=ctx.unwritable() / "edited.png")


@case("lusd edit", "output disk full (100 bytes free)", "refused", "disk is full")
def case_edit_disk_full(ctx: Ctx) -> Outcome:
    with disk_full():
        return ctx.edit(ctx.photo())


@case("lusd edit", "disk fills up while the result is written", "refused", "no space left")
def case_edit_disk_fills(ctx: Ctx) -> Outcome:
    with disk_full_after_check():
        return ctx.edit(ctx.photo())


@case("lusd edit", "output with an unknown extension (.gif)", "refused", "extension")
def case_edit_bad_extension(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), output=ctx.tmp / "out" / "edited.gif")


@case("lusd edit", "output path is the input image", "refused", "overwrite")
def case_edit_overwrite_input(ctx: Ctx) -> Outcome:
    photo = ctx.photo("out/photo.png")
    return ctx.edit(photo, output=photo)


# ---------------------------------------------------------------------------------------------
# lusd edit: the model


def _drop(component: str) -> Callable[[Path], None]:
    return lambda folder: shutil.rmtree(folder / component)


def _cut_weights(folder: Path) -> None:
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def _zero_weights(folder: Path) -> None:
    weights = folder / "text_encoder" / "model.safetensors"
    weights.write_bytes(b"\0" * weights.stat().st_size)


def _pickled_unet(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file

    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), weights.with_suffix(".bin"))
    weights.unlink()


@case("lusd edit", "model folder without unet/", "refused", "unet")
def case_model_no_unet(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), model=ctx.broken_model("no-unet", _drop("unet")))


@case("lusd edit", "model folder without tokenizer/", "refused", "tokenizer")
def case_model_no_tokenizer(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), model=ctx.broken_model("no-tokenizer", _drop("tokenizer")))


@case("lusd edit", "model folder without scheduler/", "refused", "scheduler")
def case_model_no_scheduler(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), model=ctx.broken_model("no-scheduler", _drop("scheduler")))


@case("lusd edit", "UNet weights cut after 1000 bytes", "refused", "cannot load")
def case_model_cut_weights(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), model=ctx.broken_model("cut", _cut_weights))


@case("lusd edit", "text encoder weights all zero bytes", "refused", "cannot load")
def case_model_zero_weights(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), model=ctx.broken_model("zero", _zero_weights))


@case("lusd edit", "model_index.json not JSON", "refused", "model_index.json")
def case_model_bad_index(ctx: Ctx) -> Outcome:
    broken = ctx.broken_model("index", lambda f: (f / "model_index.json").write_text("{[1,"))
    return ctx.edit(ctx.photo(), model=broken)


@case("lusd edit", "unet/config.json not JSON", "refused", "config.json")
def case_model_bad_config(ctx: Ctx) -> Outcome:
    broken = ctx.broken_model("config", lambda f: (f / "unet" / "config.json").write_text("{"))
    return ctx.edit(ctx.photo(), model=broken)


@case("lusd edit", "lusd_config.json with num_steps -5", "refused", "lusd_config.json")
def case_model_bad_lusd_config(ctx: Ctx) -> Outcome:
    broken = ctx.broken_model(
        "lusd-config", lambda f: (f / "lusd_config.json").write_text('{"num_steps": -5}')
    )
    return ctx.edit(ctx.photo(), model=broken)


@case("lusd edit", "model folder whose UNet is pickled (.bin only)", "refused", "--allow-pickle")
def case_model_pickled_component(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), model=ctx.broken_model("pickled", _pickled_unet))


@case("lusd edit", "pickled single-file checkpoint (.ckpt)", "refused", "--allow-pickle")
def case_model_pickled_checkpoint(ctx: Ctx) -> Outcome:
    import torch

    checkpoint = ctx.tmp / "model.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}}, checkpoint)
    return ctx.edit(ctx.photo(), model=checkpoint)


@case("lusd edit", "a text file named .safetensors", "refused", "not a valid .safetensors")
def case_model_fake_safetensors(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), model=ctx.write("model.safetensors", "not weights\n" * 10))


@case("lusd edit", "model folder that does not exist", "refused", "not found")
def case_model_missing(ctx: Ctx) -> Outcome:
    return ctx.edit(ctx.photo(), model=ctx.tmp / "no-such-model")


# ---------------------------------------------------------------------------------------------
# lusd batch: the manifest as a whole


@case("lusd batch", "manifest without a target_prompt column", "refused", "no target_prompt")
def case_batch_missing_column(ctx: Ctx) -> Outcome:
    return ctx.batch(raw=b"image,source_prompt\nimages/good.png,a cat\n", good=())


@case("lusd batch", "manifest without an image column", "refused", "no image")
def case_batch_missing_image_column(ctx: Ctx) -> Outcome:
    return ctx.batch(raw=b"target_prompt\na hat\n", good=())


@case("lusd batch", "manifest in Latin-1 (not UTF-8)", "refused", "not UTF-8")
def case_batch_latin1(ctx: Ctx) -> Outcome:
    text = "image,target_prompt\nimages/good.png,a café with a hat\n"
    return ctx.batch(raw=text.encode("latin-1"), good=())


@case("lusd batch", "manifest in UTF-16 with BOM", "accepted")
def case_batch_utf16(ctx: Ctx) -> Outcome:
    text = "id,image,target_prompt\ngood,images/good.png,a café with a hat\n"
    return ctx.batch(raw=text.encode("utf-16"))


@case("lusd batch", "a binary file as the manifest", "refused", "not UTF-8")
def case_batch_binary(ctx: Ctx) -> Outcome:
    return ctx.batch(raw=encoded(photo_image(), "PNG")[:8] + b"\0\0\0", good=())


@case("lusd batch", "empty manifest (0 bytes)", "refused", "empty")
def case_batch_empty(ctx: Ctx) -> Outcome:
    return ctx.batch(raw=b"", good=())


@case("lusd batch", "manifest with an unknown column", "refused", "unknown column")
def case_batch_unknown_column(ctx: Ctx) -> Outcome:
    return ctx.batch(raw=b"image,target_prompt,colour\nimages/good.png,a hat,red\n", good=())


@case("lusd batch", "manifest named .txt", "refused", ".csv or .jsonl")
def case_batch_txt(ctx: Ctx) -> Outcome:
    return ctx.batch(manifest="rows.txt", good=())


# ---------------------------------------------------------------------------------------------
# lusd batch: bad rows beside good ones


@case("lusd batch", "duplicate ids", "bad rows", "already used")
def case_batch_duplicate_ids(ctx: Ctx) -> Outcome:
    return ctx.batch([good_row("good")], bad={3: "already used"})


@case("lusd batch", "row with too many fields (ragged CSV)", "bad rows", "fields")
def case_batch_ragged(ctx: Ctx) -> Outcome:
    ctx.photo("images/good.png")
    text = "id,image,target_prompt\ngood,images/good.png,a hat\nbad,images/good.png,a hat,extra\n"
    return ctx.batch(raw=text.encode(), bad={3: "fields"})


@case("lusd batch", "JSONL with one broken line", "bad rows", "invalid JSON")
def case_batch_jsonl_broken(ctx: Ctx) -> Outcome:
    good = json.dumps(good_row("good"))
    raw = f'{good}\n{{"id": "bad", "image": \n'.encode()
    return ctx.batch(raw=raw, manifest="rows.jsonl", bad={2: "invalid JSON"})


@case("lusd batch", "row image path with '..' out of the manifest's folder", "bad rows", "outside")
def case_batch_dotdot(ctx: Ctx) -> Outcome:
    outside = _outside(ctx)
    rows = [good_row("up", image=os.path.relpath(outside, ctx.tmp))]
    return ctx.batch(rows, bad={3: "outside the allowed folders"})


@case("lusd batch", "row image with an absolute path outside the folders", "bad rows", "outside")
def case_batch_absolute(ctx: Ctx) -> Outcome:
    return ctx.batch([good_row("abs", image=str(_outside(ctx)))], bad={3: "outside"})


@case("lusd batch", "row image a symlink to a file outside", "bad rows", "outside")
def case_batch_symlink(ctx: Ctx) -> Outcome:
    (ctx.tmp / "images").mkdir(parents=True, exist_ok=True)
    (ctx.tmp / "images" / "link.png").symlink_to(_outside(ctx))
    return ctx.batch([good_row("link", image="images/link.png")], bad={3: "outside"})


@case("lusd batch", "row image path with spaces", "accepted")
def case_batch_spaces(ctx: Ctx) -> Outcome:
    ctx.photo("images/my photo.png")
    rows = [good_row("spaced", image="images/my photo.png")]
    return ctx.batch(rows, good=("good", "spaced"))


@case("lusd batch", "rows with CMYK, 16-bit and palette images", "accepted")
def case_batch_modes(ctx: Ctx) -> Outcome:
    ctx.save(photo_image().convert("CMYK"), "images/cmyk.jpg")
    ctx.save(photo_image().convert("P"), "images/palette.png")
    deep = (np.asarray(photo_image().convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    ctx.save(Image.fromarray(deep), "images/deep.png")
    names = {"cmyk": "cmyk.jpg", "palette": "palette.png", "deep": "deep.png"}
    rows = [good_row(key, image=f"images/{name}") for key, name in names.items()]
    return ctx.batch(rows, good=("good", *names))


@case("lusd batch", "rows with zero-byte, text and 20000×20000 images", "bad rows", "image")
def case_batch_bad_images(ctx: Ctx) -> Outcome:
    ctx.write("images/empty.png", b"")
    ctx.write("images/notes.png", "not a picture")
    ctx.write("images/huge.png", png_header(20000, 20000))
    rows = [good_row(n, image=f"images/{n}.png") for n in ("empty", "notes", "huge", "absent")]
    bad = {3: "empty file", 4: "not an image", 5: "400,000,000 pixels", 6: "not found"}
    return ctx.batch(rows, bad=bad)


@case("lusd batch", "row with a truncated image (passes the header check)", "bad rows", "truncated")
def case_batch_truncated(ctx: Ctx) -> Outcome:
    ctx.write("images/cut.png", truncated(encoded(photo_image(), "PNG")))
    return ctx.batch([good_row("cut", image="images/cut.png")], bad={3: "truncated"})


@case("lusd batch", "rows with over-long and stop-word target prompts", "bad rows", "prompt")
def case_batch_prompts(ctx: Ctx) -> Outcome:
    rows = [
        good_row("long", target_prompt="a cat wearing a hat " * 20),
        good_row("stop", target_prompt="the of and a"),
        good_row("blank", target_prompt="  "),
        good_row("japanese", source_prompt="猫", target_prompt="帽子をかぶった猫"),
    ]
    bad = {3: "tokens long", 4: "stop-words", 5: "empty"}
    return ctx.batch(rows, bad=bad, good=("good", "japanese"))


@case("lusd batch", "rows with seed nan / -3 / 2^70 and an unsafe id", "bad rows", "seed")
def case_batch_seeds(ctx: Ctx) -> Outcome:
    rows = [good_row(f"s{i}", seed=v) for i, v in enumerate(("nan", "-3", str(2**70)))]
    rows.append(good_row("../../evil"))
    bad = {3: "integer", 4: "between", 5: "between", 6: "letters, digits"}
    return ctx.batch(rows, bad=bad)


@case("lusd batch", "row with an unknown preset", "bad rows", "unknown preset")
def case_batch_preset(ctx: Ctx) -> Outcome:
    return ctx.batch([good_row("p", preset="turbo")], bad={3: "unknown preset"})


@case("lusd batch", "override columns: every EditConfig number nan / -1e9 / 1e30", "bad rows", "")
def case_batch_override_numbers(ctx: Ctx) -> Outcome:
    rows, bad = [], {}
    for name, is_int in numeric_fields():
        for value in INT_NAN_NEG_HUGE if is_int else NAN_NEG_HUGE:
            bad[len(rows) + 3] = name
            rows.append(good_row(f"{name}-{len(rows)}", **{name: value}))
    return ctx.batch(rows, bad=bad)


# ---------------------------------------------------------------------------------------------
# lusd batch: options and folders


@case("lusd batch", "--seed nan / -1 / 2^64", "refused", "seed")
def case_batch_seed_option(ctx: Ctx) -> list[Outcome]:
    return ctx.batch_values("--seed", ("nan", "-1", str(2**64)))


@case("lusd batch", "--steps nan / -1 / 10^12", "refused", "")
def case_batch_steps_option(ctx: Ctx) -> list[Outcome]:
    return ctx.batch_values("--steps", ("nan", "-1", str(10**12)))


@case("lusd batch", "--candidates nan / 0 / 17", "refused", "candidates")
def case_batch_candidates(ctx: Ctx) -> list[Outcome]:
    return ctx.batch_values("--candidates", ("nan", "0", "17"))


@case("lusd batch", "--review-threshold nan / -0.1 / 1.5 (outside the judge's 0-1)",
      "refused", "review-threshold")  # fmt: skip
def case_batch_review_threshold(ctx: Ctx) -> list[Outcome]:
    return ctx.batch_values("--review-threshold", ("nan", "-0.1", "1.5"))


@case("lusd batch", "--group nan / 0 / 65", "refused", "group")
def case_batch_group(ctx: Ctx) -> list[Outcome]:
    return ctx.batch_values("--group", ("nan", "0", "65"))


@case("lusd batch", "--workers nan / 0 / 10^9", "refused", "workers")
def case_batch_workers(ctx: Ctx) -> list[Outcome]:
    return ctx.batch_values("--workers", ("nan", "0", str(10**9)))


@case("lusd batch", "--max-attempts nan / -1 / 10^9", "refused", "max-attempts")
def case_batch_attempts(ctx: Ctx) -> list[Outcome]:
    return ctx.batch_values("--max-attempts", ("nan", "-1", str(10**9)))


@case("lusd batch", "--threads nan / 0 / 10^9", "refused", "threads")
def case_batch_threads(ctx: Ctx) -> list[Outcome]:
    return ctx.batch_values("--threads", ("nan", "0", str(10**9)))


@case("lusd batch", "--hour-price nan / -1 / inf", "refused", "hour-price")
def case_batch_hour_price(ctx: Ctx) -> list[Outcome]:
    return ctx.batch_values("--hour-price", ("nan", "-1", "inf"))


@case("lusd batch", "output folder not writable", "refused", "not writable")
def case_batch_unwritable(ctx: Ctx) -> Outcome:
    return ctx.batch(outdir=ctx.unwritable(), good=())


@case("lusd batch", "output disk full (100 bytes free)", "refused", "disk is full")
def case_batch_disk_full(ctx: Ctx) -> Outcome:
    with disk_full():
        return ctx.batch(good=())


@case("lusd batch", "disk fills up while results are written", "bad rows", "no space left")
def case_batch_disk_fills(ctx: Ctx) -> Outcome:
    with disk_full_after_check():
        return ctx.batch(bad={2: "no space left"}, good=())


@case("lusd batch", "output folder holding someone else's files", "refused", "not empty")
def case_batch_foreign_folder(ctx: Ctx) -> Outcome:
    ctx.write("out/thesis.docx", b"years of work")
    return ctx.batch(good=())


@case("lusd batch", "output folder is a file", "refused", "is a file")
def case_batch_outdir_file(ctx: Ctx) -> Outcome:
    return ctx.batch(outdir=ctx.write("out.txt", "x"), good=())


@case("lusd batch", "model folder without unet/", "refused", "unet")
def case_batch_broken_model(ctx: Ctx) -> Outcome:
    return ctx.batch(model=ctx.broken_model("no-unet", _drop("unet")), good=())


@case("lusd batch", "pickled single-file checkpoint (.ckpt)", "refused", "--allow-pickle")
def case_batch_pickled(ctx: Ctx) -> Outcome:
    return ctx.batch(model=ctx.write("model.ckpt", b"\x80\x02}q\x00."), good=())


# ---------------------------------------------------------------------------------------------
# lusd eval and lusd report


def _outside(ctx: Ctx) -> Path:
    """A good picture outside the case's folder (so outside any manifest's folder)."""
    path = ctx.session.root / "outside.png"
    ctx.session.cached("outside", lambda: photo_image().save(path))
    return path


def _eval_manifest(ctx: Ctx, edited: dict[str, str]) -> Path:
    ctx.photo("images/good.png")
    ctx.photo("edited/good.png")
    rows = [good_row(i, edited=f"edited/{name}") for i, name in edited.items()]
    path = ctx.tmp / "pairs.csv"
    write_rows(path, rows)
    return path


@case("lusd eval", "a folder that is no batch output", "refused", "no batch journal")
def case_eval_not_batch(ctx: Ctx) -> Outcome:
    return ctx.cli(["eval", ctx.tmp], ctx.tmp)


@case("lusd eval", "a batch whose journal is garbage", "refused", "not a usable batch journal")
def case_eval_garbage_journal(ctx: Ctx) -> Outcome:
    ctx.write("out/journal.sqlite", b"garbage" * 100)
    return ctx.cli(["eval", ctx.tmp / "out"], ctx.tmp)


@case("lusd eval", "a manifest without an 'edited' column", "refused", "'edited' column")
def case_eval_no_edited(ctx: Ctx) -> Outcome:
    ctx.photo("images/good.png")
    write_rows(ctx.tmp / "pairs.csv", [good_row("good")])
    return ctx.cli(["eval", ctx.tmp / "pairs.csv"], ctx.tmp)


@case("lusd eval", "a manifest whose edited image is truncated", "bad rows", "truncated")
def case_eval_truncated_edited(ctx: Ctx) -> Outcome:
    path = _eval_manifest(ctx, {"good": "good.png", "cut": "cut.png"})
    ctx.write("edited/cut.png", truncated(encoded(photo_image(), "PNG")))
    outcome = ctx.cli(["eval", path], ctx.tmp, allowed=frozenset({"pairs.metrics.csv"}))
    outcome.bad_rows = {3: "truncated"}
    outcome.good_ids = frozenset({"good"})
    outcome.done_ids = frozenset(_csv_ids(ctx.tmp / "pairs.metrics.csv"))
    return outcome


@case("lusd eval", "--clip naming a folder that does not exist", "refused", "not found")
def case_eval_missing_clip(ctx: Ctx) -> Outcome:
    return ctx.cli(["eval", ctx.finished_batch() / "out", "--clip", ctx.tmp / "no-clip"], ctx.tmp)


@case("lusd eval", "-o in a folder that is not writable", "refused", "not writable")
def case_eval_unwritable(ctx: Ctx) -> Outcome:
    path = _eval_manifest(ctx, {"good": "good.png"})
    return ctx.cli(["eval", path, "-o", ctx.unwritable() / "m.csv"], ctx.tmp)


def _csv_ids(path: Path) -> list[str]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return [row["id"] for row in csv.DictReader(fh)]


@case("lusd report", "a folder that is no batch output", "refused", "no batch journal")
def case_report_not_batch(ctx: Ctx) -> Outcome:
    return ctx.cli(["report", ctx.tmp], ctx.tmp)


@case("lusd report", "a batch whose journal is garbage", "refused", "not a usable batch journal")
def case_report_garbage_journal(ctx: Ctx) -> Outcome:
    ctx.write("out/journal.sqlite", b"garbage" * 100)
    return ctx.cli(["report", ctx.tmp / "out"], ctx.tmp)


@case("lusd report", "--thumb nan / 0 / 10^9", "refused", "thumb")
def case_report_thumb(ctx: Ctx) -> list[Outcome]:
    out = ctx.finished_batch() / "out"
    return [
        ctx.cli(["report", out, "--thumb", v], out, allowed=frozenset(), label=f"--thumb {v}")
        for v in ("nan", "0", str(10**9))
    ]


@case("lusd report", "--hour-price nan / -1 / inf", "refused", "hour-price")
def case_report_hour_price(ctx: Ctx) -> list[Outcome]:
    out = ctx.finished_batch() / "out"
    return [
        ctx.cli(["report", out, "--hour-price", v], out, label=f"--hour-price {v}")
        for v in ("nan", "-1", "inf")
    ]


@case("lusd report", "-o in a folder that is not writable", "refused", "not writable")
def case_report_unwritable(ctx: Ctx) -> Outcome:
    out = ctx.finished_batch() / "out"
    return ctx.cli(["report", out, "-o", ctx.unwritable() / "report.html"], out)


@case("lusd report", "a batch whose input image became a 20000×20000 header", "accepted")
def case_report_input_replaced(ctx: Ctx) -> Outcome:
    assert ctx.batch().code == 0
    (ctx.tmp / "images" / "good.png").write_bytes(png_header(20000, 20000))
    out = ctx.tmp / "out"
    return ctx.cli(["report", out], out, allowed=frozenset({"report.html"}))


# ---------------------------------------------------------------------------------------------
# The web app's edit (what an upload goes through once gradio has stored it)


@case("web app", "zero-byte upload", "refused", "empty file")
def case_web_zero_bytes(ctx: Ctx) -> Outcome:
    return ctx.web(ctx.write("upload.png", b""))


@case("web app", "truncated PNG upload", "refused", "truncated")
def case_web_truncated(ctx: Ctx) -> Outcome:
    return ctx.web(ctx.write("upload.png", truncated(encoded(photo_image(), "PNG"))))


@case("web app", "a text file uploaded as .png", "refused", "not an image")
def case_web_text(ctx: Ctx) -> Outcome:
    return ctx.web(ctx.write("upload.png", "<html>hello</html>"))


@case("web app", "decompression bomb upload", "refused", "pixels")
def case_web_bomb(ctx: Ctx) -> Outcome:
    return ctx.web(ctx.write("upload.png", bomb_png()))


@case("web app", "upload declaring 20000×20000", "refused", "400,000,000 pixels")
def case_web_huge(ctx: Ctx) -> Outcome:
    return ctx.web(ctx.write("upload.png", png_header(20000, 20000)))


@case("web app", "CMYK JPEG upload", "accepted")
def case_web_cmyk(ctx: Ctx) -> Outcome:
    return ctx.web(ctx.save(photo_image().convert("CMYK"), "upload.jpg"))


@case("web app", "EXIF-rotated JPEG upload", "accepted")
def case_web_exif(ctx: Ctx) -> Outcome:
    return ctx.web(ctx.write("upload.jpg", exif_jpeg(6)), size=PHOTO_SIZE[::-1])


@case("web app", "no upload", "refused", "upload a picture")
def case_web_no_upload(ctx: Ctx) -> Outcome:
    return ctx.web(None)


@case("web app", "target prompt of stop-words only", "refused", "stop-words")
def case_web_stop_words(ctx: Ctx) -> Outcome:
    return ctx.web(ctx.photo(), target="the of and a")


@case("web app", "target prompt of 5,000 characters", "refused", "too long")
def case_web_long_prompt(ctx: Ctx) -> Outcome:
    return ctx.web(ctx.photo(), target="hat " * 1250)


@case("web app", "seed nan / -inf / 1e400", "refused", "seed")
def case_web_seed(ctx: Ctx) -> list[Outcome]:
    photo = ctx.photo()
    return [ctx.web(photo, seed=v, label=f"seed {v}") for v in (math.nan, -math.inf, "1e400")]


@case("web app", "strength nan / -1 / 10^9", "refused", "strength")
def case_web_strength(ctx: Ctx) -> list[Outcome]:
    photo = ctx.photo()
    return [ctx.web(photo, strength=v, label=f"strength {v}") for v in (math.nan, -1, 10**9)]
