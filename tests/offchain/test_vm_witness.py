"""Witnesses (§3.3, §3.4): what step_witness sends is exactly what the verifier consumes."""

import eth_abi
import pytest
import sha3
from _toolchain import plain_program_params

from opml.hashing import ZERO_HASHES
from opml.vm.asm import encode, load_program
from opml.vm.elf import load_elf
from opml.vm.errors import (
    InvalidMemoryProofError,
    InvalidProofError,
    InvalidProofLengthError,
    InvalidStateError,
    InvalidZeroMaskError,
)
from opml.vm.memory import Memory
from opml.vm.state import VMState, encode_state, state_hash
from opml.vm.step import step
from opml.vm.witness import (
    apply_step_proof,
    decode_memory_proof,
    encode_memory_proof,
    encode_step_calldata,
    step_witness,
    verify_memory_proof,
)

BASE = 0x00400000
FULL_PROOF_HEADER = 36


def program(*insns, regs=None, data=None) -> VMState:
    state = load_program([encode(*insn) for insn in insns], BASE)
    for reg, value in (regs or {}).items():
        state.registers[reg] = value
    for addr, word in (data or {}).items():
        state.memory.write_u32(addr, word)
    return state


def check_step(state: VMState) -> bytes:
    """Assert that the verifier, fed the witness, reaches the reference post-state; return the proof."""
    witness = step_witness(state)
    post = apply_step_proof(witness.state_data, witness.proof)
    step(state)
    assert post == encode_state(state)
    return witness.proof


def proof_parts(proof: bytes) -> tuple[bytes, bytes]:
    """Split into (instruction proof, data proof)."""
    _, _, end = decode_memory_proof(proof, 0, 27)
    return proof[:end], proof[end:]


def test_empty_memory_proof_is_all_zero_mask():
    proof = encode_memory_proof(Memory(), 12345)
    assert proof == bytes(32) + (2**27 - 1).to_bytes(4, "big")
    assert verify_memory_proof(ZERO_HASHES[27], 12345, proof) == bytes(32)


