"""`# lusd:` lines at the top of a manifest set batch options (require_commercial)."""

from __future__ import annotations

import pytest

from lusd.batch.manifest import read_manifest
from lusd.errors import ConfigError
from tests.support.batch_fakes import write_manifest


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_header_sets_options_and_keeps_line_numbers(tmp_path, fmt):
    manifest = write_manifest(tmp_path, 2, fmt=fmt)
    rows = manifest.read_text().splitlines(keepends=True)
    broken = rows[-1].replace("img001", "missing")
    header = "# a comment\n#lusd: require_commercial = yes\n"
    manifest.write_text(header + "".join(rows[:-1]) + broken)
    parsed = read_manifest(manifest)
    assert parsed.directives == {"require_commercial": True}
    assert len(parsed.rows) == 1
    last_line = 2 + len(rows)  # two header lines, then the file as it was
    assert [e.line for e in parsed.errors] == [last_line]
    assert parsed.rows[0].line == last_line - 1


def test_no_header_means_no_options(tmp_path):
    assert read_manifest(write_manifest(tmp_path, 1)).directives == {}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("# lusd: require_comercial=true", "unknown option 'require_comercial'"),
        ("# lusd: require_commercial=maybe", "expects true or false"),
        ("# lusd: require_commercial", "expects true or false"),
    ],
)
def test_bad_header_options_are_one_line(tmp_path, line, message):
    manifest = write_manifest(tmp_path, 1, fmt="csv")
    manifest.write_text(line + "\n" + manifest.read_text())
    with pytest.raises(ConfigError, match=message) as caught:
        read_manifest(manifest)
    assert "line 1" in str(caught.value) and "\n" not in str(caught.value)
