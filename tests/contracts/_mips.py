"""Helpers of the MIPS.sol tests: instruction encoders, state builders, and a step runner that
checks the contract against the Python reference VM (opml.vm) byte for byte.

Not a test module (leading underscore); imported by tests/contracts/test_mips_*.py.
"""

import random

import eth_abi
from ape.exceptions import ContractLogicError
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractLogicError as Web3ContractLogicError

from opml.chain.revm import RevmCallError
from opml.errors import OpmlError
from opml.hashing import keccak256
from opml.oracle.errors import PartNotLoadedError, PreimageNotLoadedError
from opml.oracle.keys import localize
from opml.vm.memory import Memory
from opml.vm.state import VMState, encode_state, state_hash
from opml.vm.step import step as reference_step
from opml.vm.witness import apply_step_proof, encode_step_calldata, step_witness

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


def error_selectors(*contracts) -> dict[bytes, str]:
    """The custom errors of ``contracts`` (ape contract instances) by their 4-byte selector."""
    return {keccak256(e.selector.encode())[:4]: e.name for c in contracts for e in c.contract_type.errors}


def error_name(err, *contracts):
    """The name of the custom error behind ``err``, looked up in the ABIs of ``contracts``.

    py-evm gives ape the decoded error class when the called contract declares it, and otherwise the
    revert data as a hex string; anvil gives "custom error 0x<selector>" or, when the revert data
    happens to be valid UTF-8, the data as text in the provider error (an error that a called
    contract raised, e.g. the oracle's ``PartNotLoaded``, is not in the caller's ABI)."""
    name = type(err).__name__
    if name != "ContractLogicError":
        return name
    by_selector = error_selectors(*contracts)
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


