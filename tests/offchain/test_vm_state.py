"""State encoding (§2.1), decoding checks, and the status byte of the state hash (§2.2)."""

import pytest
import sha3

from opml.hashing import ZERO_HASHES
from opml.vm.errors import InvalidStateError
from opml.vm.state import VMState, decode_state, encode_state, state_hash


def sample_state() -> VMState:
    state = VMState(
        preimage_key=bytes(range(32)),
        pc=0x00400010,
        next_pc=0x00400014,
        lo=0x11111111,
        hi=0x22222222,
        brk=0x00410000,
        heap=0x40002000,
        exit_code=0,
        exited=False,
        step=0x0102030405060708,
        registers=[0] + [0x1000 + r for r in range(1, 32)],
    )
    state.memory.write_u32(0x00400010, 0x24020FA1)
    return state


def _keccak(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()


def _root_of_one_leaf(index: int, leaf: bytes) -> bytes:
    """§3.1 by hand: the root of a memory whose only non-zero leaf is ``leaf`` at ``index``."""
    zero, node = bytes(32), leaf
    for level in range(27):
        node = _keccak(zero + node) if index >> level & 1 else _keccak(node + zero)
        zero = _keccak(zero + zero)
    return node


def test_layout_matches_the_spec_table():
    state = sample_state()
    data = encode_state(state)
    assert len(data) == 226
    # The word 0x24020FA1 at 0x00400010: leaf 0x20000, bytes 16..19, little-endian (§3.2).
    leaf = bytes(16) + bytes.fromhex("a10f0224") + bytes(12)
    assert data[0:32] == _root_of_one_leaf(0x00400010 >> 5, leaf)
    assert data[32:64] == bytes(range(32))
    assert data[64:68] == bytes.fromhex("00400010")  # big-endian
    assert data[68:72] == bytes.fromhex("00400014")
    assert data[72:76] == bytes.fromhex("11111111")
    assert data[76:80] == bytes.fromhex("22222222")
    assert data[80:84] == bytes.fromhex("00410000")
    assert data[84:88] == bytes.fromhex("40002000")
    assert data[88] == 0 and data[89] == 0
    assert data[90:98] == bytes.fromhex("0102030405060708")
    assert data[98:102] == bytes(4)
    assert data[102:106] == bytes.fromhex("00001001")
    assert data[222:226] == bytes.fromhex("0000101f")


def test_roundtrip():
    state = sample_state()
    decoded = decode_state(encode_state(state), state.memory)
    assert encode_state(decoded) == encode_state(state)
    assert (decoded.pc, decoded.next_pc, decoded.step, decoded.registers) == (
        state.pc,
        state.next_pc,
        state.step,
        state.registers,
    )
    assert decode_state(encode_state(VMState())).memory.merkle_root() == ZERO_HASHES[27]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d[:-1], "226 bytes"),
        (lambda d: d + b"\x00", "226 bytes"),
        (lambda d: d[:89] + b"\x02" + d[90:], "exited"),
        (lambda d: d[:101] + b"\x01" + d[102:], "registers"),
        (lambda d: b"\x01" + d[1:], "memRoot"),
    ],
)
def test_invalid_states_are_rejected(mutate, message):
    state = sample_state()
    with pytest.raises(InvalidStateError, match=message):
        decode_state(mutate(encode_state(state)), state.memory)


@pytest.mark.parametrize(
    "exited, exit_code, status",
    [(False, 0, 3), (False, 5, 3), (True, 0, 0), (True, 1, 1), (True, 2, 2), (True, 136, 2)],
)
def test_state_hash_status_byte(exited, exit_code, status):
    state = sample_state()
    state.exited, state.exit_code = exited, exit_code
    data = encode_state(state)
    digest = sha3.keccak_256(data).digest()
    assert state_hash(data) == bytes([status]) + digest[1:]


def test_copy_is_independent():
    state = sample_state()
    state.stdout += b"out"
    clone = state.copy()
    clone.registers[3] = 0
    clone.memory.write_u32(0x00400010, 0)
    clone.stdout += b"more"
    assert state.registers[3] == 0x1003
    assert state.memory.read_u32(0x00400010) == 0x24020FA1
    assert state.stdout == b"out"
    assert encode_state(state.copy()) == encode_state(state)


def test_step_counter_wraps_at_64_bits():
    from opml.vm.state import VMState, encode_state
    from opml.vm.step import step

    state = VMState(pc=0x1000, next_pc=0x1004, step=2**64 - 1)  # memory is zero: `sll $0,$0,0`, a nop
    step(state)
    assert state.step == 0 and (state.pc, state.next_pc) == (0x1004, 0x1008) and not state.exited
    data = encode_state(state)
    assert len(data) == 226 and data[90:98] == bytes(8)
