"""The bad-input sweep (lusd.testing.bad_inputs): every case handled, none crashing.

Each case runs the real CLI app (or the web app's editor) on one malformed input and
must end in one clear line or a correct output, with no traceback and no partial file.
"""

from __future__ import annotations

import pytest

from lusd.testing.bad_inputs import CASES, Ctx, Session, problems


@pytest.fixture(scope="module")
def session(tmp_path_factory, tiny_model_dir):
    return Session(tmp_path_factory.mktemp("bad-inputs"), tiny_model_dir)


def test_the_sweep_covers_every_way_in():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    commands = {c.command for c in CASES}
    assert commands == {"lusd edit", "lusd batch", "lusd eval", "lusd report", "web app"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_handled(case, session, tmp_path):
    outcomes = case.run(Ctx(session, tmp_path / "case"))
    found = problems(case, outcomes)
    assert not found, "\n".join(found)
