"""Lanes: several latents optimised together equal each optimised alone."""

import numpy as np
import pytest
import torch
from PIL import Image

from lusd.config import EditConfig, preset_config
from lusd.distill import Conditioning, Distiller, Lane
from lusd.edit_path import generator_for

SHAPE = (1, 4, 8, 8)


class TimestepUNet:
    """eps(target) = delta * t / 1000, eps(source) = 0: small t gives a weak difference,
    which the filter rejects. Row-independent, so lanes must match single runs exactly."""

    def __init__(self):
        base = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
        self.delta = base / base.std()
        self.batches: list[int] = []

    def __call__(self, latents, timestep, embeddings):
        self.batches.append(latents.shape[0])
        branch = embeddings[:, 0, 0].view(-1, 1, 1, 1)
        scale = timestep.float().view(-1, 1, 1, 1) / 1000
        return torch.where(branch == 2, self.delta * scale, torch.zeros(1)) + 0 * latents


def lanes_of(seeds, use_mask=False):
    cond = Conditioning(*(torch.full((1, 3, 2), float(v)) for v in (1, 2, 0)))
    return [
        Lane(torch.zeros(SHAPE), cond, torch.Generator().manual_seed(s), use_mask=use_mask)
        for s in seeds
    ]


def distill(config, seeds, unet, mask=None):
    alphas = torch.linspace(0.99, 0.01, 1000)
    lanes = lanes_of(seeds, mask is not None)
    read = None if mask is None else (lambda: [mask * (1 + i) / 3 for i in range(len(seeds))])
    distiller = Distiller(unet, alphas, config, read_masks=read or (lambda: None))
    return distiller.run_lanes(lanes)


@pytest.mark.parametrize("preset", ["lusd", "lusd-no-filter", "dds", "sds"])
def test_lanes_equal_single_runs_and_share_each_pass(preset):
    config = preset_config(preset, num_steps=6, tau0=0.5)
    together_unet = TimestepUNet()
    together = distill(config, [0, 1, 2], together_unet)
    rows = 4 if preset == "dds" else 2
    for i, seed in enumerate([0, 1, 2]):
        alone = distill(config, [seed], TimestepUNet())[0]
        assert torch.equal(together[i].latents, alone.latents)
        assert together[i].stats.filter_retries == alone.stats.filter_retries
        assert together[i].stats.unet_calls == alone.stats.unet_calls
    passes = len(together_unet.batches)
    assert together_unet.batches[0] == 3 * rows
    if preset == "lusd":  # retries re-run only the rejected lanes
        assert sum(r.stats.filter_retries for r in together) > 0
        assert min(together_unet.batches) < 3 * rows
        assert passes < sum(r.stats.unet_calls for r in together)
    else:
        assert passes == 6


def test_each_lane_follows_its_own_mask():
    mask = torch.zeros(8, 8)
    mask[:4] = 1.0
    results = distill(EditConfig(num_steps=3, use_filter=False), [0, 0, 0], TimestepUNet(), mask)
    for i, result in enumerate(results):
        assert torch.allclose(result.mask, mask * (1 + i) / 3)
    # same seed, different masks: different edits
    assert not torch.equal(results[0].latents, results[2].latents)


@pytest.mark.parametrize(
    ("preset", "changes"),
    [
        ("lusd", {"tau0": 0.05}),  # filter retries: only the rejected lanes run again
        ("dds", {}),
        ("cds", {"cds_patches": 5}),  # few locations: which ones a lane draws matters
        ("pds", {}),
    ],
)
def test_candidates_of_a_pipeline_equal_their_single_runs(tiny_pipe, noise_photo, preset, changes):
    args = (noise_photo, "a red cat", "a blue dog")
    config = preset_config(preset, num_steps=3, **changes)
    many = tiny_pipe(*args, config=config, generator=[generator_for(s) for s in (4, 9)])
    assert len(many.images) == len(many.masks) == len(many.stats["candidates"]) == 2
    for k, seed in enumerate((4, 9)):
        alone = tiny_pipe(*args, config=config, generator=generator_for(seed))
        difference = np.abs(np.asarray(many.images[k], int) - np.asarray(alone.images[0], int))
        assert difference.max() <= 1  # float tolerance: a batched pass rounds differently
        assert many.stats["candidates"][k]["unet_calls"] == alone.stats["unet_calls"]
    assert not np.array_equal(np.asarray(many.images[0]), np.asarray(many.images[1]))


