"""MIPS.sol's rejections (vm-spec §2.1, §3.3, §3.4, §8) and the exited-state rule (§4.1 step 2)."""

import sha3
from _mips import CODE_BASE, STACK_TOP, T0, T1, i_type, make_state, realistic_memory, revert_name

from opml.vm.state import encode_state, state_hash
from opml.vm.witness import step_witness


def _load_witness():
    state = make_state(i_type(35, rs=T0, rt=T1, imm=0), {T0: STACK_TOP - 64}, memory=realistic_memory())
    return step_witness(state)


def test_invalid_state(mips):
    w = step_witness(make_state(0))
    assert revert_name(mips, w.state_data[:-1], w.proof) == "InvalidState"
    assert revert_name(mips, w.state_data + b"\0", w.proof) == "InvalidState"
    assert revert_name(mips, b"", b"") == "InvalidState"
    bad = bytearray(w.state_data)
    bad[89] = 2  # exited
    assert revert_name(mips, bytes(bad), w.proof) == "InvalidState"
    bad = bytearray(w.state_data)
    bad[98 + 3] = 1  # $0
    assert revert_name(mips, bytes(bad), w.proof) == "InvalidState"


def test_exited_state_is_unchanged(mips, deployer):
    state = make_state(0, exited=True, exit_code=3)
    data = encode_state(state)
    assert bytes(mips.step.call(data, b"")) == state_hash(data)
    receipt = mips.step(data, b"", sender=deployer)
    assert list(receipt.decode_logs(mips.StepExecuted)) == []  # no step, no event
    assert revert_name(mips, data, b"\0") == "InvalidProofLength"


def test_misaligned_pc_takes_empty_proof(mips):
    w = step_witness(make_state(0, pc=CODE_BASE + 1))
    assert w.proof == b""
    assert revert_name(mips, w.state_data, b"") is None
    # §4.1 step 4: SIGBUS, so exited = 1, exitCode = 135, step = 1; status PANIC (2).
    post = w.state_data[:88] + bytes([135, 1]) + (1).to_bytes(8, "big") + w.state_data[98:]
    assert bytes(mips.step.call(w.state_data, b"")) == b"\x02" + sha3.keccak_256(post).digest()[1:]
    assert revert_name(mips, w.state_data, step_witness(make_state(0)).proof) == "InvalidProofLength"


def test_proof_length(mips):
    w = _load_witness()
    assert revert_name(mips, w.state_data, w.proof) is None
    assert revert_name(mips, w.state_data, w.proof + b"\0") == "InvalidProofLength"
    assert revert_name(mips, w.state_data, w.proof[:-1]) == "InvalidProofLength"
    assert revert_name(mips, w.state_data, w.proof[:35]) == "InvalidProofLength"
    assert revert_name(mips, w.state_data, b"") == "InvalidProofLength"
    # an ALU step in the same leaf takes no data proof
    alu = step_witness(make_state(i_type(9, rs=T0, rt=T1, imm=1)))
    assert revert_name(mips, alu.state_data, alu.proof + w.proof[-100:]) == "InvalidProofLength"


def _instruction_proof_size(proof):
    mask = int.from_bytes(proof[32:36], "big")
    return 36 + 32 * (27 - bin(mask).count("1"))


def test_zero_mask(mips):
    w = _load_witness()
    bad = bytearray(w.proof)
    bad[32] |= 0x08  # bit 27 of the instruction proof's mask
    assert revert_name(mips, w.state_data, bytes(bad)) == "InvalidZeroMask"
    # the data proof has L = floor(log2(i ^ j)) levels: bit L must be clear
    i, j = CODE_BASE >> 5, (STACK_TOP - 64) >> 5
    levels = (i ^ j).bit_length() - 1
    off = _instruction_proof_size(w.proof)
    bad = bytearray(w.proof)
    mask = int.from_bytes(bad[off + 32 : off + 36], "big") | (1 << levels)
    bad[off + 32 : off + 36] = mask.to_bytes(4, "big")
    assert revert_name(mips, w.state_data, bytes(bad)) == "InvalidZeroMask"


def test_memory_proof(mips):
    w = _load_witness()
    off = _instruction_proof_size(w.proof)
    for pos in (0, 40, off - 1, off, off + 40, len(w.proof) - 1):
        bad = bytearray(w.proof)
        bad[pos] ^= 0x80
        assert revert_name(mips, w.state_data, bytes(bad)) == "InvalidMemoryProof", pos
    bad = bytearray(w.state_data)
    bad[0] ^= 1  # memRoot
    assert revert_name(mips, bytes(bad), w.proof) == "InvalidMemoryProof"


def test_explicit_zero_sibling_is_accepted(mips):
    """A sibling equal to Z[k] may also be sent explicitly with its bit clear (same root)."""
    w = step_witness(make_state(i_type(9, rs=T0, rt=T1, imm=1)))
    mask = int.from_bytes(w.proof[32:36], "big")
    assert mask & 1  # level-0 sibling of a lone instruction is zero
    proof = w.proof[:32] + (mask & ~1).to_bytes(4, "big") + bytes(32) + w.proof[36:]
    assert revert_name(mips, w.state_data, proof) is None
