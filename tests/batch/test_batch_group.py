"""``--group N``: rows of one config in one pipeline call, each exactly as it is alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lusd.batch import BatchOptions, LoadPipeline, run_batch
from lusd.batch.jobs import group_jobs
from lusd.batch.journal import Journal
from lusd.batch.manifest import read_manifest
from tests.support.batch_fakes import FakeEditor, write_manifest

_SAME = ("state", "seed", "candidates", "judge_score", "needs_review", "unet_calls", "error")


def _opts(manifest, outdir, **kw):
    return BatchOptions(manifest, outdir, model="fake", oracle=False, **kw)


def _rewrite(manifest: Path, change) -> None:
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    for i, row in enumerate(rows):
        change(i, row)
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _result(outdir: Path) -> dict[str, tuple]:
    """Every row's journal entry, metrics and output bytes (what must not depend on --group)."""
    with Journal(outdir / "journal.sqlite") as j:
        metrics = j.metrics()
        rows = {
            r["id"]: (
                tuple(r[k] for k in _SAME),
                metrics.get(r["id"]),
                (outdir / r["output"]).read_bytes() if r["output"] else None,
                (outdir / r["mask"]).read_bytes() if r["mask"] else None,
            )
            for r in j.jobs()
        }
    assert rows
    return rows


def test_rows_are_grouped_by_config_in_manifest_order(tmp_path):
    manifest = write_manifest(tmp_path, 6)
    _rewrite(manifest, lambda i, row: row.update(num_steps=3 if i == 1 else 2))
    jobs = [j.id for j in _jobs(manifest)]
    groups = [[j.id for j in g] for g in group_jobs(_jobs(manifest), 3)]
    assert groups == [[jobs[0], jobs[2], jobs[3]], [jobs[1]], [jobs[4], jobs[5]]]
    assert [[j.id for j in g] for g in group_jobs(_jobs(manifest), 1)] == [[j] for j in jobs]


def _jobs(manifest):
    from lusd.batch.jobs import build_jobs
    from lusd.config import EditConfig

    return build_jobs(read_manifest(manifest).rows, EditConfig(), "fake")[0]


def test_group_gives_what_each_row_gives_alone(tmp_path):
    manifest = write_manifest(tmp_path, 7)

    def vary(i: int, row: dict) -> None:
        row["num_steps"] = 3 if i == 4 else 2  # another config: its own group
        if i in (1, 5):
            row["candidates"] = 3

    _rewrite(manifest, vary)
    results, calls = {}, {}
    for group in (1, 3):
        editor = FakeEditor()
        out = tmp_path / f"out{group}"
        s = run_batch(_opts(manifest, out, group=group, review_threshold=0.5), lambda e=editor: e)
        assert (s.done, s.failed) == (7, 0)
        results[group], calls[group] = _result(out), editor.batches
    assert calls == {1: [1] * 7, 3: [3, 3, 1]}  # rows 0-2, rows 3, 5, 6, row 4
    assert results[3] == results[1]
    metrics = [(tmp_path / f"out{g}" / "metrics.csv").read_text().splitlines() for g in (1, 3)]
    drop_seconds = [[line.split(",")[:9] for line in lines] for lines in metrics]
    assert drop_seconds[0] == drop_seconds[1]


def test_a_failing_row_fails_alone_inside_a_group(tmp_path):
    manifest = write_manifest(tmp_path, 4)
    _rewrite(manifest, lambda i, row: i == 1 and row.update(target_prompt="FAIL in a group"))
    data = (tmp_path / "images" / "img003.png").read_bytes()
    (tmp_path / "images" / "img003.png").write_bytes(data[: len(data) // 2])  # truncated
    alone = run_batch(_opts(manifest, tmp_path / "alone"), FakeEditor)
    editor = FakeEditor()
    s = run_batch(_opts(manifest, tmp_path / "out", group=4), lambda: editor)
    assert (s.done, s.failed) == (2, 2) == (alone.done, alone.failed)
    assert editor.batches == [1, 1, 1]  # the group of 3 decodable rows failed: one by one
    assert sorted((f.line, f.error.split(":")[0]) for f in s.failures) == [
        (2, "PromptError"),
        (4, "ImageInputError"),
    ]
    with Journal(tmp_path / "out" / "journal.sqlite") as j:
        errors = {r["line"]: r["error"] for r in j.jobs()}
    assert errors[2] == "PromptError: fake failure for 'FAIL in a group'"
    assert errors[1] is None and errors[3] is None
    assert _result(tmp_path / "out") == _result(tmp_path / "alone")


class _Interrupted(FakeEditor):
    """Stops the whole process (as a kill would) on its second pipeline call."""

    def edit_batch(self, edits, config, progress=None, should_stop=None):
        if self.batches:
            raise KeyboardInterrupt
        return super().edit_batch(edits, config, progress, should_stop)


def test_resume_after_a_journaled_group(tmp_path):
    manifest = write_manifest(tmp_path, 6)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch(_opts(manifest, out, group=3), _Interrupted)
    with Journal(out / "journal.sqlite") as j:
        assert [r["state"] for r in j.jobs()] == ["done"] * 3 + ["running"] * 3
    editor = FakeEditor()
    s = run_batch(_opts(manifest, out, group=3), lambda: editor)
    assert (s.to_run, s.done, s.skipped_done, editor.batches) == (3, 3, 3, [3])
    with Journal(out / "journal.sqlite") as j:
        assert [e["event"] for e in j.events() if e["event"] == "interrupted"] == [
            "interrupted"
        ] * 3
    run_batch(_opts(manifest, tmp_path / "alone"), FakeEditor)
    assert _result(out) == _result(tmp_path / "alone")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, tiny_model_dir):
    """The same 3 rows on the tiny SD model with --group 1 and --group 3."""
    tmp = tmp_path_factory.mktemp("group-tiny")
    manifest = write_manifest(tmp, 3, extra={"num_steps": 2})
    threads = torch.get_num_threads()
    try:
        for group in (1, 3):
            opts = BatchOptions(
                manifest,
                tmp / f"out{group}",
                model=str(tiny_model_dir),
                device="cpu",
                threads=1,
                oracle=False,
                group=group,
            )
            factory = LoadPipeline(str(tiny_model_dir), "cpu", threads=1)
            assert run_batch(opts, factory).done == 3
    finally:
        torch.set_num_threads(threads)
    return _result(tmp / "out1"), _result(tmp / "out3"), tmp


def test_group_with_the_tiny_model_gives_each_rows_edit(tiny_runs):
    alone, grouped, tmp = tiny_runs
    assert alone.keys() == grouped.keys()
    for job_id, (entry, _, _, _) in alone.items():
        assert grouped[job_id][0] == entry
        with Journal(tmp / "out1" / "journal.sqlite") as j:
            row = j.job(job_id)
        for column in ("output", "mask"):
            pixels = [np.asarray(Image.open(tmp / f"out{g}" / row[column]), int) for g in (1, 3)]
            assert np.abs(pixels[0] - pixels[1]).max() <= 1, (job_id, column)


@pytest.mark.xfail(
    strict=True,
    reason="a batched UNet pass on the CPU rounds differently from a single one: grouped "
    "outputs may differ from those made alone by one level in a few pixels",
)
def test_group_with_the_tiny_model_is_byte_identical(tiny_runs):
    alone, grouped, _ = tiny_runs
    assert grouped == alone
