"""Flip every bit of every byte of the witness, one at a time, on-chain and in the Python verifier.

The pre-state is fixed by the dispute, so a flipped *proof* bit must make ``step`` revert, with the
same named error from ``MIPS.sol`` and from ``apply_step_proof``: the proof must be consumed exactly
(vm-spec §3.4), so every proof bit matters. A flipped *stateData* bit is another pre-state: both sides
must agree on it, and it must not give the honest post-state. Every stateData byte is carried into the
post-state except the old value of a load's destination register, which the load overwrites; a flip
there still changes the pre-state hash (so the dispute game rejects the claim), and is the one
documented exception.
"""

import pytest
from _mips import (
    DATA_BASE,
    STACK_TOP,
    T0,
    T1,
    assert_every_bit_is_bound,
    i_type,
    make_state,
    raw_step_outcome,
    realistic_memory,
)

from opml.vm.witness import step_witness

REGISTERS_OFFSET = 98


CASES = {
    # lw $t1, -16($t0) from the stack: data proof far from the code leaf
    "load": (i_type(35, rs=T0, rt=T1, imm=0xFFF0), {T0: STACK_TOP - 48, T1: 0x55AA55AA}, T1),
    # sw $t1, 8($t0) into the data section
    "store": (i_type(43, rs=T0, rt=T1, imm=8), {T0: DATA_BASE + 0x200, T1: 0x01020304}, None),
    # swl: read-modify-write of a partial word
    "swl": (i_type(42, rs=T0, rt=T1, imm=1), {T0: DATA_BASE + 0x300, T1: 0xCAFEBABE}, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_bit_is_bound(mips, revm, case):
    insn, regs, overwritten = CASES[case]
    w = step_witness(make_state(insn, regs, memory=realistic_memory()))
    honest = raw_step_outcome(mips, w.state_data, w.proof)
    assert honest != "revert"
    skip = set()
    if overwritten is not None:
        skip = set(range(REGISTERS_OFFSET + 4 * overwritten, REGISTERS_OFFSET + 4 * overwritten + 4))
    assert_every_bit_is_bound(revm, mips, w, honest, skip)
