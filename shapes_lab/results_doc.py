"""Write the benchmark table into a markdown file between markers (the rest is kept)."""

from __future__ import annotations

import os
from pathlib import Path

from shapes_lab.edit_bench import markdown_table, mask_table

START = "<!-- shapes-bench:start -->"
END = "<!-- shapes-bench:end -->"


def render_block(payload: dict, chart: Path | None = None) -> str:
    lusd_cfg = payload.get("configs", {}).get("lusd", {})
    keys = ("num_steps", "scale_high", "scale_low", "lambda_reg", "t_min", "t_max")
    cfg = ", ".join(f"{k}={lusd_cfg[k]}" for k in keys if k in lusd_cfg)
    planned = payload.get("n_cases_planned", payload["n_cases"])
    lines = [
        START,
        f"{payload['n_cases']} seeded cases (seed {payload['seed']}) that every preset finished"
        f" (of {planned} planned), raw model output (no paste-back); each cell: success /"
        " background change.",
        "",
        markdown_table(payload["summary"]),
        "",
        f"LUSD configuration of the shapes model: {cfg}.",
    ]
    if masks := mask_table(payload["summary"]):
        lines += [
            "",
            'Where the LUSD mask sits (section "Mask localisation"): for colour and'
            " shape changes its mean inside the changed object's grid cell over its mean"
            " elsewhere; for adds its share of mass on the object that appeared.",
            "",
            masks,
        ]
    if "summary_all" in payload and payload["summary_all"] != payload["summary"]:
        lines += [
            "",
            "Every finished edit (presets ran in parallel and stopped at the deadline,"
            " so their case counts differ):",
            "",
            markdown_table(payload["summary_all"]),
        ]
    if chart is not None:
        lines += ["", f"![success vs background change]({chart.as_posix()})"]
    lines.append(END)
    return "\n".join(lines)


def write_results_doc(path: Path, payload: dict, chart: Path | None = None) -> Path:
    """Replace the marked block of ``path`` (or append it) with the table of ``payload``."""
    block = render_block(payload, chart)
    text = path.read_text() if path.exists() else "# Results\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