def _keccak(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()


def _subtree_root(local_index: int, leaf: bytes, levels: int) -> bytes:
    """By hand (§3.1): the root of a ``levels``-high subtree whose only non-zero leaf is ``leaf``."""
    zero, node = bytes(32), leaf
    for level in range(levels):
        node = _keccak(zero + node) if local_index >> level & 1 else _keccak(node + zero)
        zero = _keccak(zero + zero)
    return node


def test_memory_proof_layout_and_verification():
    memory = Memory()
    memory.write_u32(0x1000, 0xDEADBEEF)  # leaf 0x80
    memory.write_u32(0x1020, 1)  # leaf 0x81: the level-0 sibling
    memory.write_u32(0x7FFF0000, 2)  # leaf 0x3FFF800: paths meet at level 26, sibling at 25
    proof = encode_memory_proof(memory, 0x80)
    leaf, mask = proof[:32], int.from_bytes(proof[32:36], "big")
    assert leaf == bytes.fromhex("efbeadde") + bytes(28)
    assert mask == (2**27 - 1) & ~(1 << 0) & ~(1 << 25)
    assert len(proof) == FULL_PROOF_HEADER + 2 * 32
    assert proof[36:68] == b"\x01" + bytes(31)  # leaf 0x81 itself
    # level 25: the node (25, 1), the subtree holding only leaf 0x3FFF800 = 2^25 + 0x1FFF800
    assert proof[68:100] == _subtree_root(0x1FFF800, b"\x02" + bytes(31), 25)
    assert verify_memory_proof(memory.merkle_root(), 0x80, proof) == leaf
    with pytest.raises(InvalidMemoryProofError):
        verify_memory_proof(memory.merkle_root(), 0x81, proof)


def test_alu_step_sends_only_the_instruction_proof():
    state = program(("addiu", 2, 0, 5))
    proof = check_step(state)
    # The instruction 0x24020005 alone in memory: its leaf, and every sibling is Z[k] (all bits set).
    assert proof == bytes.fromhex("05000224") + bytes(28) + (2**27 - 1).to_bytes(4, "big")
    assert state.registers[2] == 5


def test_load_from_another_leaf_sends_a_shared_sibling_data_proof():
    data = 0x10000000
    state = program(("lw", 3, 0, 4), regs={4: data}, data={data: 7})
    instruction, data_proof = proof_parts(check_step(state))
    i, j = BASE >> 5, data >> 5
    levels = (i ^ j).bit_length() - 1
    assert levels == 23
    # Levels 0..22 only; below the meeting level j's siblings are all Z[k]: no sibling is sent.
    assert data_proof == b"\x07" + bytes(31) + (2**23 - 1).to_bytes(4, "big")
    # The instruction proof's one non-zero sibling is at level 23: the subtree that holds j.
    mask = (2**27 - 1) & ~(1 << 23)
    sibling = _subtree_root(j % 2**23, b"\x07" + bytes(31), 23)
    assert instruction == bytes.fromhex("0000838c") + bytes(28) + mask.to_bytes(4, "big") + sibling
    assert state.registers[3] == 7


@pytest.mark.parametrize("data_offset", [0x0, 0x20, 0x40, 0x1000, 0x400000, 0x7FB00000])
@pytest.mark.parametrize("insn", ["lw", "sw", "sb", "lbu", "swl", "swr", "lwl", "sc", "ll", "sh", "lh"])
def test_loads_and_stores_at_various_distances(insn, data_offset):
    """Same leaf (0), the adjacent leaf (L = 0), the same page, and far away; roots must agree."""
    addr = BASE + 0x10 + data_offset if data_offset else BASE + 0x10
    state = program((insn, 3, 0, 4), regs={3: 0xA1B2C3D4, 4: addr}, data={addr: 0x01020304, 0x10000000: 5})
    proof = check_step(state)
    assert (proof_parts(proof)[1] == b"") == (data_offset == 0)
    assert not state.exited


def test_store_into_the_instruction_leaf_updates_it():
    state = program(("sw", 3, 4, 5), ("addiu", 2, 0, 1), regs={3: encode("addiu", 2, 0, 42), 5: BASE})
    assert proof_parts(check_step(state))[1] == b""
    check_step(state)
    assert state.registers[2] == 42  # the overwritten instruction ran


def test_load_into_zero_register_still_needs_its_data_proof():
    state = program(("lw", 0, 0, 4), regs={4: 0x10000000})
    assert proof_parts(check_step(state))[1] == bytes(32) + (2**23 - 1).to_bytes(4, "big")
    assert state.registers[0] == 0 and state.pc == BASE + 4


def test_misaligned_access_sends_no_data_proof():
    state = program(("lw", 3, 2, 4), regs={4: 0x10000000})
    assert proof_parts(check_step(state))[1] == b""
    assert state.exited and state.exit_code == 135


def test_panics_and_exited_states():
    state = program(("addiu", 2, 0, 1))
    state.pc, state.next_pc = BASE + 1, BASE + 5
    assert check_step(state) == b""  # misaligned pc: panics before the instruction proof
    assert state.exited
    witness = step_witness(state)
    assert witness.proof == b""
    assert apply_step_proof(witness.state_data, b"") == witness.state_data  # nothing changes
    with pytest.raises(InvalidProofLengthError):
        apply_step_proof(witness.state_data, b"\x00")
    unknown = load_program([0xFFFFFFFF], BASE)
    assert proof_parts(check_step(unknown))[1] == b""  # SIGILL after the instruction proof


def test_write_syscall_needs_no_data_proof():
    state = program(("syscall",), regs={2: 4004, 4: 1, 5: 0x10000000, 6: 3})
    assert proof_parts(check_step(state))[1] == b""


def test_verifier_rejects_bad_length_mask_and_state():
    state = program(("lw", 3, 0, 4), regs={4: 0x10000000}, data={0x10000000: 1})
    witness = step_witness(state)
    with pytest.raises(InvalidProofLengthError):
        apply_step_proof(witness.state_data, witness.proof[:-1])
    with pytest.raises(InvalidProofLengthError):
        apply_step_proof(witness.state_data, witness.proof + b"\x00")
    with pytest.raises(InvalidProofLengthError):
        apply_step_proof(witness.state_data, b"")
    instruction, data_proof = proof_parts(witness.proof)
    bad_mask = data_proof[:32] + (1 << 23 | int.from_bytes(data_proof[32:36], "big")).to_bytes(4, "big")
    with pytest.raises(InvalidZeroMaskError):
        apply_step_proof(witness.state_data, instruction + bad_mask + data_proof[36:])
    with pytest.raises(InvalidZeroMaskError):
        apply_step_proof(witness.state_data, instruction[:32] + b"\x08" + instruction[33:])  # bit 27
    with pytest.raises(InvalidMemoryProofError):
        apply_step_proof(b"\x01" + witness.state_data[1:], witness.proof)
    with pytest.raises(InvalidStateError):
        apply_step_proof(witness.state_data[:-1], witness.proof)


@pytest.mark.parametrize(
    "insns, regs",
    [
        ([("lw", 3, 0, 4)], {4: 0x10000040}),
        ([("sw", 3, 0, 4)], {3: 0x12345678, 4: 0x7FFFEF00}),
        ([("swl", 3, 1, 4)], {3: 0x12345678, 4: BASE + 0x21}),  # adjacent leaf: L = 0
    ],
)
def test_flipping_any_witness_byte_is_caught(insns, regs):
    state = program(*insns, regs=regs, data={0x10000040: 0xCAFE, BASE + 0x1000: 1})
    witness = step_witness(state)
    honest = state_hash(apply_step_proof(witness.state_data, witness.proof))
    for k in range(len(witness.proof)):
        tampered = bytearray(witness.proof)
        tampered[k] ^= 0xFF
        try:
            post = apply_step_proof(witness.state_data, bytes(tampered))
        except InvalidProofError:
            continue
        assert state_hash(post) != honest, f"flipping proof byte {k} went unnoticed"


def test_step_calldata_is_the_abi_encoding():
    state = program(("addiu", 2, 0, 5))
    witness = step_witness(state)
    calldata = encode_step_calldata(witness.state_data, witness.proof)
    assert calldata[:4] == sha3.keccak_256(b"step(bytes,bytes)").digest()[:4]
    assert eth_abi.decode(["bytes", "bytes"], calldata[4:]) == (witness.state_data, witness.proof)


def test_witnesses_over_a_short_program():
    """Every step of a loop that loads and stores across pages round-trips through the verifier."""
    loop = [
        ("lui", 4, 0x1000),  # $4 = 0x10000000
        ("addiu", 5, 0, 40),  # counter
        ("lw", 6, 0, 4),
        ("addu", 6, 6, 5),
        ("sw", 6, 0x1000, 4),
        ("sb", 5, 3, 29),
        ("addiu", 4, 4, 0x24),
        ("addiu", 5, 5, -1),
        ("bne", 5, 0, -7),
        ("sll", 0, 0, 0),  # delay slot
        ("addiu", 2, 0, 4001),
        ("addu", 4, 0, 0),  # exit code 0
        ("syscall",),
    ]
    state = program(*loop, regs={29: 0x7FFFF000})
    while not state.exited:
        check_step(state)
    assert state.exit_code == 0 and state.step > 200


@pytest.mark.parametrize("path", plain_program_params())
def test_witnesses_over_toolchain_programs(path):
    """The first 1500 steps (or all, with the final exited step) of each program round-trip."""
    state = load_elf(path)
    for _ in range(1500):
        exited = state.exited
        check_step(state)
        if exited:
            break
