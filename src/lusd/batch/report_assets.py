"""Static pieces of the HTML report: stylesheet, the sort and filter script, matplotlib
histograms."""

from __future__ import annotations

import io
import math

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{margin:0 0 4px}h2{margin:28px 0 8px}.sub{color:#666;margin:0 0 12px}
.kpis{display:flex;flex-wrap:wrap;gap:10px}
.kpi{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:140px}
.kpi b{display:block;font-size:22px}.kpi span{color:#666;font-size:12px}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid #e2e2e2;padding:4px 8px;vertical-align:top;text-align:left}
th[data-sort]{cursor:pointer;user-select:none;background:#f0f0f0}
th[data-sort]:hover{background:#e4e4ff}th.asc::after{content:" ▲"}th.desc::after{content:" ▼"}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td img{image-rendering:pixelated;display:block}.hist{max-width:100%;background:#fff}
.missing{color:#b00}small{color:#666}
.review-kpi{font-size:16px;font-weight:600;margin:0 0 12px}
.badge{display:inline-block;margin-top:4px;padding:1px 6px;border-radius:8px;font-size:11px;
background:#fff3cd;color:#7a4b00;border:1px solid #e0b84c;white-space:nowrap}
tr.needs-review td{background:#fffaf0}.filter{margin:0 0 8px}
"""

JS = """
(function () {
  var table = document.getElementById('grid');
  if (!table) { return; }
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    if (!th.dataset.sort) { return; }
    th.addEventListener('click', function () {
      var asc = !th.classList.contains('asc');
      Array.prototype.forEach.call(heads, function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      var numeric = th.dataset.sort === 'num';
      var rows = Array.prototype.slice.call(table.tBodies[0].rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
        if (numeric) {
          x = x === '' ? Infinity : parseFloat(x); y = y === '' ? Infinity : parseFloat(y);
          return asc ? x - y : y - x;
        }
        return asc ? x.localeCompare(y) : y.localeCompare(x);
      });
      rows.forEach(function (r) { table.tBodies[0].appendChild(r); });
    });
  });
  var only = document.getElementById('only-review');
  if (only) {
    only.addEventListener('change', function () {
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        var hide = only.checked && !r.classList.contains('needs-review');
        r.style.display = hide ? 'none' : '';
      });
    });
  }
})();
"""


def histograms_png(series: dict[str, list[float]]) -> bytes:
    """One small histogram per series, side by side, as PNG bytes (Agg backend, no display)."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    n = len(series)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4 * cols, 2.8 * rows), dpi=90)
    for i, (label, values) in enumerate(series.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.hist(values, bins=min(20, max(5, len(values) // 2)), color="#4c72b0")
        ax.set_title(label, fontsize=10)
        ax.set_ylabel("edits", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
