"""Helpers for the web-app tests: a fake pipeline with the LUSD call contract and a served app.

(No tests here; the test_app_* modules import from it.)
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from PIL import Image, ImageChops, ImageDraw

from lusd.config import EditConfig

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass
class FakePipeline:
    """Inverts the centre of the picture; calls ``callback`` once per step, ``delay`` s apart.

    A target prompt containing "explode" raises a RuntimeError (an unexpected failure).
    """

    delay: float = 0.0
    default_config: EditConfig = field(default_factory=lambda: EditConfig(num_steps=4))
    calls: int = 0

    @property
    def tokenizer(self):
        return _tokenizer()

    def __call__(
        self,
        image,
        source_prompt,
        target_prompt,
        *,
        focus=None,
        config=None,
        generator=None,
        callback=None,
        **overrides: Any,
    ):
        from lusd.focus import focus_words
        from lusd.images import load_image

        self.calls += 1
        if "explode" in target_prompt:
            raise RuntimeError("boom: internal details that must not reach the page")
        total = (config or self.default_config).num_steps
        for step in range(1, total + 1):
            time.sleep(self.delay)
            if callback is not None:
                callback(step, total)
        image = load_image(image)
        width, height = image.size
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).rectangle(
            (width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=255
        )
        result = Image.composite(ImageChops.invert(image), image, mask)
        words = focus or focus_words(source_prompt, target_prompt)
        return SimpleNamespace(
            images=[result], masks=[mask], focus_words=words, stats={"iterations": total}
        )


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from lusd.tokenizer import clip_tokenizer

    return clip_tokenizer()


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_serve(args: list[str], tmp_path: Path) -> subprocess.Popen:
    """``lusd serve ARGS`` in a child process (one thread, temp files under ``tmp_path``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    return subprocess.Popen(
        [sys.executable, "-c", "from lusd.cli import main; main()", "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # a background shell starts its jobs with SIGINT ignored, and children inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_page(port: int, process: subprocess.Popen, seconds: float = 180):
    """The served page once it answers (None if the server ended or time ran out)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        except httpx.HTTPError:
            time.sleep(0.5)
    return None


def stop_serve(process: subprocess.Popen) -> str:
    """Stop it as Ctrl+C does; its whole output."""
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[0]


@contextlib.contextmanager
def served(pipe: Any, settings=None):
    """Serve the app for ``pipe`` on loopback; yields (url, demo, workdir)."""
    from lusd.web.app import build_app, launch, make_temp_dir
    from lusd.web.editing import AppSettings

    settings = settings or AppSettings()
    workdir = make_temp_dir()
    demo = build_app(pipe, settings, workdir)
    url = launch(demo, settings, host="127.0.0.1", port=free_port(), block=False)
    try:
        yield url.rstrip("/"), demo, workdir
    finally:
        demo.close()
        shutil.rmtree(workdir, ignore_errors=True)


def shapes_picture(path: Path, size: int = 64) -> Path:
    """A small white picture with a red circle on the left (shapes-world style)."""
    image = Image.new("RGB", (size, size), (240, 240, 240))
    r = size // 7
    cx, cy = size // 6, size // 2
    ImageDraw.Draw(image).ellipse((cx - r, cy - r, cx + r, cy + r), fill=(220, 40, 40))
    image.save(path)
    return path
