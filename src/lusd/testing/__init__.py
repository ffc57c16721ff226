"""Helpers for lusd's tests and benchmarks; lusd itself never imports them.

* :mod:`lusd.testing.tiny`: tiny random-weight Stable Diffusion components in the exact SD
  layouts (seeded), and a diffusers folder of them: a real model in a fraction of a second.
* :mod:`lusd.testing.bad_inputs`: the bad-input sweep, malformed inputs for every way into
  lusd and what must happen (``tests/cli/test_bad_inputs.py``, ``bench/bad_inputs.py``).
"""
