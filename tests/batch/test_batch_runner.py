"""Local batch runner with a fake editor: outputs, journal, resume, retries, ownership."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from lusd.batch import BatchOptions, run_batch
from lusd.batch.journal import Journal
from lusd.edit_path import read_settings
from lusd.errors import ConfigError
from tests.support.batch_fakes import FakeFactory, write_images, write_manifest

ROOT = Path(__file__).resolve().parents[2]


def _opts(manifest, outdir, **kw):
    return BatchOptions(manifest, outdir, model="fake", oracle=False, **kw)


def test_local_run_writes_outputs_journal_and_metrics(tmp_path):
    manifest = write_manifest(tmp_path, 3, extra={"num_steps": 4})
    out = tmp_path / "out"
    seen = []
    s = run_batch(_opts(manifest, out), FakeFactory(), progress=lambda *a: seen.append(a))
    assert (s.done, s.failed, s.to_run) == (3, 0, 3)
    assert [a[:2] for a in seen] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    with Journal(out / "journal.sqlite") as j:
        rows = j.jobs()
        assert [r["state"] for r in rows] == ["done"] * 3
        metrics = j.metrics()
        for r in rows:
            img = (out / r["output"]).read_bytes()
            assert hashlib.sha256(img).hexdigest() == r["output_sha256"]
            assert hashlib.sha256((out / r["mask"]).read_bytes()).hexdigest() == r["mask_sha256"]
            assert r["unet_calls"] == 4 and r["attempts"] == 1 and r["seconds"] >= 0
            assert json.loads(r["config"])["num_steps"] == 4
            with Image.open(out / r["output"]) as im:
                assert im.size == (32, 32)
                assert read_settings(im.text)["target_prompt"] == r["target_prompt"]
            m = metrics[r["id"]]
            # the fake paints exactly the masked 16x16 square: nothing changes outside it
            assert m["l1_outside"] == 0.0 and m["bg_change"] == 0.0
            assert m["mask_area"] == pytest.approx(0.25) and m["l1"] > 0
    # a rerun skips everything
    s2 = run_batch(_opts(manifest, out), FakeFactory())
    assert (s2.to_run, s2.skipped_done) == (0, 3)


def test_failed_rows_retry_up_to_the_limit(tmp_path):
    manifest = write_manifest(tmp_path, 2)
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    rows[1]["target_prompt"] = "FAIL please"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    for attempt in (1, 2):
        s = run_batch(_opts(manifest, out, max_attempts=2), FakeFactory())
        assert (s.done, s.failed) == (1 if attempt == 1 else 0, 1)
    s = run_batch(_opts(manifest, out, max_attempts=2), FakeFactory())
    assert s.to_run == 0 and len(s.gave_up) == 1
    with Journal(out / "journal.sqlite") as j:
        bad = [r for r in j.jobs() if r["state"] == "failed"][0]
        assert bad["failures"] == 2 and "PromptError: fake failure" in bad["error"]
        assert not (out / "images" / f"{bad['id']}.png").exists()


def test_changed_config_needs_rerun_changed(tmp_path):
    manifest = write_manifest(tmp_path, 2, extra={"num_steps": 3})
    out = tmp_path / "out"
    run_batch(_opts(manifest, out), FakeFactory())
    manifest.write_text(manifest.read_text().replace('"num_steps": 3', '"num_steps": 5', 1))
    s = run_batch(_opts(manifest, out), FakeFactory())
    assert s.to_run == 0 and len(s.changed) == 1
    s = run_batch(_opts(manifest, out, rerun_changed=True), FakeFactory())
    assert (s.to_run, s.done) == (1, 1)
    with Journal(out / "journal.sqlite") as j:
        assert sorted(r["unet_calls"] for r in j.jobs()) == [3, 5]


def test_rows_made_with_other_weights_are_changed(tmp_path, tiny_model_dir):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")  # a real SD layout
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    assert weights.is_file()
    (model / "README.md").write_text("notes")
    manifest, out = write_manifest(tmp_path, 2), tmp_path / "out"
    opts = dict(model=str(model), oracle=False)
    assert run_batch(BatchOptions(manifest, out, **opts), FakeFactory()).done == 2
    (model / "README.md").write_text("other notes")  # not weights: nothing to redo
    s = run_batch(BatchOptions(manifest, out, **opts), FakeFactory())
    assert (s.to_run, s.skipped_done, len(s.changed)) == (0, 2, 0)
    weights.write_bytes(b"retrained weights")  # same folder, new weights: every row is stale
    s = run_batch(BatchOptions(manifest, out, **opts), FakeFactory())
    assert (s.to_run, len(s.changed)) == (0, 2)
    with Journal(out / "journal.sqlite") as j:
        assert j.get_meta("model").startswith(f"{model.resolve()}@")


def test_missing_or_tampered_output_is_redone(tmp_path):
    manifest = write_manifest(tmp_path, 2)
    out = tmp_path / "out"
    run_batch(_opts(manifest, out), FakeFactory())
    victim = sorted((out / "images").glob("*.png"))[0]
    victim.write_bytes(b"corrupt")
    s = run_batch(_opts(manifest, out), FakeFactory())
    assert (s.to_run, s.done) == (1, 1)
    with Image.open(victim) as im:
        im.load()


def test_outdir_of_another_manifest_or_foreign_files_refused(tmp_path):
    m1 = write_manifest(tmp_path / "a", 1)
    m2 = write_manifest(tmp_path / "b", 2)
    out = tmp_path / "out"
    run_batch(_opts(m1, out), FakeFactory())
    with pytest.raises(ConfigError, match="belongs to the batch of manifest"):
        run_batch(_opts(m2, out), FakeFactory())
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "old.png").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not empty and holds no lusd batch journal"):
        run_batch(_opts(m1, foreign), FakeFactory())
    assert (foreign / "old.png").read_bytes() == b"x"


def test_strict_aborts_on_bad_rows_and_lenient_runs_good_ones(tmp_path):
    write_images(tmp_path, 1)
    (tmp_path / "m.csv").write_text(
        "image,target_prompt\nimg000.png,a blue circle\nnope.png,a blue circle\nimg000.png,\n"
    )
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"2 bad row\(s\).*line 3: .*line 4: "):
        run_batch(_opts(tmp_path / "m.csv", out, strict=True), FakeFactory())
    assert not (out / "journal.sqlite").exists()
    s = run_batch(_opts(tmp_path / "m.csv", out), FakeFactory())
    assert s.done == 1 and [e.line for e in s.bad_rows] == [3, 4]
    with Journal(out / "journal.sqlite") as j:
        assert [b["line"] for b in json.loads(j.get_meta("bad_rows"))] == [3, 4]


def test_unreadable_images_bad_rows_or_failed_jobs(tmp_path):
    manifest = write_manifest(tmp_path, 3)
    (tmp_path / "images" / "img001.png").write_bytes(b"not a png")
    data = (tmp_path / "images" / "img002.png").read_bytes()
    (tmp_path / "images" / "img002.png").write_bytes(data[: len(data) // 2])  # truncated
    s = run_batch(_opts(manifest, tmp_path / "out"), FakeFactory())
    assert (s.done, s.failed) == (1, 1)
    assert [(e.line, e.message) for e in s.bad_rows] == [
        (2, "image 'images/img001.png': not an image (or a format Pillow cannot read)")
    ]
    with Journal(tmp_path / "out" / "journal.sqlite") as j:
        err = [r["error"] for r in j.jobs() if r["state"] == "failed"][0]
    assert err.startswith("ImageInputError: img002.png: unreadable or truncated image")


def test_local_backend_does_not_import_ray(tmp_path):
    manifest = write_manifest(tmp_path, 1)
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r});"
        "from tests.support.batch_fakes import _main;"
        f"_main([{str(manifest)!r}, {str(tmp_path / 'out')!r}, '0']);"
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"done": 1, "failed": 0}


def test_run_killed_while_creating_the_journal_can_restart(tmp_path):
    manifest = write_manifest(tmp_path, 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lusd-batch.lock").write_text("")
    (out / ".tmp-journal.sqlite").write_bytes(b"half a database")
    s = run_batch(_opts(manifest, out), FakeFactory())
    assert s.done == 1 and not (out / ".tmp-journal.sqlite").exists()