def budget(measured: int) -> int:
    """The gas budget for a cost measured at ``measured``: 20% more, rounded up to 1,000 (vm-spec §9)."""
    return -(-measured * 6 // 5000) * 1000


def calldata_tokens(data: bytes) -> int:
    """EIP-7623 tokens of calldata: 1 per zero byte, 4 per non-zero byte."""
    zeros = data.count(0)
    return zeros + 4 * (len(data) - zeros)


TAMPER_CHUNK = 24
"""Bytes per ``StepTamperProbe.probe`` call: 192 variants stay far below the node's call gas cap."""


def python_error_name(err: Exception) -> str:
    """The contract error that a Python verifier error mirrors (vm-spec §8, oracle-spec §3)."""
    if isinstance(err, OpmlError) and err.contract_error:
        return err.contract_error
    return type(err).__name__.removesuffix("Error")


def python_outcome(state_data: bytes, proof: bytes, oracle=None) -> tuple[bool, object]:
    """``(reverted, error name or post-state hash)`` of the Python verifier on one witness."""
    try:
        return False, state_hash(apply_step_proof(state_data, proof, oracle))
    except OpmlError as err:
        return True, python_error_name(err)


class ChainOracle:
    """The Python VM's view of a ``PreimageOracle`` deployed in the in-process EVM: exactly the lengths
    and parts loaded there, so that a Python step fails where ``MIPS.step`` reverts for missing oracle
    data. Answers are cached (the tamper sweeps ask for the same few keys thousands of times)."""

    def __init__(self, oracle, caller, local_context: bytes = bytes(32)):
        self.oracle, self.caller, self.local_context = oracle, caller, local_context
        self._answers: dict[tuple, bytes | None] = {}

    def _ask(self, signature: str, types: list[str], args: list) -> bytes | None:
        at = (signature, *args)
        if at not in self._answers:
            try:
                self._answers[at] = self.oracle.call(signature, types, args)
            except RevmCallError:
                self._answers[at] = None
        return self._answers[at]

    def effective_key(self, key: bytes) -> bytes:
        return localize(key, self.caller, self.local_context)

    def preimage_length(self, effective_key: bytes) -> int:
        answer = self._ask("preimageLength(bytes32)", ["bytes32"], [effective_key])
        if answer is None:
            raise PreimageNotLoadedError(f"no length of {effective_key.hex()} on-chain")
        return int.from_bytes(answer, "big")

    def preimage_part(self, effective_key: bytes, part_offset: int) -> bytes:
        answer = self._ask(
            "readPreimage(bytes32,uint256)", ["bytes32", "uint256"], [effective_key, part_offset]
        )
        if answer is None:
            raise PartNotLoadedError(f"part {part_offset} of {effective_key.hex()} is not on-chain")
        return answer[:32]


PROBE_SIGNATURE = "probe(address,bytes,bytes,bytes32,bool,uint256,uint256)"
PROBE_TYPES = ["address", "bytes", "bytes", "bytes32", "bool", "uint256", "uint256"]


def probe_outcomes(probe, mips, witness, tamper_proof: bool, local_context=bytes(32), *contracts):
    """For every bit of the proof (``tamper_proof``) or of ``stateData``: ``(reverted, error name or
    post-state hash)`` of ``MIPS.step`` on the witness with that one bit flipped, in byte-then-bit order.

    ``probe`` is a ``StepTamperProbe`` in the in-process EVM (``opml.chain.revm``) next to ``mips``;
    ``contracts`` are ape contracts whose errors name the selectors (MIPS's own are always included)."""
    data = witness.proof if tamper_proof else witness.state_data
    outcomes = []
    for start in range(0, len(data), TAMPER_CHUNK):
        end = min(start + TAMPER_CHUNK, len(data))
        args = [mips.address, witness.state_data, witness.proof, local_context, tamper_proof, start, end]
        (batch,) = eth_abi.decode(["(bool,bytes32)[]"], probe.call(PROBE_SIGNATURE, PROBE_TYPES, args))
        outcomes += [(reverted, bytes(result)) for reverted, result in batch]
    return outcomes


def named(outcomes, *contracts):
    """``probe_outcomes`` with each revert's selector replaced by the error name from ``contracts``."""
    by_selector = error_selectors(*contracts)
    return [
        (True, by_selector.get(r[:4], f"unknown 0x{r[:4].hex()}")) if reverted else (False, r)
        for reverted, r in outcomes
    ]


def flipped(data: bytes, variant: int) -> bytes:
    """``data`` with bit ``variant % 8`` of byte ``variant // 8`` flipped."""
    bad = bytearray(data)
    bad[variant // 8] ^= 1 << (variant % 8)
    return bytes(bad)


def assert_every_bit_is_bound(revm, ape_mips, witness, honest, skip=frozenset(), oracle=None, contracts=()):
    """Flip each of the 8 bits of every byte of the witness, one at a time, on-chain and in the Python
    verifier (``apply_step_proof`` with ``oracle``):

    - a flipped proof bit must make ``step`` revert, with the same named error that the Python verifier
      raises: the pre-state is unchanged, so only a rejection is sound;
    - a flipped ``stateData`` bit is another pre-state: the contract and the verifier must agree (the same
      error, or the same post-state hash), and the post-state hash must differ from ``honest``, except
      for the bytes in ``skip``, which the step provably overwrites (their flip still changes the
      pre-state hash, so a dispute game rejects the claim).

    The sweep runs in the in-process EVM ``revm`` (``.mips``, ``.probe``), thousands of steps in
    seconds; its first chunk of proof variants is also run on ape's node (``ape_mips`` with a probe
    deployed there), which must give the same outcomes.
    """
    contracts = (ape_mips, *contracts)
    proof_outcomes = named(probe_outcomes(revm.probe, revm.mips, witness, True), *contracts)
    for variant, (reverted, got) in enumerate(proof_outcomes):
        where = f"proof byte {variant // 8} bit {variant % 8}"
        assert reverted, f"{where}: step accepted a tampered proof"
        assert python_outcome(witness.state_data, flipped(witness.proof, variant), oracle) == (True, got), (
            where
        )
    state_outcomes = named(probe_outcomes(revm.probe, revm.mips, witness, False), *contracts)
    for variant, outcome in enumerate(state_outcomes):
        where = f"stateData byte {variant // 8} bit {variant % 8}"
        assert python_outcome(flipped(witness.state_data, variant), witness.proof, oracle) == outcome, where
        if variant // 8 not in skip:
            assert outcome != (False, honest), f"{where}: the tampered state gives the honest post-state"
    sample = revm.ape_probe.probe.call(
        ape_mips.address, witness.state_data, witness.proof, bytes(32), True, 0, TAMPER_CHUNK
    )
    first = named([(reverted, bytes(result)) for reverted, result in sample], *contracts)
    assert first == proof_outcomes[: len(first)], "ape's node and revm disagree on tampered proofs"
