"""Shared fixtures: a tiny random-weight SD-layout model saved through the real save path."""

from __future__ import annotations

import os

import pytest

# Before torch is imported: idle OpenMP threads sleep (see lusd/cli.py), so tests that
# run servers, Ray workers and subprocesses side by side do not starve each other.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from lusd.testing.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-sd") / "model")


@pytest.fixture(scope="session")
def tiny_vpred_model_dir(tmp_path_factory):
    from lusd.testing.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-sd-v") / "model", "v_prediction")


@pytest.fixture(scope="session")
def tiny_pipe(tiny_model_dir):
    from lusd.loading import load_pipeline

    return load_pipeline(str(tiny_model_dir))


@pytest.fixture(scope="session")
def noise_photo():
    """A 32x32 picture of random pixels: what the tiny random model edits in the tests."""
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8))
