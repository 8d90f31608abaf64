"""Helpers of the MIPS.sol tests: instruction encoders, state builders, and a step runner that
checks the contract against the Python reference VM (opml.vm) byte for byte.

Not a test module (leading underscore); imported by tests/contracts/test_mips_*.py.
"""

import random

from ape.exceptions import ContractLogicError
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractLogicError as Web3ContractLogicError

from opml.vm.hashing import keccak256
from opml.vm.memory import Memory
from opml.vm.state import VMState, encode_state, state_hash
from opml.vm.step import step as reference_step
from opml.vm.witness import encode_step_calldata, step_witness

CODE_BASE = 0x00400000
DATA_BASE = 0x00410000
HEAP_BASE = 0x40000000
STACK_TOP = 0x7FFFF000

# o32 register numbers used by the tests
ZERO, V0, A0, A1, A2, A3, T0, T1, T2, T3, S0, SP, RA = 0, 2, 4, 5, 6, 7, 8, 9, 10, 11, 16, 29, 31


# --- Instruction encoders -------------------------------------------------------------------------


def r_type(funct, rs=0, rt=0, rd=0, sa=0, opcode=0):
    """SPECIAL (or, with ``opcode=28``, SPECIAL2) R-type word."""
    return (opcode << 26) | (rs << 21) | (rt << 16) | (rd << 11) | ((sa & 31) << 6) | funct


def i_type(opcode, rs=0, rt=0, imm=0):
    return (opcode << 26) | (rs << 21) | (rt << 16) | (imm & 0xFFFF)


def j_type(opcode, target):
    return (opcode << 26) | ((target >> 2) & 0x03FFFFFF)


def special2(funct, rs=0, rt=0, rd=0):
    return r_type(funct, rs, rt, rd, opcode=28)


# --- States ---------------------------------------------------------------------------------------


def realistic_memory(seed=1):
    """A memory laid out like a small program: code, data, heap and stack pages with random bytes,
    so that proofs carry the non-zero siblings a real program's proofs carry."""
    rng = random.Random(seed)
    mem = Memory()
    mem.write_bytes(CODE_BASE, rng.randbytes(16 * 1024))
    mem.write_bytes(DATA_BASE, rng.randbytes(8 * 1024))
    mem.write_bytes(HEAP_BASE, rng.randbytes(4 * 1024))
    mem.write_bytes(STACK_TOP - 8 * 1024, rng.randbytes(8 * 1024))
    return mem


def dense_memory_around(mem, *addrs):
    """Make every sibling of the paths of ``addrs`` non-zero: the worst case for proof size."""
    for addr in addrs:
        leaf = addr >> 5
        for level in range(27):
            mem.write_u8(((leaf ^ (1 << level)) << 5) + 31, 0xA5)
    return mem


def make_state(insns, regs=None, pc=CODE_BASE, next_pc=None, memory=None, **fields):
    """A running state whose memory holds ``insns`` (a word or a list) from ``pc`` on."""
    mem = Memory() if memory is None else memory
    if isinstance(insns, int):
        insns = [insns]
    for k, insn in enumerate(insns):
        mem.write_u32(pc + 4 * k, insn)
    registers = [0] * 32
    for r, v in (regs or {}).items():
        registers[r] = v & 0xFFFFFFFF
    registers[0] = 0
    defaults = dict(brk=0x00420000, heap=HEAP_BASE)
    defaults.update(fields)
    return VMState(
        memory=mem,
        pc=pc,
        next_pc=(pc + 4) & 0xFFFFFFFF if next_pc is None else next_pc,
        registers=registers,
        **defaults,
    )


def expected_post_state(state):
    """The post-state bytes of one reference step from ``state`` (``state`` is left unchanged)."""
    post = state.copy()
    post.stdout = post.stderr = None
    reference_step(post)
    return encode_state(post)


# --- Running steps on the contract ----------------------------------------------------------------


def error_name(err, *contracts):
    """The name of the custom error behind ``err``, looked up in the ABIs of ``contracts``.

    py-evm gives ape the decoded error class when the called contract declares it, and otherwise the
    revert data as a hex string; anvil gives "custom error 0x<selector>" or, when the revert data
    happens to be valid UTF-8, the data as text in the provider error (an error that a called
    contract raised, e.g. the oracle's ``PartNotLoaded``, is not in the caller's ABI)."""
    name = type(err).__name__
    if name != "ContractLogicError":
        return name
    by_selector = {
        keccak256(e.selector.encode())[:4]: e.name for c in contracts for e in c.contract_type.errors
    }
    message = str(err.message)
    base = str(getattr(err, "base_err", "") or "")
    if message.startswith("0x"):
        data = bytes.fromhex(message[2:])
    elif message.startswith("custom error 0x"):
        data = bytes.fromhex(message.removeprefix("custom error 0x")[:8])
    elif "execution reverted: " in base:
        data = base.split("execution reverted: ", 1)[1].encode("utf-8", "surrogateescape")
    else:
        return name
    return by_selector.get(data[:4], name)


def revert_name(mips, state_data, proof):
    """The custom error a ``step`` call reverts with, or ``None`` if it succeeds."""
    try:
        mips.step.call(state_data, proof)
    except ContractLogicError as err:
        return error_name(err, mips)
    return None


def check_step(mips, sender, state, transact=True):
    """Step ``state`` on the contract and assert it matches the reference VM; return the receipt.

    Compares the returned post-state hash, and (in a transaction) the emitted pre/post hashes and
    post-state bytes.
    """
    witness = step_witness(state)
    post = expected_post_state(state)
    post_hash = state_hash(post)
    assert bytes(mips.step.call(witness.state_data, witness.proof)) == post_hash
    if not transact:
        return None
    receipt = mips.step(witness.state_data, witness.proof, sender=sender)
    logs = list(receipt.decode_logs(mips.StepExecuted))
    assert len(logs) == 1
    assert bytes(logs[0].preStateHash) == state_hash(witness.state_data)
    assert bytes(logs[0].postStateHash) == post_hash
    assert bytes(logs[0].postState) == post
    return receipt


def raw_step_outcome(mips, state_data, proof):
    """The post-state hash of an ``eth_call`` of ``step(stateData, proof)``, or ``"revert"``.

    Goes straight to the node's ``eth_call``, without ape's revert decoding (which asks anvil for a
    trace of every revert): the tamper tests make about a thousand reverting calls."""
    web3 = mips.provider.web3
    try:
        return bytes(web3.eth.call({"to": mips.address, "data": encode_step_calldata(state_data, proof)}))
    except (TransactionFailed, Web3ContractLogicError):  # py-evm, anvil
        return "revert"


def calldata_tokens(data: bytes) -> int:
    """EIP-7623 tokens of calldata: 1 per zero byte, 4 per non-zero byte."""
    zeros = data.count(0)
    return zeros + 4 * (len(data) - zeros)


def assert_every_byte_is_bound(mips, witness, honest, skip=frozenset()) -> None:
    """Flip one bit in every byte of the proof and of ``stateData`` (except ``skip``, positions in
    stateData the step provably overwrites): ``step`` must revert or give another hash than ``honest``."""
    for pos in range(len(witness.proof)):
        bad = bytearray(witness.proof)
        bad[pos] ^= 0x01
        assert raw_step_outcome(mips, witness.state_data, bytes(bad)) != honest, f"proof byte {pos}"
    for pos in range(len(witness.state_data)):
        if pos in skip:
            continue
        bad = bytearray(witness.state_data)
        bad[pos] ^= 0x01
        assert raw_step_outcome(mips, bytes(bad), witness.proof) != honest, f"stateData byte {pos}"
