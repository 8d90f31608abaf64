"""Replays every stored differential fixture: regressions in fixtures/, fresh failures in failures/."""

import pytest

from harness import FAILURES, FIXTURES, assert_same_step, load_fixture

PATHS = sorted(FIXTURES.glob("*.json")) + sorted(FAILURES.glob("*.json"))


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_replay_fixture(path, mips, deployer):
    assert_same_step(mips, deployer, load_fixture(path), path.stem)
