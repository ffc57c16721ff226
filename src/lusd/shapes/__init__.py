"""The embedded shapes world: renderer, captions, oracle and the shipped tiny SD model."""

from __future__ import annotations

from pathlib import Path

#: The shipped diffusers-format model folder (trained by `lusd lab train-shapes`).
SHAPES_MODEL_DIR: Path = Path(__file__).parent / "model"
#: Example scenes for the web app and docs.
EXAMPLES_DIR: Path = Path(__file__).parent / "examples"

__all__ = ["EXAMPLES_DIR", "SHAPES_MODEL_DIR"]
