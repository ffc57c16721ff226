"""The web app's editing logic without a server: strength mapping, errors, files, metadata."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lusd.config import EditConfig
from lusd.errors import ImageInputError, LUSDError, PromptError
from lusd.web.editing import (
    STRENGTHS,
    AppSettings,
    Editor,
    list_examples,
    mask_overlay,
    parse_focus,
    strength_config,
)
from tests.support.web import FakePipeline, shapes_picture


def test_strength_3_is_the_model_default_and_the_mapping_is_monotonic():
    base = EditConfig(num_steps=200, scale_high=0.03, scale_low=0.003)
    assert strength_config(base, 3) == base
    configs = [strength_config(base, s) for s in sorted(STRENGTHS)]
    steps = [c.num_steps for c in configs]
    highs = [c.scale_high for c in configs]
    assert steps == [100, 150, 200, 250, 300]
    assert highs == sorted(highs) and highs[0] < 0.03 < highs[-1]
    assert all(c.scale_low / c.scale_high == pytest.approx(0.1) for c in configs)
    assert all(c.lambda_reg == base.lambda_reg for c in configs)
    assert strength_config(EditConfig(num_steps=1), 1).num_steps == 1
    with pytest.raises(LUSDError):
        strength_config(base, 9)


def test_parse_focus_accepts_commas_and_spaces():
    assert parse_focus("party, hat") == ["party", "hat"]
    assert parse_focus(" party hat ;") == ["party", "hat"]
    assert parse_focus("") is None and parse_focus(None) is None


def test_mask_overlay_tints_only_the_masked_area():
    image = Image.new("RGB", (8, 8), (100, 100, 100))
    mask = Image.new("L", (8, 8), 0)
    mask.paste(255, (0, 0, 4, 8))
    out = np.asarray(mask_overlay(image, mask)).astype(int)
    assert (out[:, 4:] == 100).all()
    assert (np.abs(out[:, :4] - 100).sum(axis=-1) > 50).all()


def test_examples_missing_folder_and_sidecar_prompts(tmp_path):
    assert list_examples(tmp_path / "nope") == []
    assert list_examples(None) == []
    shapes_picture(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("a red circle\na red circle and a blue square\n")
    shapes_picture(tmp_path / "b.png")
    rows = list_examples(tmp_path)
    assert rows[0] == (str(tmp_path / "a.png"), "a red circle", "a red circle and a blue square")
    assert rows[1] == (str(tmp_path / "b.png"), "", "")


@pytest.fixture
def editor(tmp_path):
    return Editor(FakePipeline(), AppSettings(max_pixels=100 * 100), tmp_path / "work")


def test_edit_writes_result_mask_and_settings_metadata(editor, tmp_path):
    steps = []
    record = editor.run(
        str(shapes_picture(tmp_path / "in.png")),
        "a red circle",
        "a red circle and a blue square",
        "",
        1,
        42,
        lambda step, total: steps.append((step, total)),
    )
    assert steps == [(1, 2), (2, 2)]  # strength 1 halves the fake model's 4 steps
    assert record.focus_words == ("square",) and record.seed == 42 and record.iterations == 2
    with Image.open(record.result_path) as result:
        settings = json.loads(result.text["lusd"])
        assert result.size == (64, 64)
    assert settings["target_prompt"] == "a red circle and a blue square"
    assert settings["seed"] == 42 and settings["preset"] == "lusd"
    assert settings["config"]["num_steps"] == 2
    with Image.open(record.mask_path) as mask:
        assert mask.mode == "L" and mask.getextrema() == (0, 255)
    assert str(tmp_path / "work") in record.overlay_path
    assert "square" in record.summary()


@pytest.mark.parametrize(
    ("target", "focus", "error", "words"),
    [
        ("", "", PromptError, "target prompt"),
        ("x" * 301, "", PromptError, "too long"),
        ("a red circle and a blue square", "hat", PromptError, "hat"),
    ],
)
def test_prompt_errors_are_plain(editor, tmp_path, target, focus, error, words):
    picture = str(shapes_picture(tmp_path / "in.png"))
    with pytest.raises(error, match=words):
        editor.run(picture, "", target, focus, 3, 0)


def test_image_errors_are_plain_and_hide_server_paths(editor, tmp_path):
    with pytest.raises(ImageInputError, match="Upload a picture"):
        editor.run(None, "", "a blue square", "", 3, 0)
    fake = tmp_path / "secret-folder" / "notes.png"
    fake.parent.mkdir()
    fake.write_text("not an image")
    with pytest.raises(ImageInputError) as caught:
        editor.run(str(fake), "", "a blue square", "", 3, 0)
    assert "secret-folder" not in str(caught.value) and "picture" in str(caught.value)
    big = tmp_path / "big.png"
    Image.new("RGB", (101, 100)).save(big)
    with pytest.raises(ImageInputError, match="over the limit") as caught:
        editor.run(str(big), "", "a blue square", "", 3, 0)
    assert str(tmp_path) not in str(caught.value)
    assert editor.pipe.calls == 0


def test_a_file_over_the_upload_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    import lusd.images

    def no_decoding(*args, **kwargs):
        raise AssertionError("the picture was decoded")

    monkeypatch.setattr(lusd.images, "load_image", no_decoding)
    editor = Editor(FakePipeline(), AppSettings(max_file_size="2kb"), tmp_path / "work")
    noisy = tmp_path / "noisy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(noisy)
    assert noisy.stat().st_size > 2048
    with pytest.raises(ImageInputError) as caught:
        editor.run(str(noisy), "", "a blue square", "", 3, 0)
    assert str(caught.value) == (
        "This file is larger than the app accepts (2 KB). Use a smaller picture."
    )
    assert editor.pipe.calls == 0


def test_the_page_refuses_an_oversized_file_before_gradio_reads_it(tmp_path):
    import gradio as gr
    from gradio.data_classes import FileData

    from lusd.web.app import _plain_upload_errors

    noisy = tmp_path / "noisy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(noisy)
    with gr.Blocks():
        image = gr.Image(type="filepath")
    image.preprocess = lambda payload: pytest.fail("gradio decoded the picture")
    guarded = _plain_upload_errors(image, AppSettings(max_file_size="2kb"))
    with pytest.raises(gr.Error, match=r"larger than the app accepts \(2 KB\)"):
        guarded.preprocess(FileData(path=str(noisy)))


def test_old_results_are_pruned_at_the_next_edit(tmp_path):
    editor = Editor(FakePipeline(), AppSettings(keep_results_s=60), tmp_path / "work")
    old = tmp_path / "work" / "results" / "old"
    old.mkdir(parents=True)
    (old / "lusd-edit-1.png").write_bytes(b"x")
    os.utime(old, (time.time() - 120, time.time() - 120))
    record = editor.run(str(shapes_picture(tmp_path / "in.png")), "", "a blue square", "", 1, 0)
    assert not old.exists() and os.path.exists(record.result_path)


def test_focus_preview_never_raises(editor):
    assert editor.focus_preview("a cat", "a cat wearing a party hat") == "party, hat"
    assert editor.focus_preview("", "") == ""
    assert editor.focus_preview(None, "!!!") == ""


def test_the_bundled_examples_carry_both_prompts():
    from lusd.shapes import EXAMPLES_DIR

    rows = list_examples(EXAMPLES_DIR)
    assert len(rows) == len(list(EXAMPLES_DIR.glob("*.png")))  # 0 when none are bundled
    for _, source, target in rows:
        assert source and target and source != target


def test_the_engine_never_imports_the_web_app():
    """Dependencies run one way: `lusd.web` imports the engine, never the reverse.

    ``lusd.testing`` is no part of the engine: its bad-input sweep drives every front end.
    """
    import re
    from pathlib import Path

    import lusd

    root = Path(lusd.__file__).parent
    allowed = {root / "commands" / "serve.py"}
    pattern = re.compile(r"^\s*(from lusd\.web\b|import lusd\.web\b|from lusd import web\b)", re.M)
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if (root / "web") not in path.parents
        and (root / "testing") not in path.parents
        and path not in allowed
        and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_variants_come_back_best_first_with_their_scores(tiny_pipe, tmp_path):
    editor = Editor(tiny_pipe, AppSettings(base_overrides={"num_steps": 4}), tmp_path / "work")
    picture = str(shapes_picture(tmp_path / "in.png"))
    record = editor.run(picture, "a red cat", "a blue dog", "", 1, 7, variants=3)
    scores = [v.score for v in record.variants]
    assert record.id == record.variants[0].id
    assert scores == sorted(scores, reverse=True) and record.score == scores[0]
    assert sorted(v.seed for v in record.variants) == [7, 8, 9]
    assert all(Path(v.result_path).is_file() for v in record.variants)
    assert "score" in record.caption and "Best of 3 variants" in record.summary()
    with pytest.raises(LUSDError, match="the number of variants"):
        editor.run(picture, "a red cat", "a blue dog", "", 1, 7, variants=5)
