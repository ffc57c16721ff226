"""The bad-input sweep as a table: every malformed input of lusd.testing.bad_inputs, run
once through the real CLI (or the web app's editor) with the tiny SD test model.

Records for each case what happened (the one-line error, or the accepted edit) and every
broken promise (a traceback, a partial file, a good batch row not done, ...), writes
bench/results/bad_inputs.json and the table between the markers of docs/reliability.md.

    python bench/bad_inputs.py
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
from pathlib import Path

from machine import machine_line

from lusd.testing.bad_inputs import CASES, Ctx, Session, problems, verdict
from lusd.testing.tiny import save_tiny_model

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "bench" / "results" / "bad_inputs.json"
DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- bad-inputs:start -->", "<!-- bad-inputs:end -->"


def run_sweep() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="lusd-bad-inputs-") as tmp:
        root = Path(tmp)
        session = Session(root, save_tiny_model(root / "tiny-sd"))
        for case in CASES:
            start = time.perf_counter()
            outcomes = case.run(Ctx(session, root / "cases" / case.id))
            found = problems(case, outcomes)
            rows.append(
                {
                    "id": case.id,
                    "command": case.command,
                    "input": case.what,
                    "expected": case.expect,
                    "attempts": len(outcomes),
                    # paths relative to the case's folder: the table reads the same on every run
                    "outcome": verdict(case, outcomes)
                    .replace(f"{root / 'cases' / case.id}/", "")
                    .replace(str(root), "<tmp>"),
                    "tracebacks": sum("Traceback" in o.out + o.err for o in outcomes),
                    "problems": found,
                    "seconds": round(time.perf_counter() - start, 2),
                }
            )
            print(f"{'ok ' if not found else 'BAD'} {case.id}: {rows[-1]['outcome'][:100]}")
    return rows


def _cell(text: str, limit: int = 160) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_table(payload: dict) -> str:
    rows = payload["cases"]
    handled = sum(not r["problems"] for r in rows)
    lines = [
        START,
        f"{len(rows)} malformed inputs, {sum(r['attempts'] for r in rows)} attempts"
        f" (`python bench/bad_inputs.py`, {payload['date']}, {payload['machine']}):"
        f" **{handled} of {len(rows)} handled as promised**,"
        f" {payload['tracebacks']} tracebacks, {payload['partial_files']} cases with partial"
        " or stray files.",
        "",
        "| # | way in | input | what happened |",
        "|---|---|---|---|",
    ]
    for n, r in enumerate(rows, 1):
        outcome = r["outcome"] if not r["problems"] else "**FAILED**: " + "; ".join(r["problems"])
        lines.append(f"| {n} | `{r['command']}` | {_cell(r['input'], 90)} | {_cell(outcome)} |")
    lines.append(END)
    return "\n".join(lines)


def write_doc(path: Path, block: str) -> None:
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{path}: no {START} ... {END} markers to replace")
    head, rest = text.split(START, 1)
    path.write_text(head + block + rest.split(END, 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-doc", action="store_true", help="write only the JSON")
    args = parser.parse_args()
    rows = run_sweep()
    payload = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{machine_line()}, tiny SD test model",
        "cases": rows,
        "handled": sum(not r["problems"] for r in rows),
        "tracebacks": sum(r["tracebacks"] for r in rows),
        "partial_files": sum(any("partial" in p for p in r["problems"]) for r in rows),
    }
    OUT.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"{payload['handled']}/{len(rows)} handled; wrote {OUT}")
    if not args.no_doc:
        write_doc(DOC, render_table(payload))
        print(f"table written to {DOC}")


if __name__ == "__main__":
    main()
