"""The ``opml`` command line.

    opml vm run PROGRAM.elf [--steps]      run to exit; guest fd 1/2 → stdout/stderr; exit code = guest's
    opml vm state PROGRAM.elf --at N       JSON of the state after N steps
    opml vm proof PROGRAM.elf --at N       JSON witness and calldata of step N (from the state after N)
"""

import json
import sys

import click

from opml.vm.elf import load_elf
from opml.vm.errors import VMError
from opml.vm.run import run, state_at
from opml.vm.state import VMState, encode_state, state_hash
from opml.vm.witness import apply_step_proof, encode_step_calldata, step_witness

# Steps between flushes of guest output in `opml vm run`, so long programs stream their output.
_RUN_CHUNK = 100_000


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _state_json(state: VMState) -> dict:
    """Every state field (ints, bytes as 0x-hex), plus ``stateData`` and ``stateHash``."""
    state_data = encode_state(state)
    return {
        "memRoot": _hex(state.memory.merkle_root()),
        "preimageKey": _hex(state.preimage_key),
        "pc": state.pc,
        "nextPC": state.next_pc,
        "lo": state.lo,
        "hi": state.hi,
        "brk": state.brk,
        "heap": state.heap,
        "exitCode": state.exit_code,
        "exited": int(state.exited),
        "step": state.step,
        "registers": list(state.registers),
        "stateData": _hex(state_data),
        "stateHash": _hex(state_hash(state_data)),
    }


@click.group()
def main() -> None:
    """opML: optimistic machine learning with a MIPS fraud-proof VM."""


@main.group()
def vm() -> None:
    """Run MIPS programs on the reference VM and produce states and step proofs."""


def _load(program: str) -> VMState:
    try:
        return load_elf(program)
    except VMError as exc:
        raise click.ClickException(str(exc)) from exc


def _state_at(program: str, at: int) -> VMState:
    try:
        return state_at(program, at)
    except VMError as exc:
        raise click.ClickException(str(exc)) from exc


@vm.command("run")
@click.argument("program", type=click.Path(exists=True, dir_okay=False))
@click.option("--steps", is_flag=True, help="Print the number of executed steps to stderr.")
def vm_run(program: str, steps: bool) -> None:
    """Run PROGRAM to its exit and exit with its exit code (128 + signal after a panic)."""
    state = _load(program)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    while not state.exited:
        run(state, max_steps=_RUN_CHUNK)
        for stream, buffer in ((out, state.stdout), (err, state.stderr)):
            stream.write(buffer)
            stream.flush()
            buffer.clear()
    if steps:
        click.echo(f"steps: {state.step}", err=True)
    sys.exit(state.exit_code)


@vm.command("state")
@click.argument("program", type=click.Path(exists=True, dir_okay=False))
@click.option("--at", "at", type=click.IntRange(min=0), required=True, help="Number of steps to run first.")
def vm_state(program: str, at: int) -> None:
    """Print the state of PROGRAM after --at steps as JSON."""
    click.echo(json.dumps(_state_json(_state_at(program, at)), indent=2))


@vm.command("proof")
@click.argument("program", type=click.Path(exists=True, dir_okay=False))
@click.option("--at", "at", type=click.IntRange(min=0), required=True, help="Number of steps to run first.")
def vm_proof(program: str, at: int) -> None:
    """Print the witness and `step` calldata of the step executed from the state after --at steps."""
    witness = step_witness(_state_at(program, at))
    post_state_data = apply_step_proof(witness.state_data, witness.proof)
    click.echo(
        json.dumps(
            {
                "step": at,
                "stateData": _hex(witness.state_data),
                "proof": _hex(witness.proof),
                "calldata": _hex(encode_step_calldata(witness.state_data, witness.proof)),
                "preStateHash": _hex(state_hash(witness.state_data)),
                "postStateHash": _hex(state_hash(post_state_data)),
            },
            indent=2,
        )
    )
