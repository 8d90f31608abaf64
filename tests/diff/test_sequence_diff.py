"""Sequence-level differential: random multi-step programs run by the reference VM, the fast executor
and `MIPS.sol` (in revm) at every step, so that a state carried wrongly from one step to the next is
caught, not only a wrong single step.

A program (seeded) is a loop over a random body: ALU and multiply forms, loads and stores of every
width (aligned and unaligned) into two shared data pages, forward branches with an instruction in
their delay slot, and oracle reads (`preimage_select` of a keccak key in memory, then `preimage_read`
of random offsets and counts). At every step the contract's post-state hash must equal the reference's,
and the fast executor, run alongside, must hold the same registers and scalars; the memory roots are
compared every 16 steps and at the end. `OPML_SEQUENCE_PROGRAMS` sets the number of programs (default
and CI: 40 seeded programs, about 10 000 steps in all; set it higher for a long run).
"""

from __future__ import annotations

import os
import random

import pytest
from strategies import i_type, r_type, special2

from opml.oracle import PreimageStore
from opml.vm import fast_core as K
from opml.vm.asm import encode
from opml.vm.fast import FastVM
from opml.vm.memory import Memory
from opml.vm.preimage import OracleView
from opml.vm.state import VMState, encode_state, state_hash
from opml.vm.step import step
from opml.vm.witness import step_witness

PROGRAMS = int(os.environ.get("OPML_SEQUENCE_PROGRAMS", "40"))
CODE, DATA = 0x00400000, 0x10000000
KEY_AT = DATA + 0x800  # the preimage key lies here (one leaf)
BASE, LOOP = 16, 17  # $s0 = DATA, $s1 = loop counter
TEMPS = list(range(8, 16))  # $t0 … $t7
V0, A0, A1, A2 = 2, 4, 5, 6
CALLER, CONTEXT = bytes(20), bytes(32)

ALU_R = [0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x04, 0x06, 0x07, 0x0A, 0x0B]  # + sllv…, movz/movn
SHIFTS = [0x00, 0x02, 0x03]
ALU_I = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E]
LOADS = {0x20: 1, 0x24: 1, 0x21: 2, 0x25: 2, 0x23: 4, 0x22: 0, 0x26: 0}  # 0: lwl/lwr, any alignment
STORES = {0x28: 1, 0x29: 2, 0x2B: 4, 0x2A: 0, 0x2E: 0}


def _alu(rng: random.Random) -> int:
    rd, rs, rt = rng.choice(TEMPS), rng.choice(TEMPS), rng.choice(TEMPS)
    kind = rng.randrange(6)
    if kind == 0:
        return r_type(rng.choice(ALU_R), rs=rs, rt=rt, rd=rd)
    if kind == 1:
        return r_type(rng.choice(SHIFTS), rt=rt, rd=rd, sa=rng.randrange(32))
    if kind == 2:
        return i_type(rng.choice(ALU_I), rs, rt, rng.randrange(1 << 16))
    if kind == 3:
        return special2(rng.choice([0x02, 0x20, 0x21]), rs, rt, rd)  # mul, clz, clo
    if kind == 4:
        return r_type(rng.choice([0x18, 0x19]), rs=rs, rt=rt)  # mult / multu
    return r_type(rng.choice([0x10, 0x12]), rd=rd)  # mfhi / mflo


def _memory(rng: random.Random) -> int:
    """A load or store at DATA + offset within the two data pages (offset < 8 KiB)."""
    table = LOADS if rng.random() < 0.5 else STORES
    opcode = rng.choice(list(table))
    size = table[opcode]
    offset = rng.randrange(0, 0x2000 - 4)
    if size:
        offset -= offset % size
    return i_type(opcode, BASE, rng.choice(TEMPS), offset)


def _oracle_read(rng: random.Random) -> list[int]:
    """preimage_select(KEY_AT), then preimage_read(offset, buf, count)."""
    buf = DATA + 0x1000 + rng.randrange(0, 0x400)
    return [
        encode("lui", A0, KEY_AT >> 16),
        encode("ori", A0, A0, KEY_AT & 0xFFFF),
        encode("addiu", V0, 0, 9001),
        encode("syscall"),
        encode("addiu", A0, 0, rng.randrange(0, 120)),
        encode("lui", A1, buf >> 16),
        encode("ori", A1, A1, buf & 0xFFFF),
        encode("addiu", A2, 0, rng.randrange(0, 40)),
        encode("addiu", V0, 0, 9003),
        encode("syscall"),
    ]


