"""The cross-attention grounding loss: word owners, object masks, the processor, the loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lusd.shapes.world import (
    Obj,
    Scene,
    caption,
    caption_words,
    cell_center,
    sample_scene,
    training_caption,
    training_caption_words,
    words_text,
)
from lusd.tokenizer import clip_tokenizer
from shapes_lab.grounding import (
    GroundingProcessor,
    grounding_losses,
    install_grounding,
    owners_from_timestep,
    scene_masks,
    scene_regions,
    self_grounding_loss,
    token_owners,
)

SCENE = Scene("black", (Obj("red", "circle", "large", 0), Obj("blue", "square", "small", 4)))


def test_caption_words_say_which_object_each_word_describes():
    words = caption_words(SCENE)
    assert words_text(words) == caption(SCENE)
    owned = {(w, owner) for w, owner in words if owner >= 0}
    assert owned == {
        ("large", 0), ("red", 0), ("circle", 0), ("top", 0), ("left", 0),
        ("small", 1), ("blue", 1), ("square", 1), ("center", 1),
    }  # fmt: skip
    assert {w for w, owner in words if owner < 0} == {
        "a",
        "on",
        "the",
        "in",
        "and",
        "black",
        "background",
    }


def test_training_captions_are_unchanged_by_the_word_owners():
    rng = np.random.default_rng(3)
    for _ in range(50):
        scene = sample_scene(rng)
        seed = int(rng.integers(1000))
        words = training_caption_words(scene, np.random.default_rng(seed))
        assert words_text(words) == training_caption(scene, np.random.default_rng(seed))
        for word, owner in words:  # shuffled order: the owner is still the right object
            if owner >= 0 and word in ("red", "green", "blue", "yellow", "purple", "orange"):
                assert scene.objects[owner].color == word


def test_token_owners_line_up_with_the_clip_tokens():
    tok = clip_tokenizer()
    rng = np.random.default_rng(0)
    for _ in range(20):
        words = training_caption_words(sample_scene(rng), rng)
        ids = tok(words_text(words), padding="max_length", max_length=77).input_ids
        owners = token_owners(words)
        for k, (word, owner) in enumerate(words):
            assert tok.decode([ids[k + 1]]).strip() == word
            assert owners[k + 1] == owner
        assert (owners[len(words) + 1 :] == -1).all() and owners[0] == -1


def test_token_owners_supervise_only_the_kinds_asked_for():
    words = caption_words(SCENE)
    owners = token_owners(words, kinds=("position", "color"))
    kept = {word for k, (word, _) in enumerate(words) if owners[k + 1] >= 0}
    assert kept == {"top", "left", "center", "red", "blue"}
    for k, (word, owner) in enumerate(words):
        if word in kept:
            assert owners[k + 1] == owner


def test_scene_masks_cover_each_object_where_it_is_drawn():
    masks = scene_masks(SCENE)
    assert masks.shape == (3, 16, 16) and masks[2].sum() == 0
    for mask, obj in zip(masks, SCENE.objects, strict=False):
        cx, cy = cell_center(obj.cell)
        assert mask[int(cy // 4), int(cx // 4)] == pytest.approx(1.0)
        side = {"large": 18, "small": 11}[obj.size]
        area = np.pi * side**2 / 4 if obj.shape == "circle" else side**2
        assert mask.sum().item() * 16 == pytest.approx(area, rel=0.05)


def _maps(profile, owners: torch.Tensor, masks: torch.Tensor) -> list[torch.Tensor]:
    """(1, 64, T) attention at 8x8: each owned token's map is ``profile(its object's cover)``,
    the start token takes the rest."""
    cover = torch.nn.functional.adaptive_avg_pool2d(masks, 8).flatten(2)[0]  # (K, 64)
    probs = torch.zeros(1, 64, owners.shape[1])
    for t, owner in enumerate(owners[0].tolist()):
        if owner >= 0:
            probs[0, :, t] = 0.1 * profile(cover[owner])
    probs[0, :, 0] = 1 - probs.sum(-1)[0]
    return [probs]


def test_the_loss_is_lower_when_words_look_at_their_objects():
    owners = token_owners(caption_words(SCENE))[None]
    masks = scene_masks(SCENE)[None]
    grounded = grounding_losses(_maps(lambda c: c**4, owners, masks), owners, masks)
    stray = grounding_losses(_maps(lambda c: 1 - c, owners, masks), owners, masks)
    assert grounded[0] < 0.05 and stray[0] > 0.9
    assert grounded[1] < stray[1]
    nobody = torch.full_like(owners, -1)  # an empty caption supervises nothing
    zero = grounding_losses(_maps(lambda c: c, owners, masks), nobody, masks)
    assert [x.item() for x in zero] == [0, 0]


def test_layers_narrower_than_min_side_are_left_free():
    owners = token_owners(caption_words(SCENE))[None]
    masks = scene_masks(SCENE)[None]
    sharp_8x8 = _maps(lambda c: c**4, owners, masks)[0]
    uniform_4x4 = torch.full((1, 16, owners.shape[1]), 1 / owners.shape[1])
    maps = [sharp_8x8, uniform_4x4]
    only_8x8 = grounding_losses(maps, owners, masks, min_side=8)
    assert [x.item() for x in only_8x8] == [
        x.item() for x in grounding_losses(maps[:1], owners, masks)
    ]
    assert grounding_losses(maps, owners, masks)[0] > only_8x8[0] + 0.1
    with pytest.raises(ValueError, match="16 locations wide"):
        grounding_losses(maps, owners, masks, min_side=16)


def test_samples_below_the_lowest_grounded_timestep_are_left_free():
    owners = token_owners(caption_words(SCENE))[None].repeat(2, 1)
    masks = scene_masks(SCENE)[None].repeat(2, 1, 1, 1)
    # sample 0 looks away from its objects, sample 1 at them
    maps = [
        torch.cat(
            [_maps(lambda c: 1 - c, owners, masks)[0], _maps(lambda c: c**4, owners, masks)[0]]
        )
    ]
    t = torch.tensor([100, 800])
    both = grounding_losses(maps, owners_from_timestep(owners, t, 0), masks)[0]
    high_noise = grounding_losses(maps, owners_from_timestep(owners, t, 600), masks)[0]
    assert high_noise < 0.05 < both
    assert (owners_from_timestep(owners, t, 600)[1] == owners[1]).all()
    assert grounding_losses(maps, owners_from_timestep(owners, t, 900), masks)[0] == 0


def test_grounding_processor_changes_nothing_but_records_every_cross_attention():
    from shapes_lab.models import Arch, build_unet
    from tests.support.shapes_arch import TINY_ARCH

    torch.manual_seed(0)
    unet = build_unet(Arch.from_dict(json.loads(TINY_ARCH)))
    args = (torch.randn(2, 4, 16, 16), torch.tensor([10, 900]), torch.randn(2, 77, 16))
    with torch.no_grad():
        plain = unet(*args).sample
        store = install_grounding(unet)
        grounded = unet(*args).sample
    torch.testing.assert_close(grounded, plain, rtol=1e-4, atol=1e-5)
    n_cross = sum(isinstance(p, GroundingProcessor) for p in unet.attn_processors.values())
    assert n_cross == sum(name.endswith("attn2.processor") for name in unet.attn_processors) > 1
    assert len(store.maps) == n_cross
    assert {m.shape[1] for m in store.maps} == {64, 16}  # 8x8 and 4x4
    for m in store.maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(m.shape[:2]))


def test_self_grounding_rewards_attention_that_stays_in_its_region():
    masks = scene_masks(SCENE)[None]
    regions = scene_regions(masks)[0]
    assert set(regions.tolist()) == {0, 1, 3}  # both objects and the background
    same = (regions[:, None] == regions[None, :]).float()
    coherent = same / same.sum(-1, keepdim=True)
    uniform = torch.full_like(coherent, 1 / coherent.shape[-1])
    assert self_grounding_loss([coherent[None]], masks) < 1e-6
    # uniform attention leaves most of an object's attention outside it
    assert self_grounding_loss([uniform[None]], masks) > 0.3
    with pytest.raises(ValueError, match="no self-attention layer"):
        self_grounding_loss([], masks)


def test_self_grounding_processor_records_only_the_latent_resolution_layers():
    from shapes_lab.models import Arch, build_unet
    from tests.support.shapes_arch import CROSS_ATTENTION_AT_16, TINY_ARCH

    torch.manual_seed(0)
    unet = build_unet(Arch.from_dict({**json.loads(TINY_ARCH), **CROSS_ATTENTION_AT_16}))
    args = (torch.randn(2, 4, 16, 16), torch.tensor([10, 900]), torch.randn(2, 77, 16))
    with torch.no_grad():
        plain = unet(*args).sample
        store = install_grounding(unet, self_attention=True)
        grounded = unet(*args).sample
    torch.testing.assert_close(grounded, plain, rtol=1e-4, atol=1e-5)
    assert len(store.self_maps) >= 2
    assert {m.shape[1:] for m in store.self_maps} == {(256, 256)}
    assert {m.shape[1] for m in store.maps} == {256, 64, 16}  # the mid block at 4x4
