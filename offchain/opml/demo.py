"""The narrated demo behind `ape run demo` (and `make demo`).

It uses only real components: the contracts compiled by ape and deployed on the connected network,
a real cross-compiled MIPS program, the fast executor to run it, and the reference VM to produce the
witness of the one step that is disputed.
"""

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from opml.chain.deploy import Deployment
from opml.oracle.checksum import stream_checksum
from opml.oracle.client import OracleClient
from opml.oracle.store import PreimageStore
from opml.vm.elf import load_elf
from opml.vm.fast import Trace
from opml.vm.preimage import OracleView
from opml.vm.state import VMState, encode_state, state_hash
from opml.vm.step import step
from opml.vm.witness import step_witness

BUILD = Path(__file__).resolve().parents[2] / "mips-toolchain" / "build"
PROGRAM = BUILD / "recursion"
STREAMING_PROGRAM = BUILD / "stream_checksum"
TENSOR_BYTES = 4 << 20
TENSOR_IDENT = 1  # the local value stream_checksum reads: the key of the tensor to stream
GAME_CONTEXT = bytes.fromhex("0a" * 32)  # the localContext a dispute game would pass to step
SYSCALL, SYS_PREIMAGE_READ = 0x0000000C, 9003


@dataclass(frozen=True)
class Claim:
    """What a party asserts about one step: its pre-state and the hash of its post-state."""

    pre: VMState
    post_hash: bytes
    oracle: OracleView | None = None


@dataclass(frozen=True)
class Settlement:
    """One disputed step executed on-chain by ``MIPS.step``, and what each party claimed."""

    state_data: bytes  # the pre-state sent to step
    proof: bytes
    local_context: bytes
    txn_hash: str  # the step transaction, to read its receipt and event back from the chain
    onchain_post_hash: bytes  # postStateHash of its StepExecuted event
    claims: dict[str, bytes]  # party -> claimed post-state hash
    upheld: tuple[str, ...]  # the parties whose claim equals the on-chain post-state hash


@dataclass(frozen=True)
class DemoResult:
    """What ``run_demo`` did: both disputes, and the streaming program's output over the tensor."""

    disputes: tuple[Settlement, ...]
    stream_stdout: bytes  # stream_checksum's output in the fast executor
    tensor_checksum: int  # numpy's checksum of the same tensor
    tensor_bytes: int


def run_program(path: Path) -> Trace:
    click.echo(f"Running {path.name} off-chain in the fast MIPS executor ...")
    initial = load_elf(path)
    trace = Trace(initial.copy())
    final = trace.state_at(trace.final_step)
    assert final.stdout is not None  # a state from a Trace captures its output
    click.echo(f"  {trace.final_step:,} steps, exit code {final.exit_code}")
    output = final.stdout.decode(errors="replace").strip().splitlines()
    for line in output[:4]:
        click.echo(f"  | {line}")
    if len(output) > 4:
        click.echo(f"  | ... ({len(output) - 4} more lines)")
    return trace


def honest_claim(pre: VMState, oracle: OracleView | None = None) -> Claim:
    post = pre.copy()
    step(post, oracle)
    return Claim(pre, state_hash(encode_state(post)), oracle)


def dishonest_claim(honest: Claim) -> Claim:
    """The same step with one register of the post-state changed, as a lying server would claim."""
    post = honest.pre.copy()
    step(post, honest.oracle)
    post.registers[2] ^= 1
    return Claim(honest.pre, state_hash(encode_state(post)), honest.oracle)


