"""End to end in headless Debian Chromium (Playwright): upload, edit, mask, gallery, errors.

Needs /usr/bin/chromium (`apt-get install -y chromium`); without it the test fails
with that instruction rather than skipping. No browser is ever downloaded.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from lusd.web.editing import AppSettings
from tests.support.web import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    FakePipeline,
    served,
    shapes_picture,
)

pytestmark = pytest.mark.browser
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium`"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the playwright package is missing: pip install playwright (no browser download)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def edit_pipe(request):
    """The shipped shapes-world model when it is there (as the issue asks), else the tiny one."""
    from lusd.shapes import SHAPES_MODEL_DIR

    if (SHAPES_MODEL_DIR / "model_index.json").is_file():
        from lusd.loading import load_pipeline

        return load_pipeline(None, "cpu")
    return request.getfixturevalue("tiny_pipe")


@pytest.fixture(scope="module")
def app_url(edit_pipe):
    settings = AppSettings(base_overrides={"num_steps": 12})
    with served(edit_pipe, settings) as (url, _, _):
        yield url


def _loaded_images(page, selector: str) -> list[str]:
    """src of every fully loaded, non-empty <img> under ``selector``."""
    return page.eval_on_selector_all(
        f"{selector} img",
        "els => els.filter(e => e.complete && e.naturalWidth > 0).map(e => e.src)",
    )


def _wait_status(page, pattern: str) -> str:
    status = page.locator("#lusd-status")
    status.filter(has_text=pattern).wait_for(timeout=TIMEOUT_MS)
    return status.inner_text()


def test_upload_edit_mask_gallery_and_errors_in_the_browser(browser, app_url, tmp_path):
    picture = shapes_picture(tmp_path / "circle.png", size=32)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    outside: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith((app_url, "data:", "blob:")) else outside.append(r.url),
    )
    page.goto(app_url)

    page.locator("#lusd-input input[type=file]").set_input_files(str(picture))
    page.wait_for_function(
        "() => [...document.querySelectorAll('#lusd-input img')].some(i => i.naturalWidth > 0)"
    )
    page.locator("#lusd-source textarea").fill("a red circle")
    page.locator("#lusd-target textarea").fill("a red circle and a blue square")
    focus = page.locator("#lusd-focus textarea")
    page.wait_for_function(
        "() => document.querySelector('#lusd-focus textarea').value === 'square'"
    )

    page.locator("#lusd-edit").click()
    status = _wait_status(page, "Done in")
    assert "Focus words: square" in status
    before_after = _loaded_images(page, "#lusd-compare")
    assert len(before_after) == 2 and any("lusd-edit-" in src for src in before_after)
    with page.expect_download() as download_info:
        page.locator("#lusd-download").click()
    saved = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(saved)
    with Image.open(saved) as result:
        settings = json.loads(result.text["lusd"])
    assert saved.name == "lusd-edit-0.png" and settings["focus"] == ["square"]
    assert settings["config"]["num_steps"] == 12 and settings["preset"] == "lusd"

    page.locator("#lusd-mask input[type=checkbox]").check()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#lusd-compare img')]"
        ".some(i => i.src.includes('overlay') && i.naturalWidth > 0)"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-edit-mask.png"), full_page=True)
    page.locator("#lusd-mask input[type=checkbox]").uncheck()

    focus.fill("square")
    page.locator("#lusd-again").click()
    page.wait_for_function("() => document.querySelectorAll('#lusd-gallery img').length >= 2")
    _wait_status(page, "Done in")
    page.locator("#lusd-gallery img").nth(1).click()  # the older result
    back = _wait_status(page, "Back to")
    assert "seed 0" in back.lower()

    page.locator("#lusd-target textarea").fill("")
    page.locator("#lusd-edit").click()
    toast = page.get_by_text("Describe what the picture should become")
    toast.first.wait_for(timeout=TIMEOUT_MS)
    body = page.locator("body").inner_text()
    assert "Traceback" not in body and 'File "' not in body
    page.screenshot(path=str(ARTIFACTS / "app-error.png"), full_page=True)

    page.locator("#lusd-target textarea").fill("a red circle and a blue square")
    page.locator("#lusd-edit").click()
    page.wait_for_function("() => document.querySelectorAll('#lusd-gallery img').length >= 3")
    _wait_status(page, "Done in")
    page.locator("#lusd-further").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#lusd-input img')]"
        ".some(i => i.src.includes('lusd-edit-') && i.naturalWidth > 0)"
    )
    assert page.locator("#lusd-source textarea").input_value() == "a red circle and a blue square"
    assert not problems, problems
    assert not outside, f"the page fetched from outside the app: {outside}"
    page.close()


def test_a_bundled_example_fills_the_form(browser, tiny_pipe, tmp_path):
    examples = tmp_path / "examples"
    examples.mkdir()
    shapes_picture(examples / "red-circle.png")
    (examples / "red-circle.txt").write_text("a red circle\na red circle and a blue square\n")
    settings = AppSettings(base_overrides={"num_steps": 2}, examples_dir=examples)
    with served(tiny_pipe, settings) as (url, _, workdir):
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.get_by_text("a red circle and a blue square", exact=True).first.click()
        page.wait_for_function(
            "() => document.querySelector('#lusd-target textarea').value"
            " === 'a red circle and a blue square'"
        )
        assert page.locator("#lusd-source textarea").input_value() == "a red circle"
        page.wait_for_function(
            "() => [...document.querySelectorAll('#lusd-input img')].some(i => i.naturalWidth > 0)"
        )
        sources = _loaded_images(page, "#lusd-input")
        assert sources and all(f"file={workdir}" in src for src in sources), sources
        page.locator("#lusd-edit").click()
        assert "square" in _wait_status(page, "Done in")
        page.close()


def test_a_full_queue_says_busy_in_the_page(browser, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    picture = shapes_picture(tmp_path / "circle.png", size=32)
    settings = AppSettings(max_queue=1)
    pipe = FakePipeline(delay=2.0)  # 4 steps: each edit holds the only slot for 8 s
    busy = (Status.PROCESSING, Status.PROGRESS, Status.ITERATING)
    with served(pipe, settings) as (url, _, _):
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.locator("#lusd-input input[type=file]").set_input_files(str(picture))
        page.locator("#lusd-target textarea").fill("a blue square")
        client = Client(url, verbose=False)
        args = (handle_file(str(picture)), "", "a blue square", "", 3, 0, False)
        running = client.submit(*args, api_name="/edit")
        deadline = time.monotonic() + 60
        while running.status().code not in busy and time.monotonic() < deadline:
            time.sleep(0.05)
        waiting = client.submit(*args, api_name="/edit")  # takes the one place in the queue
        time.sleep(1.0)
        assert running.status().code in busy and not waiting.done()
        jobs = [running, waiting]
        page.locator("#lusd-edit").click()
        page.get_by_text("busy", exact=False).first.wait_for(timeout=30_000)
        assert "Please try again" in page.locator("body").inner_text()
        for job in jobs:
            job.result(timeout=60)
        page.close()


def test_a_too_large_upload_is_refused_in_plain_words(browser, tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    picture = tmp_path / "holiday.png"
    Image.fromarray(noise).save(picture)  # about 120 kB of incompressible pixels
    with served(FakePipeline(), AppSettings(max_file_size="20kb")) as (url, _, workdir):
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.locator("#lusd-input input[type=file]").set_input_files(str(picture))
        page.get_by_text("exceed the maximum allowed size").first.wait_for()
        assert "Traceback" not in page.locator("body").inner_text()
        assert not list(workdir.rglob("holiday*")), "nothing of the refused upload is stored"
        page.close()


def test_a_painted_region_is_the_only_part_that_changes(browser, edit_pipe, tmp_path):
    picture = shapes_picture(tmp_path / "circle.png", size=64)
    settings = AppSettings(base_overrides={"num_steps": 12})
    with served(edit_pipe, settings) as (url, _, _):  # its own server: its own upload folder
        saved, settings = _paint_and_edit(browser, url, picture, tmp_path)
    before = np.asarray(Image.open(picture).convert("RGB"))
    with Image.open(saved) as result:
        edited = np.asarray(result.convert("RGB"))
    x0, y0, x1, y1 = settings["region_box"]
    assert settings["region"].startswith("mask:painted") and x0 >= 32 and y1 <= 32
    changed = np.any(edited != before, axis=2)
    outside = np.ones_like(changed)
    outside[y0:y1, x0:x1] = False
    assert changed.any() and not (changed & outside).any()


def _paint_and_edit(browser, url, picture, tmp_path):
    """Upload, paint a stroke in the picture's top right quarter, edit; (result, settings)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.locator("#lusd-input input[type=file]").set_input_files(str(picture))
    page.locator("#lusd-where").click()
    canvas = page.locator("#lusd-region canvas").first
    canvas.wait_for()
    page.wait_for_timeout(500)  # the picture is drawn as the editor's background
    frame = canvas.bounding_box()
    side = min(frame["width"], frame["height"])  # the square picture, centred
    left = frame["x"] + (frame["width"] - side) / 2
    top = frame["y"] + (frame["height"] - side) / 2
    page.mouse.move(left + side * 0.6, top + side * 0.15)
    page.mouse.down()
    for i in range(12):
        page.mouse.move(left + side * (0.6 + 0.02 * i), top + side * (0.15 + 0.02 * i), steps=3)
    page.mouse.up()
    page.locator("#lusd-source textarea").fill("a red circle")
    page.locator("#lusd-target textarea").fill("a red circle and a blue square")
    page.locator("#lusd-edit").click()
    _wait_status(page, "Done")
    with page.expect_download() as download_info:
        page.locator("#lusd-download").click()
    saved = tmp_path / "result.png"
    download_info.value.save_as(saved)
    page.screenshot(path=str(ARTIFACTS / "app-region.png"), full_page=True)
    page.close()
    with Image.open(saved) as result:
        return saved, json.loads(result.text["lusd"])
