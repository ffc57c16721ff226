"""CLIP metrics through a tiny random CLIPModel saved and loaded like a real one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lusd.errors import ModelLoadError
from tests.support.batch_fakes import FakeFactory, write_manifest


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=49408,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        ),
        vision_config=dict(
            image_size=32,
            patch_size=8,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
        ),
        projection_dim=8,
    )
    folder = tmp_path_factory.mktemp("clip") / "tiny-clip"
    CLIPModel(config).save_pretrained(folder)
    return folder


def _images():
    rng = np.random.default_rng(0)
    a = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    b = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    return a, b


def test_clip_scores_match_clipmodel_forward(tiny_clip_dir):
    import torch

    from lusd.eval.clip import ClipScorer, clip_scores

    scorer = ClipScorer(tiny_clip_dir, "cpu")
    src, edited = _images()
    s = clip_scores(scorer, src, edited, "a red circle")
    # independent path: CLIPModel.forward's logits are exp(logit_scale) * cosine
    tok = scorer.tokenizer(["a red circle"], return_tensors="pt")
    with torch.inference_mode():
        out = scorer.model(
            input_ids=tok["input_ids"],
            attention_mask=tok["attention_mask"],
            pixel_values=scorer.pixel_values([src, edited]),
        )
        cos = (out.logits_per_image[:, 0] / scorer.model.logit_scale.exp()).numpy()
    assert s["clip_t_source"] == pytest.approx(float(cos[0]), abs=1e-5)
    assert s["clip_t"] == pytest.approx(float(cos[1]), abs=1e-5)
    assert s["clip_r"] == pytest.approx(s["clip_t"] / s["clip_t_source"])
    ie = out.image_embeds.numpy()
    ie = ie / np.linalg.norm(ie, axis=1, keepdims=True)
    assert s["clip_i"] == pytest.approx(float(ie[0] @ ie[1]), abs=1e-5)
    same = clip_scores(scorer, src, src, "a red circle")
    assert same["clip_i"] == pytest.approx(1.0, abs=1e-5) and same["clip_r"] == pytest.approx(1.0)


def test_bad_clip_path_is_a_model_load_error(tmp_path):
    from lusd.eval.clip import ClipScorer

    with pytest.raises(ModelLoadError, match="CLIP model not found"):
        ClipScorer(tmp_path / "nothing", "cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="cannot load a CLIP model"):
        ClipScorer(tmp_path / "empty", "cpu")


def test_eval_outdir_adds_clip_metrics_and_auc(tmp_path, tiny_clip_dir):
    from lusd.batch import BatchOptions, run_batch
    from lusd.batch.journal import Journal
    from lusd.eval.evaluate import evaluate_outdir
    from lusd.eval.metrics import clip_auc

    manifest = write_manifest(tmp_path, 3)
    out = tmp_path / "out"
    run_batch(BatchOptions(manifest, out, model="fake", oracle=False), FakeFactory())
    res = evaluate_outdir(out)
    assert any("no CLIP model" in n for n in res.notes)
    assert res.summary["clip_auc"] is None and res.summary["edits"] == 3
    res = evaluate_outdir(out, clip=str(tiny_clip_dir), device="cpu")
    assert res.notes == []
    r = [m["clip_r"] for m in res.per_edit.values()]
    assert res.summary["clip_auc"] == pytest.approx(clip_auc(r))
    clip_i = [m["clip_i"] for m in res.per_edit.values()]
    assert res.summary["clip_i"] == pytest.approx(np.mean(clip_i))
    with Journal(out / "journal.sqlite") as j:
        stored = j.metrics()
    assert set(stored) == set(res.per_edit) and all("clip_t" in m for m in stored.values())
    assert json.loads((out / "metrics.json").read_text())["summary"]["edits"] == 3


def test_eval_manifest_with_edited_column(tmp_path, tiny_clip_dir):
    from lusd.eval.evaluate import evaluate_manifest

    src, edited = _images()
    src.save(tmp_path / "in.png")
    edited.save(tmp_path / "out.png")
    (tmp_path / "mb.csv").write_text("input,target_caption,edited\nin.png,a cat,out.png\n")
    res = evaluate_manifest(tmp_path / "mb.csv", tmp_path / "m.csv", clip=str(tiny_clip_dir))
    (only,) = res.per_edit.values()
    assert {"l1", "l2", "clip_i", "clip_t", "clip_r"} <= set(only)
    header = (tmp_path / "m.csv").read_text().splitlines()[0]
    assert header.startswith("id,") and "clip_r" in header
