"""The score-distillation loop: lanes of latents moved by an update rule (:mod:`lusd.rules`).

A *lane* is one latent being optimised with its own source, prompts, random generator
and region: the candidates of one edit, or several edits of a catalogue. Every lane of a
run shares each UNet pass; a lane's result equals the result of running it alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from lusd.config import EditConfig
from lusd.errors import ConfigError

#: predict_eps(latents, timestep, embeddings) -> eps, for a batch; no autograd unless the
#: rule needs it. The embeddings are a tensor (SD) or an object with a ``cat`` that stacks a
#: batch (SDXL's ``lusd.families.XLConditioning``); the timestep has one entry per row.
EpsPredictor = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


def concat_embeddings(items: list[Any]) -> Any:
    """Stack prompt embeddings along the batch: ``torch.cat``, or the items' own ``cat``."""
    first = items[0]
    return torch.cat(items) if isinstance(first, torch.Tensor) else type(first).cat(items)


def guided(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance eps(x, empty) + w (eps(x, y) - eps(x, empty))."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


@dataclass
class DistillStats:
    iterations: int = 0
    unet_calls: int = 0
    filter_retries: int = 0
    seconds: float = 0.0


@dataclass
class DistillResult:
    latents: torch.Tensor
    mask: torch.Tensor | None
    stats: DistillStats = field(default_factory=DistillStats)


@dataclass
class Conditioning:
    """Text embeddings of the prompts (each of shape (1, tokens, dim), or the model family's
    conditioning object); ``empty`` (the unconditional prompt) is needed by the rules that
    guide (``needs_empty``) only."""

    source: Any
    target: Any
    empty: Any = None


@dataclass
class Lane:
    """One latent to optimise. ``region`` (1, 1, h, w) in [0, 1] at latent size restricts
    every update to it; ``use_mask`` lets the rule read this lane's attention."""

    source: torch.Tensor
    cond: Conditioning
    generator: torch.Generator | None = None
    region: torch.Tensor | None = None
    use_mask: bool = False


class Distiller:
    """Runs ``config.num_steps`` accepted iterations of the config's update rule over lanes.

    ``capture(rows, lanes)`` asks the attention store to record batch rows ``rows`` (the
    target rows of ``lanes``) in the next UNet pass, none when empty; ``read_masks()``
    returns one normalised attention map per recorded row. ``unet`` is there for rules
    that read the model's layers (CDS).
    """

    def __init__(
        self,
        predict_eps: EpsPredictor,
        alphas_cumprod: torch.Tensor,
        config: EditConfig,
        generator: torch.Generator | None = None,
        capture: Callable[[list[int], list[int]], None] = lambda rows, lanes: None,
        read_masks: Callable[[], list[torch.Tensor] | None] = lambda: None,
        unet: Any = None,
    ):
        if config.t_max > len(alphas_cumprod):
            raise ConfigError(
                f"t_max must be at most {len(alphas_cumprod)} (the model's training timesteps), "
                f"got {config.t_max}"
            )
        self.predict_eps = predict_eps
        self.alphas_cumprod = alphas_cumprod.to(torch.float32)
        self.config = config
        self.generator = generator
        self.capture = capture
        self.read_masks = read_masks
        self.unet = unet
        self.lanes: list[Lane] = []
        self.stats: list[DistillStats] = []

    # ---- what rules use ------------------------------------------------------------------------

    def sample(self, lanes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A timestep in [t_min, t_max) and a noise for each of ``lanes``, each from its
        lane's own generator: (t (n,), noise (n, C, h, w))."""
        steps, noises = [], []
        for i in lanes:
            lane = self.lanes[i]
            like = lane.source
            steps.append(
                torch.randint(self.config.t_min, self.config.t_max, (1,), generator=lane.generator)
            )
            noises.append(
                randn_tensor(like.shape, generator=lane.generator, device=like.device,
                             dtype=like.dtype)
            )  # fmt: skip
        return torch.cat(steps), torch.cat(noises)

    def noised(self, latents: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """sqrt(abar_t) z + sqrt(1 - abar_t) eps, row by row."""
        abar = self.alphas_cumprod[t].to(latents.device).view(-1, 1, 1, 1)
        return abar.sqrt() * latents + (1 - abar).sqrt() * noise

    def eps(
        self,
        inputs: list[torch.Tensor],
        t: torch.Tensor,
        prompts: list[str],
        lanes: Sequence[int],
    ) -> list[torch.Tensor]:
        """One UNet pass: branch ``k`` is ``inputs[k]`` (one row per lane of ``lanes``) under
        the lanes' ``prompts[k]`` ("source", "target" or "empty"). Rows are branch-major:
        branch k, lane j is row ``k * len(lanes) + j``. Returns each branch's eps."""
        batch = torch.cat(inputs)
        timestep = t.to(batch.device).repeat(len(inputs))
        embeddings = [getattr(self.lanes[i].cond, p) for p in prompts for i in lanes]
        for i in lanes:
            self.stats[i].unet_calls += 1
        return list(
            self.predict_eps(batch, timestep, concat_embeddings(embeddings))
            .float()
            .chunk(len(inputs))
        )

    def region(self, lane: int) -> torch.Tensor | None:
        return self.lanes[lane].region

    # ---- the loop --------------------------------------------------------------------------------

    def run(
        self,
        source_latents: torch.Tensor,
        cond: Conditioning,
        use_mask: bool,
        on_step: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        region: torch.Tensor | None = None,
    ) -> DistillResult:
        """One lane with the Distiller's generator (see :meth:`run_lanes`)."""
        lane = Lane(source_latents, cond, self.generator, region, use_mask)
        return self.run_lanes([lane], on_step, should_stop)[0]

    def run_lanes(
        self,
        lanes: list[Lane],
        on_step: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> list[DistillResult]:
        """Optimise every lane together, one batched UNet pass per rule pass."""
        from lusd.rules import rule_for

        cfg = self.config
        self.lanes = [_prepared(lane) for lane in lanes]
        self.stats = [DistillStats() for _ in lanes]
        rule = rule_for(cfg)
        start = time.perf_counter()
        latents = torch.cat([lane.source for lane in self.lanes])
        rule.start(self)
        for step in range(cfg.num_steps):
            if should_stop():
                break
            latents = rule.step(self, step, latents)
            for stats in self.stats:
                stats.iterations += 1
            if on_step is not None:
                on_step(step + 1, cfg.num_steps)
        seconds = time.perf_counter() - start
        results = []
        for i, stats in enumerate(self.stats):
            stats.seconds = seconds
            results.append(DistillResult(latents[i : i + 1], rule.mask(i), stats))
        return results


def _prepared(lane: Lane) -> Lane:
    source = lane.source.float()
    region = lane.region
    if region is not None:
        region = region.to(source.device, torch.float32)
    return Lane(source, lane.cond, lane.generator, region, lane.use_mask)
