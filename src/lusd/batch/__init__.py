"""Manifest-driven, resumable batch editing: journal, local and Ray runners, HTML report."""

from __future__ import annotations

from lusd.batch.execute import LoadPipeline
from lusd.batch.jobs import JobSpec
from lusd.batch.manifest import ManifestRow, RowError, read_manifest
from lusd.batch.runner import BatchOptions, BatchSummary, run_batch

__all__ = [
    "BatchOptions",
    "BatchSummary",
    "JobSpec",
    "ManifestRow",
    "LoadPipeline",
    "RowError",
    "read_manifest",
    "run_batch",
]
