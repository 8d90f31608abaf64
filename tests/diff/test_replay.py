"""Replays every stored differential fixture: regressions in fixtures/, fresh failures in failures/."""

import pytest
from harness import FAILURES, FIXTURES, assert_same_oracle_step, assert_same_step, load_fixture
from strategies import OracleCase

from opml.oracle.client import OracleClient
from opml.oracle.store import PreimageStore

PATHS = sorted(FIXTURES.glob("*.json")) + sorted(FAILURES.glob("*.json"))


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_replay_fixture(path, mips, oracle, deployer, tmp_path):
    replay = load_fixture(path)
    if isinstance(replay, OracleCase):
        store = PreimageStore(tmp_path)
        assert_same_oracle_step(
            mips, deployer, replay, store, OracleClient(oracle, store, deployer), path.stem
        )
    else:
        assert_same_step(mips, deployer, replay, path.stem)
