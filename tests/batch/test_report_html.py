"""`lusd report`: one self-contained HTML file, rendered in headless Debian Chromium."""

from __future__ import annotations

import io
import json
import re
import shutil

import pytest
from PIL import Image

from lusd.batch import BatchOptions, run_batch
from lusd.batch.report import write_report
from tests.support.batch_fakes import FakeFactory, write_manifest
from tests.support.web import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    manifest = write_manifest(tmp, 5)
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    rows[3]["target_prompt"] = "FAIL <script>alert(1)</script>"
    rows.append({"image": "images/none.png", "target_prompt": "a green triangle"})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp / "out"
    run_batch(BatchOptions(manifest, out, model="fake", oracle=False), FakeFactory())
    return out


def test_report_is_self_contained_with_kpis_grid_and_failures(batch_dir):
    path = write_report(batch_dir)
    page = path.read_text()
    assert path == batch_dir / "report.html"
    assert not re.search(r"""(src|href)=['"](https?:|//|/)""", page), "external resource"
    assert page.count("data:image/png;base64,") >= 4 * 3 + 1  # 4 done x 3 thumbs + histograms
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "PromptError: fake failure" in page
    assert "bad manifest row: image &#x27;images/none.png&#x27; not found" in page
    kpis = re.search(r"<section id='kpis'.*?</section>", page).group(0)
    assert "<b>4</b><span>done</span>" in kpis and "<b>2</b><span>failed</span>" in kpis


def test_report_can_link_images_instead(batch_dir, tmp_path):
    path = write_report(batch_dir, tmp_path / "r.html", embed=False)
    page = path.read_text()
    links = re.findall(r"<img src='([^']+)' alt='after'", page)
    assert len(links) == 4 and all(not x.startswith("data:") for x in links)
    assert all((path.parent / x).is_file() for x in links)


@pytest.mark.browser
def test_report_renders_in_headless_chromium(batch_dir, tmp_path):
    from playwright import sync_api

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    path = write_report(batch_dir)
    args = ["--headless", *CHROMIUM_ARGS]
    errors: list[str] = []
    profile = tmp_path / "profile"
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=args
        )
        try:
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            shot = page.screenshot(full_page=True)
            ids = page.eval_on_selector_all(
                "#grid tbody td:first-child", "e => e.map(x => x.dataset.v)"
            )
            header = page.locator("#grid th").filter(has_text=re.compile(r"^L1$"))
            col = header.evaluate("th => th.cellIndex")
            header.click()
            header.click()  # second click: descending
            l1 = page.eval_on_selector_all(
                "#grid tbody tr", f"rows => rows.map(r => r.cells[{col}].dataset.v)"
            )
        finally:
            ctx.close()
    assert errors == []
    im = Image.open(io.BytesIO(shot))
    assert im.size[0] > 400 and im.size[1] > 300
    assert len(set(im.convert("L").getdata())) > 10, "screenshot is blank"
    assert len(ids) == 4
    values = [float(v) for v in l1]
    assert values == sorted(values, reverse=True)
    shutil.rmtree(profile, ignore_errors=True)
