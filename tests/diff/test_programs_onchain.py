"""Real compiled programs replayed through MIPS.sol: every one of the first 2,000 steps, then a
seeded sample of later steps reached with the fast executor, each checked against the reference.

The volume runs in the in-process revm (``opml.chain.revm``, the bytecode ape compiled); the first
``NODE_PREFIX_STEPS`` steps and every ``NODE_SAMPLE_EVERY``-th sampled step also run on ape's node
(py-evm, or anvil with ``--network ethereum:local:foundry``), which must give the same post-states.
"""

import random
from pathlib import Path

import pytest
from _ci import SLOW

from opml.vm.elf import load_elf
from opml.vm.fast import Trace
from opml.vm.state import encode_state, state_hash
from opml.vm.step import step
from opml.vm.witness import encode_step_calldata, step_witness

BUILD = Path(__file__).parents[2] / "mips-toolchain" / "build"
PROGRAMS = sorted(p.stem for p in (BUILD.parent / "tests").glob("*.c"))
PREFIX_STEPS = 2_000
SAMPLED_STEPS = 40
NODE_PREFIX_STEPS = 200
NODE_SAMPLE_EVERY = 4
# `make test` replays these (every load/store width, lwl/lwr/swl/swr, ll/sc, the ML kernels' multiply-
# accumulates, the keccak ALU mix, every trap); the other programs repeat those forms at more steps
# and run in the slow tier (tests/_ci.py).
FAST = {"keccak_vectors", "unaligned", "llsc", "ml_kernels"}


def _params(names) -> list:
    return [pytest.param(n, marks=() if n in FAST or n.startswith("trap_") else SLOW) for n in names]


def node_post_hash(provider, mips, calldata: bytes) -> bytes:
    """MIPS.step's return value by eth_call on ape's node (no transaction)."""
    return bytes(provider.web3.eth.call({"to": mips.address, "data": calldata}))[:32]


def check_next_step(provider, mips, revm, state, where: str, on_node: bool) -> None:
    """Step ``state`` in place with the reference VM, and check MIPS.sol agrees on that step in revm
    (and on ape's node when ``on_node``)."""
    witness = step_witness(state)
    step(state)
    expected = state_hash(encode_state(state))
    calldata = encode_step_calldata(witness.state_data, witness.proof)
    assert revm.evm.call(revm.mips.address, calldata)[:32] == expected, f"{where} (revm)"
    if on_node:
        assert node_post_hash(provider, mips, calldata) == expected, f"{where} (ape's node)"


@pytest.mark.parametrize("name", _params(PROGRAMS))
def test_program_replays_onchain(name, mips, revm, chain):
    provider = chain.provider
    state = load_elf(BUILD / name)
    state.stdout = state.stderr = None
    trace = Trace(state.copy())

    while state.step < PREFIX_STEPS and not state.exited:
        on_node = state.step < NODE_PREFIX_STEPS
        check_next_step(provider, mips, revm, state, f"{name} step {state.step}", on_node)

    final_step = trace.final_step
    if final_step <= PREFIX_STEPS:
        return
    rng = random.Random(f"replay-{name}")
    later = range(PREFIX_STEPS, final_step)
    sample = sorted(rng.sample(later, min(SAMPLED_STEPS, len(later))))
    for i, n in enumerate(sample):
        sampled = trace.state_at(n)
        sampled.stdout = sampled.stderr = None
        check_next_step(provider, mips, revm, sampled, f"{name} step {n}", i % NODE_SAMPLE_EVERY == 0)
