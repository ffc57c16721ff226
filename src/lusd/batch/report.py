"""``lusd report``: one self-contained HTML page about a batch run.

KPIs, a before/after/mask grid whose metric columns sort on click (a few lines
of inline JS), matplotlib histograms embedded as PNG, and every failure with its
reason. Images are embedded as base64 thumbnails, or linked relatively. A batch run
with a review threshold also gets the share accepted without review under the title,
a "needs review" badge on flagged rows and a filter that shows only them.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import statistics
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from lusd.batch.journal import JOURNAL_NAME, Journal
from lusd.batch.provenance import OutputDisclosure, cost_per_image, license_line, output_disclosure
from lusd.batch.report_assets import CSS, JS, histograms_png
from lusd.batch.review import review_counts
from lusd.edit_path import read_settings
from lusd.errors import ImageInputError
from lusd.eval.evaluate import summarize
from lusd.files import atomic_write
from lusd.images import check_image_file
from lusd.inputs import check_int, check_number, check_output_folder

#: Metric columns shown in the grid, in order, with their headers.
#: Outline colour of an edit's region on the input's thumbnail.
REGION_COLOUR = (255, 0, 200)
COLUMNS = {
    "oracle_success": "oracle ok",
    "bg_change": "bg change",
    "oracle_bg_change": "oracle bg",
    "mask_ratio": "mask ratio",
    "mask_add_share": "mask on new",
    "l1": "L1",
    "l2": "L2",
    "l1_outside": "L1 out",
    "clip_i": "CLIP-I",
    "clip_t": "CLIP-T",
    "clip_r": "CLIP-R",
}


def write_report(
    outdir: str | Path,
    output: str | Path | None = None,
    *,
    embed: bool = True,
    thumb: int = 160,
    hour_price: float | None = None,
) -> Path:
    """Render OUTDIR's journal into ``output`` (default OUTDIR/report.html); returns the path.

    ``hour_price`` (default: the one the batch ran with) prices the median edit.
    """
    check_int(thumb, "--thumb", 16, 1024)
    if hour_price is not None:
        check_number(hour_price, "--hour-price")
    outdir = Path(outdir)
    path = Path(output) if output else outdir / "report.html"
    check_output_folder(path.parent, "report folder")
    with Journal(outdir / JOURNAL_NAME, create=False) as journal:
        jobs = [dict(r) for r in journal.jobs()]
        metrics = journal.metrics()
        bad_rows = json.loads(journal.get_meta("bad_rows") or "[]")
        manifest = journal.get_meta("manifest") or "?"
        model = journal.get_meta("model") or "?"
        license_meta = journal.get_meta("license")
        threshold = journal.review_threshold()
        if hour_price is None:
            hour_price = json.loads(journal.get_meta("hour_price") or "null")
    done = [j for j in jobs if j["state"] == "done"]
    per_edit = {j["id"]: metrics.get(j["id"], {}) for j in done}
    summary = summarize(per_edit)
    images = _ImageRefs(outdir, path.parent, embed, thumb)
    disclosures = {j["id"]: output_disclosure(outdir / j["output"], True) for j in done}
    body = [
        f"<h1>LUSD batch report</h1><p class='sub'>manifest {_e(manifest)} · model {_e(model)}</p>"
        f"<p class='sub' id='license'>{_e(license_line(license_meta))}</p>",
        _review_line(jobs, bad_rows, threshold),
        _kpis(jobs, bad_rows, summary, disclosures, hour_price),
        _histograms(per_edit, done),
        _grid(done, per_edit, images, disclosures, threshold),
        _failures(jobs, bad_rows),
    ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>LUSD batch report</title><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + f"<script>{JS}</script></body></html>"
    )
    atomic_write(path, page.encode())
    return path


def _e(text: Any) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _review_line(jobs: list[dict], bad_rows: list[dict], threshold: float | None) -> str:
    """The share of edits accepted without review, as a manager reads it (with a threshold)."""
    counts = review_counts(jobs, len(bad_rows), threshold)
    if counts is None:
        return ""
    return f"<p id='review-kpi' class='review-kpi'>{_e(counts.line)}</p>"


def _kpis(
    jobs: list[dict],
    bad_rows: list[dict],
    summary: dict[str, Any],
    disclosures: dict[str, OutputDisclosure],
    hour_price: float | None,
) -> str:
    done = [j for j in jobs if j["state"] == "done"]
    failed = [j for j in jobs if j["state"] == "failed"]
    pending = [j for j in jobs if j["state"] in ("pending", "running")]
    secs = [j["seconds"] for j in done if j["seconds"] is not None]
    calls = [j["unet_calls"] for j in done if j["unet_calls"] is not None]
    rate = summary.get("oracle_success_rate")
    bg = summary.get("median_oracle_bg_change") or summary.get("median_bg_change")
    cards = [
        ("done", str(len(done))),
        ("failed", str(len(failed) + len(bad_rows))),
        ("not run yet", str(len(pending))),
        ("success rate (oracle)", _pct(rate)),
        ("CLIP-AUC", _fmt(summary.get("clip_auc"))),
        ("L1* (successful edits)", _fmt(summary.get("l1_star"))),
        ("CLIP-I* (successful edits)", _fmt(summary.get("clip_i_star"))),
        ("median background change (0-255)", _fmt(bg, 2)),
        ("mask localised (colour/shape, ratio ≥ 2)", _pct(summary.get("mask_localised"))),
        ("mask share on added objects", _pct(summary.get("mask_add_share"))),
        ("median time per edit", "–" if not secs else f"{statistics.median(secs):.2f} s"),
        ("mean UNet calls", "–" if not calls else f"{statistics.mean(calls):.0f}"),
        ("estimated cost per image", _cost(cost_per_image(secs, hour_price), hour_price)),
        ("outputs disclosing the AI edit (XMP)", _share(disclosures, lambda d: d.xmp)),
    ]
    if any(d.c2pa not in ("absent", "unchecked", "missing") for d in disclosures.values()):
        cards.append(("C2PA credentials valid", _share(disclosures, lambda d: d.c2pa in _VALID)))
    items = "".join(f"<div class='kpi'><b>{_e(v)}</b><span>{_e(k)}</span></div>" for k, v in cards)
    return f"<section id='kpis' class='kpis'>{items}</section>"


_VALID = ("Valid", "Trusted")


def _cost(value: float | None, hour_price: float | None) -> str:
    if value is None:
        return "– (pass --hour-price)" if hour_price is None else "–"
    return f"{value:.5f} (at {hour_price:g}/h)"


def _share(disclosures: dict[str, OutputDisclosure], test: Any) -> str:
    if not disclosures:
        return "–"
    return f"{sum(1 for d in disclosures.values() if test(d))} of {len(disclosures)}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _histograms(per_edit: dict[str, dict[str, float]], done: list[dict]) -> str:
    series: dict[str, list[float]] = {}
    for key, label in (
        ("bg_change", "background change (0-255)"),
        ("clip_r", "CLIP-R"),
        ("l1", "L1 (whole image)"),
        ("oracle_bg_change", "oracle background"),
    ):
        vals = [m[key] for m in per_edit.values() if m.get(key) is not None]
        if vals:
            series[label] = vals
    secs = [j["seconds"] for j in done if j["seconds"] is not None]
    if secs:
        series["seconds per edit"] = secs
    if not series:
        return ""
    data = base64.b64encode(histograms_png(series)).decode()
    return (
        f"<section><h2>Distributions</h2><img class='hist' alt='histograms' "
        f"src='data:image/png;base64,{data}'></section>"
    )


class _ImageRefs:
    """``src`` values for the grid: base64 thumbnails or paths relative to the report."""

    def __init__(self, outdir: Path, report_dir: Path, embed: bool, thumb: int) -> None:
        self.outdir, self.report_dir, self.embed, self.thumb = outdir, report_dir, embed, thumb

    def src(self, path: Path, box: list[int] | None = None) -> str | None:
        if not path.is_file():
            return None
        if not self.embed:
            return os.path.relpath(path.resolve(), self.report_dir.resolve())
        try:
            check_image_file(path)  # the header first: an input replaced by a bomb is refused
            with Image.open(path) as im:
                im.load()
                small = im.convert("L" if im.mode == "L" else "RGB")
        except (OSError, ImageInputError):
            return None
        full_size = small.size
        small.thumbnail((self.thumb, self.thumb), Image.Resampling.LANCZOS)
        if box is not None:
            scale = small.width / full_size[0]
            outline = [round(v * scale) for v in box]
            outline[2:] = [max(outline[0], outline[2] - 1), max(outline[1], outline[3] - 1)]
            ImageDraw.Draw(small).rectangle(outline, outline=REGION_COLOUR, width=2)
        buf = io.BytesIO()
        photo = max(small.size) > 128 and small.mode == "RGB"
        fmt, mime = ("JPEG", "jpeg") if photo else ("PNG", "png")
        small.save(buf, format=fmt, quality=85)
        return f"data:image/{mime};base64,{base64.b64encode(buf.getvalue()).decode()}"

    def tag(self, path: Path, alt: str, box: list[int] | None = None) -> str:
        """An ``<img>`` of ``path``; ``box`` (x0, y0, x1, y1 in its pixels) is outlined."""
        src = self.src(path, box)
        if src is None:
            return "<span class='missing'>missing</span>"
        return f"<img src='{_e(src)}' alt='{_e(alt)}' width='{self.thumb}' loading='lazy'>"


def _grid(
    done: list[dict],
    per_edit: dict[str, dict[str, float]],
    images: _ImageRefs,
    disclosures: dict[str, OutputDisclosure],
    threshold: float | None = None,
) -> str:
    if not done:
        return "<section><h2>Edits</h2><p>No finished edits yet.</p></section>"
    cols = [k for k in COLUMNS if any(k in m for m in per_edit.values())]
    scored = any(j["judge_score"] is not None for j in done)
    head = (
        ("<th class='num' data-sort='num'>judge score</th>" if scored else "")
        + "".join(f"<th class='num' data-sort='num'>{_e(COLUMNS[k])}</th>" for k in cols)
        + "<th class='num' data-sort='num'>seconds</th><th class='num' data-sort='num'>UNet</th>"
    )
    rows = []
    for j in done:
        m = per_edit.get(j["id"], {})
        region = _region_of(images.outdir / j["output"])
        cells = _num_cell(j["judge_score"]) if scored else ""
        cells += "".join(_num_cell(m.get(k)) for k in cols)
        cells += _num_cell(j["seconds"], 2) + _num_cell(j["unet_calls"], 0)
        flagged = threshold is not None and bool(j["needs_review"])
        row_class = " class='needs-review'" if flagged else ""
        badge = "<br><span class='badge'>needs review</span>" if flagged else ""
        rows.append(
            f"<tr{row_class}>"
            f"<td data-v='{_e(j['id'])}'><code>{_e(j['id'])}</code><br>"
            f"<small>line {j['line']}</small>{badge}</td>"
            f"<td>{images.tag(Path(j['image']), 'before', region.get('region_box'))}</td>"
            f"<td>{images.tag(images.outdir / j['output'], 'after')}</td>"
            f"<td>{images.tag(images.outdir / j['mask'], 'mask')}</td>"
            f"<td data-v='{_e(j['target_prompt'])}'>{_e(j['target_prompt'])}"
            f"<br><small>from: {_e(j['source_prompt'] or '(none)')}"
            f" · focus: {_e(j['focus_words'] or '–')} · {_e(j['preset'])}, seed {j['seed']}"
            f"{_region_note(region)}{_candidates_note(j)}"
            f" · <span class='disclosure'>{_e(disclosures[j['id']].label)}</span>"
            f"</small></td>{cells}</tr>"
        )
    return (
        "<section><h2>Edits</h2><p class='sub'>Click a column header to sort.</p>"
        f"{_review_filter(done, threshold)}"
        "<table id='grid' class='sortable'><thead><tr><th data-sort='text'>id</th>"
        "<th>before</th><th>after</th><th>mask</th><th data-sort='text'>target prompt</th>"
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _review_filter(done: list[dict], threshold: float | None) -> str:
    """The checkbox that shows only the flagged rows (the script in report_assets)."""
    if threshold is None:
        return ""
    flagged = sum(1 for j in done if j["needs_review"])
    return (
        "<p class='filter'><label><input type='checkbox' id='only-review'> show only the "
        f"{flagged} edit(s) that need review (judge score &lt; {threshold:g})</label></p>"
    )


def _candidates_note(job: dict) -> str:
    count = job["candidates"] or 1
    return f" · best of {count} candidates" if count > 1 else ""


def _region_of(output: Path) -> dict[str, Any]:
    """The region settings (``region``, ``region_box``, ``crop_box``) of an output file."""
    try:
        with Image.open(output) as image:
            settings = read_settings(dict(getattr(image, "text", {}))) or {}
    except OSError:
        return {}
    return {k: settings.get(k) for k in ("region", "region_box", "crop_box")}


def _region_note(region: dict[str, Any]) -> str:
    if not region.get("region"):
        return ""
    crop = region.get("crop_box")
    where = f"crop {', '.join(map(str, crop))}" if crop else "whole picture"
    return (
        f" · <span class='region'>region {_e(region['region'])} "
        f"(outlined on the input; edited on {_e(where)})</span>"
    )


def _num_cell(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "<td class='num' data-v=''>–</td>"
    return f"<td class='num' data-v='{value!r}'>{_fmt(float(value), digits)}</td>"


def _failures(jobs: list[dict], bad_rows: list[dict]) -> str:
    failed = [j for j in jobs if j["state"] == "failed"]
    if not failed and not bad_rows:
        return "<section id='failures'><h2>Failures</h2><p>None.</p></section>"
    rows = [
        f"<tr><td>{j['line']}</td><td><code>{_e(j['id'])}</code></td>"
        f"<td>{_e(Path(j['image']).name)}</td><td>{_e(j['target_prompt'])}</td>"
        f"<td>{_e(j['error'])}</td><td>{j['failures']}</td></tr>"
        for j in failed
    ]
    rows += [
        f"<tr><td>{b['line']}</td><td>–</td><td>–</td><td>–</td>"
        f"<td>bad manifest row: {_e(b['message'])}</td><td>0</td></tr>"
        for b in bad_rows
    ]
    return (
        "<section id='failures'><h2>Failures</h2><table><thead><tr><th>line</th><th>id</th>"
        "<th>image</th><th>target prompt</th><th>reason</th><th>tries</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )
