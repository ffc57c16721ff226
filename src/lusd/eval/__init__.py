"""Edit-quality metrics of LUSD_SPEC: pixel distances, CLIP scores, CLIP-AUC, shapes oracle."""

from __future__ import annotations

from lusd.eval.metrics import clip_auc, pixel_metrics, simpson, success_curve, success_rate

__all__ = ["clip_auc", "pixel_metrics", "simpson", "success_curve", "success_rate"]
