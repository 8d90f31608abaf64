"""Replays every stored differential fixture: regressions in fixtures/, fresh failures in failures/."""

import json

import pytest
from harness import (
    FAILURES,
    FIXTURES,
    assert_same_oracle_step,
    assert_same_step,
    load_fixture,
    python_step,
)
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
        if path.parent == FIXTURES:  # a kept regression: the reference must still give the fixed post-state
            expected = json.loads(path.read_text())["expected_post_state"]
            assert python_step(replay).post_state.hex() == expected, "the reference VM's answer changed"
        assert_same_step(mips, deployer, replay, path.stem)