def settle_one_step(
    deployment: Deployment, sender, claims: dict[str, Claim], local_context: bytes = bytes(32)
) -> Settlement:
    """Execute the disputed step on-chain and judge every claim against the result."""
    pre = next(iter(claims.values())).pre
    witness = step_witness(pre)
    insn = pre.memory.read_u32(pre.pc)
    click.echo(f"Disputed step {pre.step:,}: pc=0x{pre.pc:08x} instruction=0x{insn:08x}")
    receipt = deployment.mips.step(witness.state_data, witness.proof, local_context, sender=sender)
    (log,) = receipt.decode_logs(deployment.mips.StepExecuted)
    onchain = bytes(log.postStateHash)
    click.echo(
        f"  MIPS.step executed it on-chain: {receipt.gas_used:,} gas, "
        f"witness {len(witness.state_data) + len(witness.proof):,} bytes"
    )
    click.echo(f"  on-chain post-state hash 0x{onchain.hex()}")
    for who, claim in claims.items():
        verdict = "upheld" if claim.post_hash == onchain else "refuted: this party loses its bond"
        click.echo(f"  {who:<10} claimed 0x{claim.post_hash.hex()} -> {verdict}")
    return Settlement(
        state_data=witness.state_data,
        proof=witness.proof,
        local_context=local_context,
        txn_hash=receipt.txn_hash,
        onchain_post_hash=onchain,
        claims={who: claim.post_hash for who, claim in claims.items()},
        upheld=tuple(who for who, claim in claims.items() if claim.post_hash == onchain),
    )


def is_preimage_read(state: VMState) -> bool:
    return state.memory.read_u32(state.pc) == SYSCALL and state.registers[2] == SYS_PREIMAGE_READ


def lazy_loading_dispute(deployment: Deployment, sender, store_dir: Path) -> tuple[Settlement, bytes, int]:
    """A program streams a tensor it never holds in memory; a step that reads it is disputed, and
    only the one 32-byte part that step reads is revealed on-chain. Returns the settlement, the
    program's output and numpy's checksum of the tensor."""
    tensor = np.random.default_rng(7).integers(0, 256, TENSOR_BYTES, dtype=np.uint8)
    store = PreimageStore(store_dir)
    tensor_key = store.put_chunk_merkle(tensor.tobytes())
    click.echo(
        f"Stored a {TENSOR_BYTES >> 20} MiB tensor off-chain under chunk-Merkle key 0x{tensor_key.hex()}"
    )
    client = OracleClient(deployment.oracle, store, sender)
    client.load_local(TENSOR_IDENT, GAME_CONTEXT, tensor_key)
    click.echo(f"  the game hands the VM that key as local value {TENSOR_IDENT} (one 32-byte on-chain write)")

    oracle = OracleView(store, sender.address, GAME_CONTEXT)
    trace = Trace(load_elf(STREAMING_PROGRAM), oracle=oracle)
    final = trace.state_at(trace.final_step)
    assert final.stdout is not None  # a state from a Trace captures its output
    click.echo(
        f"Running {STREAMING_PROGRAM.name} in the fast executor: {trace.final_step:,} steps, "
        f"output: {final.stdout.decode().strip()}"
    )
    checksum = stream_checksum(tensor)
    click.echo(f"  numpy computes checksum 0x{checksum:08x} over the same tensor")

    pre = trace.state_at(random.Random("opml-demo-read").randrange(trace.final_step))
    while not is_preimage_read(pre):
        step(pre, oracle)
    effective_key = oracle.effective_key(pre.preimage_key)
    receipt = client.ensure_read(effective_key, pre.registers[4])
    gas = f"{receipt.gas_used:,} gas" if receipt else "already on-chain"
    click.echo(f"  revealed the part at byte {pre.registers[4] & ~31:,} of the tensor on-chain: {gas}")
    honest = honest_claim(pre, oracle)
    settlement = settle_one_step(
        deployment, sender, {"honest": honest, "dishonest": dishonest_claim(honest)}, GAME_CONTEXT
    )
    return settlement, bytes(final.stdout), checksum


def run_demo(deployment: Deployment, sender) -> DemoResult:
    """Run both disputes (printing the narration) and return what happened, for checking."""
    trace = run_program(PROGRAM)
    n = random.Random("opml-demo").randrange(trace.final_step)
    honest = honest_claim(trace.state_at(n))
    first = settle_one_step(deployment, sender, {"honest": honest, "dishonest": dishonest_claim(honest)})
    click.echo("")
    with tempfile.TemporaryDirectory(prefix="opml-preimages-") as store_dir:
        second, stdout, checksum = lazy_loading_dispute(deployment, sender, Path(store_dir))
    return DemoResult((first, second), stdout, checksum, TENSOR_BYTES)
