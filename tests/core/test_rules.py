"""Update rules as plug-ins: the registry, presets, and a rule's own settings."""

import pytest
import torch

import lusd.rules as rules
from lusd.config import EditConfig, preset_config
from lusd.errors import ConfigError
from lusd.rules import PRESETS, RULES, Setting, UpdateRule, rule_class


class Nudge(UpdateRule):
    """A test rule: moves every latent by ``push`` along the target prediction."""

    name = "nudge"
    settings = (Setting("push", 0.5, 0.0, 2.0), Setting("twice", False))
    presets = {"nudge": dict(num_steps=2)}

    def step(self, loop, step, latents):
        lanes = range(len(loop.lanes))
        t, noise = loop.sample(lanes)
        (eps,) = loop.eps([loop.noised(latents, t, noise)], t, ["target"], lanes)
        times = 2 if self.option("twice") else 1
        return latents - times * self.option("push") * eps


@pytest.fixture
def nudge(monkeypatch):
    monkeypatch.setitem(RULES, "nudge", Nudge)
    monkeypatch.setitem(PRESETS, "nudge", {"method": "nudge", "num_steps": 2})
    return Nudge


def test_every_preset_names_a_registered_rule():
    assert set(PRESETS) >= {"lusd", "dds", "sds", "lusd-no-mask", "lusd-no-filter"}
    for name, changes in PRESETS.items():
        assert rule_class(changes["method"]).name == changes["method"]
        assert preset_config(name).method == changes["method"]


def test_unknown_rule_or_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown method 'cdz': use lusd, dds, sds"):
        EditConfig(method="cdz")
    with pytest.raises(ConfigError, match=r"unknown preset 'nope': choose one of lusd, "):
        preset_config("nope")


def test_a_rules_settings_are_validated_and_travel_with_the_config(nudge):
    config = preset_config("nudge", push="1.5")
    assert config.options == {"push": 1.5, "twice": False}
    assert config.to_dict()["push"] == 1.5 and "rule_settings" not in config.to_dict()
    assert EditConfig.from_dict(config.to_dict()) == config
    assert config.digest() != preset_config("nudge").digest()
    with pytest.raises(ConfigError, match=r"push must lie in \[0.0, 2.0\], got 3.0"):
        config.replace(push=3)
    with pytest.raises(ConfigError, match="twice expects bool, got 'maybe'"):
        config.replace(twice="maybe")
    with pytest.raises(ConfigError, match="unknown EditConfig field"):
        EditConfig().replace(push=1.0)  # LUSD has no such setting
    assert config.replace(method="lusd").options == {}  # another rule drops them


def test_the_loop_runs_a_registered_rule(nudge):
    from lusd.distill import Conditioning, Distiller

    def unet(latents, timestep, embeddings):
        return torch.ones_like(latents)

    config = preset_config("nudge", twice=True)
    cond = Conditioning(torch.zeros(1, 3, 2), torch.zeros(1, 3, 2))
    distiller = Distiller(unet, torch.linspace(0.99, 0.01, 1000), config, torch.Generator())
    result = distiller.run(torch.zeros(1, 4, 2, 2), cond, use_mask=False)
    assert torch.allclose(result.latents, torch.full((1, 4, 2, 2), -2.0))  # 2 steps of -1


def test_the_existing_methods_keep_their_configs():
    # the presets' values, as the journals of earlier batches hashed them
    assert preset_config("dds").to_dict() == {
        **EditConfig().to_dict(),
        "method": "dds", "num_steps": 200, "lr": 0.1 * 2000 / 4096, "use_filter": False,
        "use_mask": False, "normalize": False, "lambda_reg": 0.0, "guidance_scale": 7.5,
    }  # fmt: skip
    assert "rule_settings" not in EditConfig().to_dict()
    assert rules.rule_for(EditConfig()).name == "lusd"


@pytest.mark.parametrize("name", list(RULES))
def test_each_rule_costs_what_it_declares(tiny_pipe, noise_photo, monkeypatch, name):
    """UNet passes per iteration and rows per lane, as the rule declares them."""
    rule = RULES[name]
    rows: list[int] = []
    predict = tiny_pipe.predict_eps

    def counted(latents, timestep, embeddings):
        rows.append(latents.shape[0])
        return predict(latents, timestep, embeddings)

    monkeypatch.setattr(tiny_pipe, "predict_eps", counted)
    config = preset_config(name, num_steps=2, use_filter=False)
    lanes = [torch.Generator().manual_seed(s) for s in (1, 2)]
    tiny_pipe(noise_photo, "a red cat", "a blue dog", config=config, generator=lanes)
    assert len(rows) == 2 * rule.unet_passes
    assert rows[0] == 2 * rule.rows_per_lane  # the first pass of an iteration, both lanes
