"""Helpers the tests share (not tests): import them as ``tests.support.<module>``.

The tiny random-weight SD model itself is ``lusd.testing.tiny`` (benchmarks use it too).
``batch_fakes.py`` and ``kill_points.py`` also run as scripts (the kill tests); Ray
workers import ``tests.support.batch_fakes`` with the repository root on PYTHONPATH.
"""
