"""The differential gate: for every instruction form, random states stepped by the Python
reference VM and by MIPS.sol give the same post-state hash and the same encoded post-state."""

import pytest
from harness import assert_same_step
from hypothesis import given
from strategies import FORMS, states


@pytest.mark.parametrize("name", sorted(FORMS))
def test_step_matches_reference(name, mips, deployer):
    form = FORMS[name]

    @given(states(form))
    def check(state):
        assert_same_step(mips, deployer, state, name)

    check()
