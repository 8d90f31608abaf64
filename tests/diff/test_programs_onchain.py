"""Real compiled programs replayed through MIPS.sol: every one of the first 2,000 steps, then a
seeded sample of later steps reached with the fast executor, each checked against the reference."""

import random
from pathlib import Path

import pytest

from opml.vm.elf import load_elf
from opml.vm.fast import Trace
from opml.vm.state import encode_state, state_hash
from opml.vm.step import step
from opml.vm.witness import encode_step_calldata, step_witness

BUILD = Path(__file__).parents[2] / "mips-toolchain" / "build"
PROGRAMS = sorted(p.stem for p in (BUILD.parent / "tests").glob("*.c"))
PREFIX_STEPS = 2_000
SAMPLED_STEPS = 40


def onchain_post_hash(provider, mips, state_data: bytes, proof: bytes) -> bytes:
    """MIPS.step's return value by eth_call (no transaction: this replays thousands of steps)."""
    result = provider.web3.eth.call({"to": mips.address, "data": encode_step_calldata(state_data, proof)})
    return bytes(result)[:32]


def check_next_step(provider, mips, state, where: str) -> None:
    """Step ``state`` in place with the reference VM, and check MIPS.sol agrees on that step."""
    witness = step_witness(state)
    step(state)
    expected = state_hash(encode_state(state))
    assert onchain_post_hash(provider, mips, witness.state_data, witness.proof) == expected, where


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_replays_onchain(name, mips, chain):
    provider = chain.provider
    state = load_elf(BUILD / name)
    state.stdout = state.stderr = None
    trace = Trace(state.copy())

    while state.step < PREFIX_STEPS and not state.exited:
        check_next_step(provider, mips, state, f"{name} step {state.step}")

    final_step = trace.final_step
    if final_step <= PREFIX_STEPS:
        return
    rng = random.Random(f"replay-{name}")
    for n in sorted(
        rng.sample(range(PREFIX_STEPS, final_step), min(SAMPLED_STEPS, final_step - PREFIX_STEPS))
    ):
        sampled = trace.state_at(n)
        sampled.stdout = sampled.stderr = None
        check_next_step(provider, mips, sampled, f"{name} step {n}")