def random_program(seed: int) -> tuple[VMState, bytes]:
    """A looping program and the preimage its oracle reads."""
    rng = random.Random(seed)
    preimage = rng.randbytes(rng.randrange(1, 100))
    words = [encode("lui", BASE, DATA >> 16), encode("addiu", LOOP, 0, rng.randrange(3, 6))]
    words += [encode("lui", t, rng.randrange(1 << 16)) for t in TEMPS]
    body_start = len(words)
    body_length = rng.randrange(30, 60)
    while len(words) - body_start < body_length:
        pick = rng.random()
        if pick < 0.45:
            words.append(_alu(rng))
        elif pick < 0.8:
            words.append(_memory(rng))
        elif pick < 0.93:  # beq/bne over one instruction, with an ALU op in its delay slot
            words += [
                i_type(rng.choice([4, 5]), rng.choice(TEMPS), rng.choice(TEMPS), 1),
                _alu(rng),
                _alu(rng),
            ]
        else:
            words += _oracle_read(rng)
    back = body_start - (len(words) + 2)
    words += [encode("addiu", LOOP, LOOP, 0xFFFF), i_type(5, LOOP, 0, back & 0xFFFF), _alu(rng)]
    words += [encode("addiu", A0, 0, 0), encode("addiu", V0, 0, 4246), encode("syscall")]
    memory = Memory()
    for k, word in enumerate(words):
        memory.write_u32(CODE + 4 * k, word)
    memory.write_bytes(DATA, rng.randbytes(0x2000))
    return VMState(memory=memory, pc=CODE, next_pc=CODE + 4, brk=0x10100000, heap=0x20000000), preimage


@pytest.mark.parametrize("seed", range(PROGRAMS))
def test_random_program_agrees_at_every_step(revm, tmp_path, seed):
    state, preimage = random_program(seed)
    store = PreimageStore(tmp_path)
    key = store.put_keccak(preimage)
    state.memory.write_bytes(KEY_AT, key)
    oracle = OracleView(store, CALLER, CONTEXT)
    for part in range(0, max(len(preimage), 1), 32):  # the contract's oracle holds every part
        revm.oracle.call("loadKeccak256PreimagePart(uint256,bytes)", ["uint256", "bytes"], [part, preimage])
    fast = FastVM.from_state(state, copy_memory=True, oracle=oracle)
    reference = state.copy()
    reference.stdout = reference.stderr = None
    while not reference.exited:
        witness = step_witness(reference)
        onchain = revm.mips.call("step(bytes,bytes)", ["bytes", "bytes"], [witness.state_data, witness.proof])
        step(reference, oracle)
        fast.run(reference.step)
        assert onchain == state_hash(encode_state(reference)), (
            f"seed {seed}: MIPS.sol at step {reference.step}"
        )
        assert [int(r) for r in fast.regs] == reference.registers, (
            f"seed {seed}: fast at step {reference.step}"
        )
        assert fast_scalars(fast) == reference_scalars(reference), (
            f"seed {seed}: fast at step {reference.step}"
        )
        if reference.step % 16 == 0:
            assert fast.to_state().memory.merkle_root() == reference.memory.merkle_root()
    assert reference.step > 100 and reference.exit_code == 0  # every loop iteration ran
    assert encode_state(fast.to_state()) == encode_state(reference)


def fast_scalars(vm: FastVM) -> tuple:
    st = vm.st
    fields = (
        K.ST_PC,
        K.ST_NPC,
        K.ST_LO,
        K.ST_HI,
        K.ST_BRK,
        K.ST_HEAP,
        K.ST_EXIT_CODE,
        K.ST_EXITED,
        K.ST_STEP,
    )
    return (*(int(st[f]) for f in fields), vm.preimage_key)


def reference_scalars(s: VMState) -> tuple:
    fields = (s.pc, s.next_pc, s.lo, s.hi, s.brk, s.heap, s.exit_code, int(s.exited), s.step)
    return (*fields, s.preimage_key)
