"""The seeded CI subset of bench/diff_volume.py: the same random single-step states (every instruction
form, oracle system calls included) through the reference VM and MIPS.sol in revm; the bench runs a
million of them."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

from opml.errors import OpmlError
from opml.oracle import PreimageStore
from opml.vm.preimage import OracleView
from opml.vm.state import encode_state, state_hash
from opml.vm.step import step
from opml.vm.witness import step_witness

BENCH = Path(__file__).resolve().parents[2] / "bench" / "diff_volume.py"
STATES_PER_FORM = 8


def _bench():
    spec = importlib.util.spec_from_file_location("diff_volume", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_random_states_of_every_form_agree(revm, tmp_path):
    bench = _bench()
    rng = random.Random(20261206)
    store = PreimageStore(tmp_path)
    keys = []
    for size in bench.PREIMAGE_SIZES:
        preimage = rng.randbytes(size)
        keys.append(store.put_keccak(preimage))
        for part in range(0, max(size, 1), 32):
            revm.oracle.call(
                "loadKeccak256PreimagePart(uint256,bytes)", ["uint256", "bytes"], [part, preimage]
            )
    oracle = OracleView(store, bench.CALLER, bench.CONTEXT)
    stepped = 0
    for name in sorted(bench.FORMS):
        for _ in range(STATES_PER_FORM):
            state = bench.random_state(rng, name, keys)
            witness = step_witness(state)
            post = state.copy()
            try:
                step(post, oracle)
            except OpmlError as err:  # then the contract must refuse the state too
                raise AssertionError(f"{name}: the reference refused a generated state ({err})") from None
            got = bench.evm_step(revm.mips, witness.state_data, witness.proof)
            assert got == state_hash(encode_state(post)), f"{name}: {witness.state_data.hex()}"
            stepped += 1
    assert stepped == STATES_PER_FORM * len(bench.FORMS)
