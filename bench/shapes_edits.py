"""Shapes-world edit benchmark (same as `lusd lab bench-shapes`; see docs/results.md).

    python bench/shapes_edits.py --cases 150 --docs docs/results.md
    python bench/shapes_edits.py --cases 6 --presets lusd,dds --name smoke

Writes bench/results/<name>.jsonl (journal: a killed run resumes), <name>.json and
<name>.png (success vs background change). Cases use seed 1000; the model's LUSD
configuration was tuned on other seeds (see docs/shapes-model.md).
"""

from __future__ import annotations

import sys

from lusd.cli import app

if __name__ == "__main__":
    sys.exit(app(["bench", "shapes", *sys.argv[1:]]))
