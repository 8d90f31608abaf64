"""The recorded witness is exactly what MIPS.sol consumes (vm-spec §3.4), over every instruction form.

``step_witness`` proves the leaves the reference step touches while it runs (``RecordingMemory``); no
other code decides which leaves a step reads. For random states of every form (oracle system calls
included) the contract in revm must accept the witness with the reference's post-state, and reject
it with ``InvalidProofLength`` when one byte is cut off or one is added: the contract reads every
byte of it and nothing more.
"""

from __future__ import annotations

import pytest
from harness import volume_run

from opml.chain.revm import RevmCallError
from opml.hashing import keccak256
from opml.vm.asm import encode, load_program
from opml.vm.errors import WitnessShapeError
from opml.vm.memory import Memory
from opml.vm.state import encode_state
from opml.vm.witness import RecordingMemory, step_witness

STATES_PER_FORM = 6
INVALID_PROOF_LENGTH = keccak256(b"InvalidProofLength()")[:4]


def _revert_data(mips, state_data: bytes, proof: bytes) -> bytes:
    with pytest.raises(RevmCallError) as raised:
        mips.call("step(bytes,bytes)", ["bytes", "bytes"], [state_data, proof])
    return raised.value.data


def test_the_recorded_witness_is_what_the_contract_consumes(revm, tmp_path):
    run = volume_run(revm, tmp_path, seed=20261207)
    bench, rng, keys, oracle = run.bench, run.rng, run.keys, run.oracle
    proofs_by_leaves: dict[int, int] = {}
    for name in sorted(bench.FORMS):
        for _ in range(STATES_PER_FORM):
            state = bench.random_state(rng, name, keys)
            before = (encode_state(state), {n: bytes(p) for n, p in state.memory.pages.items()})
            witness, want, got = bench.outcomes(state, oracle, revm.mips)
            assert (encode_state(state), {n: bytes(p) for n, p in state.memory.pages.items()}) == before
            assert want is not None and got == want, f"{name}: {witness.state_data.hex()}"
            proofs_by_leaves[len(witness.leaves)] = proofs_by_leaves.get(len(witness.leaves), 0) + 1
            if witness.proof:
                cut = _revert_data(revm.mips, witness.state_data, witness.proof[:-1])
                assert cut[:4] == INVALID_PROOF_LENGTH, name
            added = _revert_data(revm.mips, witness.state_data, witness.proof + b"\x00")
            assert added[:4] == INVALID_PROOF_LENGTH, name
    # The sample holds steps with no proof (exited), one leaf and two leaves.
    assert set(proofs_by_leaves) == {0, 1, 2}, proofs_by_leaves


def test_step_witness_leaves_memory_as_it_was():
    """A store to a page the state does not hold yet, and one to a page it holds: the recorder keeps
    the step's writes to itself, even when memory is at its page limit (an off-chain bound only)."""
    for target in (0x10000000, 0x00400010):
        state = load_program([encode("sw", 8, 0, 9)], 0x00400000)
        state.registers[8], state.registers[9] = 0xDEADBEEF, target
        state.memory.max_pages = len(state.memory.pages)
        root, pages = state.memory.merkle_root(), {n: bytes(p) for n, p in state.memory.pages.items()}
        witness = step_witness(state)
        assert state.memory.merkle_root() == root
        assert {n: bytes(p) for n, p in state.memory.pages.items()} == pages
        assert witness.leaves == tuple(dict.fromkeys((0x00400000 >> 5, target >> 5)))


@pytest.mark.parametrize("leaves", [(1, 2, 3), (1, 2, 1)], ids=["third-leaf", "back-to-the-first"])
def test_a_step_touching_more_than_two_leaves_has_no_witness(leaves):
    recorder = RecordingMemory(Memory())
    recorder.read_u32(32 * leaves[0])
    recorder.read_u32(32 * leaves[1])
    recorder.write_u32(32 * leaves[1] + 4, 7)  # the current leaf again: no new proof
    with pytest.raises(WitnessShapeError, match="one data leaf only"):
        recorder.read_u32(32 * leaves[2])