# ---- candidates on the edit path -------------------------------------------------------------


def _request(pipe, seed=5, candidates=1, target="a blue dog", **changes):
    from lusd.edit_path import EditRequest

    photo = Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 40, 3), np.uint8))
    config = preset_config("lusd", pipe.default_config, num_steps=3, **changes)
    return EditRequest(photo, "a red cat", target, config, seed=seed, num_candidates=candidates)


def test_the_record_is_the_judges_best_candidate_and_holds_them_all(tiny_pipe):
    from lusd.edit_path import run_edit

    record = run_edit(tiny_pipe, _request(tiny_pipe, candidates=3))
    seeds = [c.seed for c in record.candidates]
    scores = [c.score for c in record.candidates]
    assert seeds == [5, 6, 7] and record in record.candidates
    assert record.score == max(scores) and all(0 <= s <= 1 for s in scores)
    assert record.settings["seed"] == record.seed and record.settings["candidates"] == 3
    assert record.settings["judge_score"] == record.score
    assert record.stats["judge"]["unet_passes"] > 0
    for candidate in record.candidates:  # each is the edit its seed gives alone
        alone = run_edit(tiny_pipe, _request(tiny_pipe, seed=candidate.seed))
        difference = np.abs(np.asarray(alone.image, int) - np.asarray(candidate.image, int))
        assert difference.max() <= 1 and alone.score is None


def test_edits_run_together_give_what_they_give_alone(tiny_pipe):
    from lusd.edit_path import run_edit, run_edits

    requests = [
        _request(tiny_pipe, seed=1),
        _request(tiny_pipe, seed=2, target="a green bird", candidates=2),
    ]
    together = run_edits(tiny_pipe, requests)
    for record, request in zip(together, requests, strict=True):
        alone = run_edit(tiny_pipe, request)
        assert record.seed == alone.seed and record.focus_words == alone.focus_words
        difference = np.abs(np.asarray(alone.image, int) - np.asarray(record.image, int))
        assert difference.max() <= 1
    assert together[0].score is None and len(together[1].candidates) == 2


@pytest.mark.parametrize("count", [0, 17, "two", True, 2.0])
def test_a_bad_number_of_candidates_is_one_clear_error(tiny_pipe, count):
    from lusd.errors import ConfigError

    with pytest.raises(ConfigError, match=r"candidates must be a whole number from 1 to 16"):
        _request(tiny_pipe, candidates=count)


def test_the_last_candidates_seed_must_be_a_seed(tiny_pipe):
    from lusd.errors import ConfigError
    from lusd.inputs import SEED_LIMIT

    _request(tiny_pipe, seed=SEED_LIMIT - 2, candidates=2)
    with pytest.raises(ConfigError, match="seed"):
        _request(tiny_pipe, seed=SEED_LIMIT - 2, candidates=3)


def test_cli_saves_every_candidate_with_its_score(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from lusd.cli import app
    from lusd.edit_path import read_settings

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (32, 32, 3), np.uint8)).save(photo)
    args = [
        "edit",
        str(photo),
        "-s",
        "a red cat",
        "-t",
        "a blue dog",
        "--model",
        str(tiny_model_dir),
    ]
    args += ["--steps", "2", "--seed", "4", "-o", str(tmp_path / "out.png")]
    result = CliRunner().invoke(
        app, [*args, "--candidates", "2", "--save-candidates", str(tmp_path / "all")]
    )
    assert result.exit_code == 0, result.output
    assert "best of 2 candidates" in result.output
    saved = sorted((tmp_path / "all").glob("*.png"))
    assert [p.name for p in saved] == ["photo.seed4.png", "photo.seed5.png"]
    settings = [read_settings(Image.open(p).text) for p in saved]
    best = read_settings(Image.open(tmp_path / "out.png").text)
    assert best["judge_score"] == max(s["judge_score"] for s in settings)
    assert {s["seed"] for s in settings} == {4, 5} and best["candidates"] == 2

    bad = CliRunner().invoke(
        app, [*args[:-2], "-o", str(tmp_path / "bad.png"), "--candidates", "0"]
    )
    assert bad.exit_code != 0 and "candidates must be a whole number" in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and not (tmp_path / "bad.png").exists()
