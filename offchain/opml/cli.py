"""The ``opml`` command line.

    opml vm run PROGRAM.elf [--steps] [--stats] [--reference] [ORACLE OPTIONS]
        run to exit on the fast executor (``--reference``: the Python reference VM); guest fd 1/2 →
        stdout/stderr; exit code = the guest's (128 + signal after a panic)
    opml vm state PROGRAM.elf --at N [ORACLE OPTIONS]   JSON of the state after N steps
    opml vm proof PROGRAM.elf --at N [ORACLE OPTIONS]   JSON witness and calldata of step N (from the
        state after N); ``oracle.reads``: the parts (``partOffset``) and lengths (``null``) the
        contract's step asks its oracle for, in order, which must be on-chain first
    opml oracle put FILE --preimages DIR [--kind chunk-merkle|keccak]   store FILE, print its key
    opml model run MODEL INPUT [--json]   run MODEL (*.opml) natively on INPUT (raw tensor bytes, .npy or
        .json): the prediction, every value's key and the final state S_{N-1} (docs/ml-spec.md §5)
    opml model inspect MODEL   the graph as a table (op, inputs, output, params, parameter count, keys)
    opml model commit MODEL    the model commitment (chunk-Merkle key of the manifest)
    opml model quantize FLOAT.onnx CALIBRATION.npy --out Q.onnx [--per-channel] [--format qdq|qoperator]
    opml model import Q.onnx|MODEL.gguf --out M.opml   an int8 ONNX graph or a LLaMA GGUF as a model
    opml model register, opml task submit|status, opml server, opml challenger, opml report:
        on a deployed game (see opml.chain.commands and `opml COMMAND --help`)

ORACLE OPTIONS (vm-spec §5.5, oracle-spec §1.1) give the preimage system calls their data:

    --preimages DIR          a PreimageStore folder (default: a temporary, empty one)
    --local IDENT=HEX        local value IDENT (≤ 32 bytes), stored for (--caller, --local-context)
    --caller ADDR            the address that calls ``step`` on-chain (``msg.sender``, e.g. the dispute
                             game): local keys are localized with it (default: 20 zero bytes)
    --local-context HEX      the ``localContext`` bytes32 of ``step`` (default: 32 zero bytes, what the
                             two-argument ``step(bytes,bytes)`` uses); with it, ``vm proof`` gives the
                             calldata of ``step(bytes,bytes,bytes32)``

Errors (a bad ELF, a preimage the store does not hold, a malformed model or input, …) print a message
and exit with status 1.
"""

import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from opml.errors import OpmlError
from opml.oracle.store import PreimageStore
from opml.vm.elf import load_elf
from opml.vm.errors import VMError
from opml.vm.limits import MAX_CAPTURED_OUTPUT
from opml.vm.preimage import ZERO_CALLER, ZERO_CONTEXT, OracleView, PreimageOracle, RecordingOracle, as_oracle
from opml.vm.run import run, state_at
from opml.vm.state import VMState, encode_state, state_hash
from opml.vm.witness import apply_step_proof, encode_step_calldata, step_witness

if TYPE_CHECKING:
    from opml.ml.format import Model

# Steps between flushes of guest output in `opml vm run`, so long programs stream their output.
_RUN_CHUNK = 100_000  # reference VM
_FAST_RUN_CHUNK = 50_000_000  # fast executor (a fraction of a second)


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


# --- oracle options ---------------------------------------------------------------------------------


def _parse_hex(value: str, size: int | None, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value.removeprefix("0x").removeprefix("0X"))
    except ValueError:
        raise click.BadParameter(f"{what} must be hex, got {value!r}") from None
    if size is not None and len(raw) != size:
        raise click.BadParameter(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def _parse_local(value: str) -> tuple[int, bytes]:
    ident, sep, data = value.partition("=")
    if not sep:
        raise click.BadParameter(f"--local takes IDENT=HEX, got {value!r}")
    try:
        number = int(ident, 0)
    except ValueError:
        raise click.BadParameter(f"--local: IDENT must be an integer, got {ident!r}") from None
    raw = _parse_hex(data, None, f"--local {ident}")
    if len(raw) > 32:
        raise click.BadParameter(f"--local {ident}: a local value has at most 32 bytes, got {len(raw)}")
    return number, raw


def oracle_options(command):
    """The options that build the oracle of the preimage system calls (see the module docstring)."""
    options = [
        click.option(
            "--preimages",
            type=click.Path(file_okay=False),
            default=None,
            help="PreimageStore folder with the preimages (default: a temporary empty one).",
        ),
        click.option(
            "--local",
            "locals_",
            multiple=True,
            metavar="IDENT=HEX",
            help="Local value IDENT (hex, ≤ 32 bytes) for --caller/--local-context; repeatable.",
        ),
        click.option(
            "--caller",
            default=None,
            metavar="ADDR",
            help="msg.sender of step: localizes local keys (default: the zero address).",
        ),
        click.option(
            "--local-context",
            "local_context",
            default=None,
            metavar="HEX",
            help="localContext bytes32 of step (default: 32 zero bytes).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@contextlib.contextmanager
def _oracle(preimages, locals_, caller, local_context):
    """Yield the :class:`OracleView` the options describe (``None`` when no option is given)."""
    caller_bytes = ZERO_CALLER if caller is None else _parse_hex(caller, 20, "--caller")
    context = ZERO_CONTEXT if local_context is None else _parse_hex(local_context, 32, "--local-context")
    values = [_parse_local(v) for v in locals_]
    if preimages is None and not values and caller is None and local_context is None:
        yield None
        return
    with contextlib.ExitStack() as stack:
        root = preimages or stack.enter_context(tempfile.TemporaryDirectory(prefix="opml-preimages-"))
        store = PreimageStore(root)
        for ident, value in values:
            store.put_local(ident, caller_bytes, context, value)
        yield OracleView(store, caller_bytes, context)


def _fail(exc: Exception) -> NoReturn:
    raise click.ClickException(str(exc)) from exc


# --- vm ---------------------------------------------------------------------------------------------


@main.group()
def vm() -> None:
    """Run MIPS programs and produce states and step proofs."""


def _load(program: str) -> VMState:
    try:
        return load_elf(program)
    except VMError as exc:
        _fail(exc)


def _state_at(program: str, at: int, oracle: PreimageOracle | None) -> VMState:
    try:
        return state_at(program, at, oracle)
    except OpmlError as exc:
        _fail(exc)


def _write_out(stdout: bytes, stderr: bytes) -> None:
    for stream, data in ((sys.stdout.buffer, stdout), (sys.stderr.buffer, stderr)):
        if data:
            stream.write(data)
            stream.flush()


@vm.command("run")
@click.argument("program", type=click.Path(exists=True, dir_okay=False))
@click.option("--steps", is_flag=True, help="Print the number of executed steps to stderr.")
@click.option(
    "--stats",
    is_flag=True,
    help="Print JSON to stderr: steps, touched pages and peak VM memory (pages × 4096), seconds.",
)
@click.option("--reference", is_flag=True, help="Run the Python reference VM instead of the fast executor.")
@oracle_options
def vm_run(
    program: str, steps: bool, stats: bool, reference: bool, preimages, locals_, caller, local_context
) -> None:
    """Run PROGRAM to its exit and exit with its exit code (128 + signal after a panic)."""
    state = _load(program)
    with _oracle(preimages, locals_, caller, local_context) as oracle:
        started = time.perf_counter()
        try:
            if reference:
                assert state.stdout is not None and state.stderr is not None  # load_elf captures output
                while not state.exited:
                    try:
                        run(state, max_steps=_RUN_CHUNK, oracle=oracle)
                    finally:
                        _write_out(bytes(state.stdout), bytes(state.stderr))
                        state.stdout.clear()
                        state.stderr.clear()
                n_steps, pages, exit_code = state.step, len(state.memory.pages), state.exit_code
                streams: tuple[bytearray | None, bytearray | None] = (state.stdout, state.stderr)
            else:
                from opml.vm.fast import FastVM

                fast = FastVM.from_state(state, oracle=oracle)
                exited = False
                while not exited:
                    try:
                        exited = fast.run(fast.step + _FAST_RUN_CHUNK)
                    finally:
                        _write_out(*fast.take_output())
                n_steps, pages, exit_code = fast.step, fast.touched_pages, fast.exit_code
                streams = (fast.stdout, fast.stderr)
        except OpmlError as exc:
            _fail(exc)
        seconds = time.perf_counter() - started
    dropped = [getattr(stream, "dropped", 0) for stream in streams]
    if any(dropped):
        click.echo(
            f"opml: guest output over the capture limit was dropped ({dropped[0]} bytes of stdout, "
            f"{dropped[1]} of stderr; at most {MAX_CAPTURED_OUTPUT} bytes per stream between flushes)",
            err=True,
        )
    if steps:
        click.echo(f"steps: {n_steps}", err=True)
    if stats:
        report = {
            "executor": "reference" if reference else "fast",
            "steps": n_steps,
            "touched_pages": pages,
            "peak_memory_bytes": pages * 4096,
            "seconds": round(seconds, 3),
        }
        click.echo(json.dumps(report), err=True)
    sys.exit(exit_code)


@vm.command("state")
@click.argument("program", type=click.Path(exists=True, dir_okay=False))
@click.option("--at", "at", type=click.IntRange(min=0), required=True, help="Number of steps to run first.")
@oracle_options
def vm_state(program: str, at: int, preimages, locals_, caller, local_context) -> None:
    """Print the state of PROGRAM after --at steps as JSON."""
    with _oracle(preimages, locals_, caller, local_context) as oracle:
        state = _state_at(program, at, oracle)
    click.echo(json.dumps(_state_json(state), indent=2))


@vm.command("proof")
@click.argument("program", type=click.Path(exists=True, dir_okay=False))
@click.option("--at", "at", type=click.IntRange(min=0), required=True, help="Number of steps to run first.")
@oracle_options
def vm_proof(program: str, at: int, preimages, locals_, caller, local_context) -> None:
    """Print the witness and `step` calldata of the step executed from the state after --at steps.

    With --local-context the calldata is for step(bytes,bytes,bytes32), else for step(bytes,bytes).
    """
    context = None if local_context is None else _parse_hex(local_context, 32, "--local-context")
    with _oracle(preimages, locals_, caller, local_context) as oracle:
        state = _state_at(program, at, oracle)
        witness = step_witness(state)
        recorder = RecordingOracle(as_oracle(oracle))  # the questions the contract's step will ask
        try:
            post_state_data = apply_step_proof(witness.state_data, witness.proof, recorder)
        except OpmlError as exc:
            _fail(exc)
    fields = {
        "step": at,
        "stateData": _hex(witness.state_data),
        "proof": _hex(witness.proof),
        "calldata": _hex(encode_step_calldata(witness.state_data, witness.proof, context)),
        "preStateHash": _hex(state_hash(witness.state_data)),
        "postStateHash": _hex(state_hash(post_state_data)),
    }
    if context is not None:
        fields["localContext"] = _hex(context)
    if recorder.reads:
        fields["oracle"] = {
            "selectedKey": _hex(state.preimage_key),
            "reads": [{"key": _hex(read.key), "partOffset": read.part_offset} for read in recorder.reads],
        }
    click.echo(json.dumps(fields, indent=2))


# --- oracle -----------------------------------------------------------------------------------------


@main.group("oracle")
def oracle_group() -> None:
    """Manage the off-chain preimage store (docs/oracle-spec.md)."""


@oracle_group.command("put")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--preimages", type=click.Path(file_okay=False), required=True, help="PreimageStore folder.")
@click.option(
    "--kind",
    type=click.Choice(["chunk-merkle", "keccak"]),
    default="chunk-merkle",
    show_default=True,
    help="Key type: chunk-Merkle (any size) or keccak (at most 64 KiB).",
)
def oracle_put(file: str, preimages: str, kind: str) -> None:
    """Store FILE in the preimage store and print its key (0x-hex)."""
    import numpy as np

    store = PreimageStore(preimages)
    path = Path(file)
    try:
        if kind == "keccak":
            key = store.put_keccak(path.read_bytes())
        else:
            size = path.stat().st_size
            data = np.memmap(path, dtype=np.uint8, mode="r") if size else b""
            key = store.put_chunk_merkle(data)
    except OpmlError as exc:
        _fail(exc)
    click.echo(_hex(key))


# --- model ------------------------------------------------------------------------------------------


@main.group("model")
def model_group() -> None:
    """Inspect, commit to and run opML models (docs/ml-spec.md)."""


def _read_model(path: str) -> "Model":
    from opml.ml.format import read_model

    try:
        return read_model(path)
    except OpmlError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(OSError(f"{path}: {exc.strerror or exc}"))


@model_group.command("commit")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
def model_commit(model: str) -> None:
    """Print the model commitment (the chunk-Merkle key of the manifest) of MODEL."""
    click.echo(_hex(_read_model(model).commitment))


def _params_text(op: str, p: dict[str, int]) -> str:
    """An op's params, with kernel, strides and pads folded (``k=3x3 s=1x1 pad=1,1,1,1``)."""
    text = {name: str(value) for name, value in p.items()}
    if op in ("CONV2D", "MAXPOOL", "AVGPOOL"):
        pads = [text.pop(k) for k in ("pad_top", "pad_left", "pad_bottom", "pad_right") if k in text]
        text["k"] = f"{text.pop('KH')}x{text.pop('KW')}"
        text["s"] = f"{text.pop('stride_h')}x{text.pop('stride_w')}"
        if pads:
            text["pad"] = ",".join(pads)
    return " ".join(f"{name}={value}" for name, value in text.items())


@model_group.command("inspect")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
def model_inspect(model: str) -> None:
    """Print MODEL's graph as a table: op, inputs, output, params, parameter count, tensor keys (an LLM
    from `opml model import`: its nodes grouped by layer and role)."""
    from opml.ml.format import OP_PARAM_NAMES, OP_TENSOR_NAMES
    from opml.ml.llm import card_path

    m = _read_model(model)
    click.echo(f"model       {model}")
    click.echo(f"commitment  {_hex(m.commitment)}")
    click.echo(f"input       {m.input}")
    click.echo(f"output      {m.output}")
    if card_path(model).is_file():
        _inspect_llm(model, m)
        return
    counts = [m.param_count(i) for i in range(len(m.nodes))]
    click.echo(f"nodes       {len(m.nodes)}, {sum(counts)} parameters in {len(m.tensors)} tensors")
    rows = [("node", "op", "inputs", "output", "params", "#params", "tensor keys")]
    for i, node in enumerate(m.nodes):
        params = _params_text(node.op.name, dict(zip(OP_PARAM_NAMES[node.op], node.p, strict=True)))
        names = OP_TENSOR_NAMES.get(node.op, ("", ""))
        keys = " ".join(f"{n}={_hex(k)}" for n, k in zip(names, node.tensor_keys, strict=True) if k)
        inputs = ",".join(map(str, node.inputs))
        rows.append((str(i), node.op.name.lower(), inputs, str(node.out), params, str(counts[i]), keys))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join([*(f"{v:<{w}}" for v, w in zip(r, widths, strict=False)), r[-1]]).rstrip())


def _inspect_llm(path: str, m: "Model") -> None:
    """An LLM's graph by layer: per role, its op, how many nodes (one per step) and the first's output."""
    from opml.ml.llm import LlmCard, card_path

    try:
        card = LlmCard.from_json(card_path(path).read_text(), card_path(path).name)
    except ValueError as exc:
        _fail(exc)
    params = sum(len(m.tensor(k)) for k in m.tensors)
    click.echo(f"tokenizer   {card.gguf or 'none (a synthetic model: prompts are token ids)'}")
    click.echo(
        f"tasks       prompts of 1 … {card.max_prompt} tokens, 1 … {card.max_new} new tokens, "
        f"stop id {card.stop_id if card.stop_id >= 0 else 'none'}"
    )
    click.echo(
        f"nodes       {len(m.nodes)} over {card.max_prompt + card.max_new - 1} steps (one per position), "
        f"{card.layers} layers"
    )
    click.echo(f"tensors     {len(m.tensors)}, {params:,} bytes")
    groups: dict[tuple[int | None, str], list[int]] = {}
    for k, label in enumerate(card.labels):
        groups.setdefault((label.layer, label.role), []).append(k)
    for layer in [None, *range(card.layers)]:
        rows = [(role, ks) for (lay, role), ks in groups.items() if lay == layer]
        click.echo("outside the layers" if layer is None else f"layer {layer}")
        for role, ks in rows:
            ops = sorted({m.nodes[k].op.name.lower() for k in ks})
            first = ks[0]
            click.echo(
                f"  {role:<14} {'/'.join(ops):<22} {len(ks):>6} nodes  first {first:<7} {m.values[first + 1]}"
            )


@model_group.command("quantize")
@click.argument("float_model", metavar="FLOAT.onnx", type=click.Path(exists=True, dir_okay=False))
@click.argument("calibration", metavar="CALIBRATION.npy", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The int8 ONNX file to write.")
@click.option(
    "--per-channel", is_flag=True, help="One weight scale per output channel (default: per tensor)."
)
@click.option(
    "--format",
    "quant_format",
    type=click.Choice(["qdq", "qoperator"]),
    default="qdq",
    show_default=True,
    help="onnxruntime's quantized graph format.",
)
def model_quantize(
    float_model: str, calibration: str, out: str, per_channel: bool, quant_format: str
) -> None:
    """Quantize a float ONNX graph (from torch.onnx.export, skl2onnx, …) to int8 with onnxruntime, in the
    settings `opml model import` reproduces byte for byte (reduce_range: 7-bit weights; docs/ml-spec.md
    §11). CALIBRATION.npy holds N float inputs, [N, …] of the graph input's shape without its batch."""
    import numpy as np

    from opml.ml.onnx_export import quantize_onnx

    try:
        batch = np.load(calibration, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        _fail(OSError(f"{calibration}: not a numpy .npy array ({exc})"))
    if batch.dtype.kind != "f" or batch.ndim < 2:
        _fail(ValueError(f"{calibration}: {batch.dtype} {list(batch.shape)}: give N float inputs, [N, …]"))
    try:
        quantize_onnx(float_model, out, batch, per_channel=per_channel, quant_format=quant_format)
    except Exception as exc:  # onnxruntime's quantizer raises what its graph tools raise
        _fail(ValueError(f"onnxruntime could not quantize {float_model}: {exc}"))
    click.echo(
        f"{out}: int8 {quant_format.upper()}, {'per-channel' if per_channel else 'per-tensor'} weights, "
        f"calibrated on {len(batch)} inputs"
    )


@model_group.command("import")
@click.argument("gguf", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The model file to write.")
@click.option(
    "--max-prompt", type=click.IntRange(min=1), default=64, show_default=True, help="Largest prompt, tokens."
)
@click.option("--max-new", type=click.IntRange(min=1), default=32, show_default=True, help="Most new tokens.")
def model_import(gguf: str, out: str, max_prompt: int, max_new: int) -> None:
    """Import a LLaMA GGUF (Q4_1/Q8_0 matrices, F32 norms, tied embedding): write OUT, the graph that
    serves every task up to the sizes given, and its card OUT.llm.json (tokenizer, labels). A file
    ending in .onnx is a graph quantized by onnxruntime (QDQ, int8; docs/ml-spec.md §11) instead."""
    from opml.ml.llm import card_path, import_gguf

    if gguf.endswith(".onnx"):
        _import_onnx(gguf, out)
        return
    t0 = time.perf_counter()
    try:
        graph = import_gguf(gguf, out, max_prompt, max_new)
    except (OpmlError, ValueError) as exc:
        _fail(exc)
    except OSError as exc:
        _fail(OSError(f"{exc.filename or gguf}: {exc.strerror or exc}"))
    click.echo(
        f"{out}: {len(graph.model.nodes)} nodes, commitment {_hex(graph.model.commitment)} "
        f"({time.perf_counter() - t0:.1f} s); card {card_path(out)}"
    )


def _import_onnx(path: str, out: str) -> None:
    from opml.ml.format import write_model
    from opml.ml.onnx_card import write_card
    from opml.ml.onnx_import import import_onnx

    try:
        imported = import_onnx(path)
    except OpmlError as exc:
        _fail(exc)
    write_model(imported.model, out)
    card = write_card(out, imported.input)
    m, x = imported.model, imported.input
    click.echo(f"{out}: {len(m.nodes)} nodes, commitment {_hex(m.commitment)}; card {card}")
    click.echo(f"input       {x.name} {list(x.shape)} float → {m.input}: {x.formula()}")


@main.command("generate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("prompt")
@click.option(
    "--tokens", type=click.IntRange(min=1), default=16, show_default=True, help="New tokens at most."
)
@click.option("--raw", is_flag=True, help="Use PROMPT as it is (default: wrap it in the chat template).")
@click.option("--ids", "as_ids", is_flag=True, help="PROMPT is token ids, comma-separated (e.g. 1,2,3).")
def generate(model: str, prompt: str, tokens: int, raw: bool, as_ids: bool) -> None:
    """Generate an answer to PROMPT with MODEL (from `opml model import` or `opml model synth`) on the
    native integer runner: the answer as it comes, tokens/s, and the run's commitment S_{N-1}."""
    from opml.ml.llm import LlmModel

    try:
        llm = LlmModel.load(model)
        ids = _ids(prompt) if as_ids else llm.prompt_ids(prompt, chat=not raw)
        x = llm.task(ids, tokens)
    except (OpmlError, ValueError) as exc:
        _fail(exc)
    except OSError as exc:
        _fail(OSError(f"{exc.filename or model}: {exc.strerror or exc}"))
    click.echo(
        f"prompt: {len(ids)} tokens; generating up to {tokens}",
        err=True,
    )
    pending = bytearray()
    done = [False]

    def on_token(token: int) -> None:
        if done[0]:
            return
        if token == llm.card.stop_id:
            done[0] = True
            return
        pending.extend(llm.token_bytes(token))
        try:  # print whole characters only: one may span tokens
            text = pending.decode("utf-8")
        except UnicodeDecodeError:
            return
        pending.clear()
        click.echo(text, nl=False)
        sys.stdout.flush()

    t0 = time.perf_counter()
    result = llm.generate(x, on_token)
    seconds = time.perf_counter() - t0
    click.echo(pending.decode("utf-8", errors="replace"))
    answer = llm.answer(result.output)
    steps = llm.card.max_prompt + llm.card.max_new - 1
    click.echo(
        f"{len(answer)} tokens in {seconds:.1f} s ({steps / seconds:.2f} positions/s: the graph runs all "
        f"{steps}); "
        f"S_{len(llm.model.nodes) - 1} {_hex(result.states[-1])}",
        err=True,
    )


SYNTH_SHAPES = ("llama-3.2-1b", "llama-3.2-1b-h256")
"""The names of ``opml.ml.synth.SHAPES`` (not imported here: the CLI starts without numba)."""


def _ids(text: str) -> list[int]:
    """Comma-separated token ids; a one-line ``ValueError`` for anything else."""
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        raise ValueError(f"{text!r} is not comma-separated token ids (e.g. 1,2,3)") from None


@model_group.command("synth")
@click.option("--shape", type=click.Choice(SYNTH_SHAPES), default="llama-3.2-1b", show_default=True)
@click.option(
    "--seed", type=click.IntRange(0, (1 << 32) - 1), default=0, show_default=True, help="Seed of the weights."
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The model file to write.")
@click.option(
    "--max-prompt", type=click.IntRange(min=1), default=8, show_default=True, help="Largest prompt, tokens."
)
@click.option("--max-new", type=click.IntRange(min=1), default=4, show_default=True, help="Most new tokens.")
def model_synth(shape: str, seed: int, out: str, max_prompt: int, max_new: int) -> None:
    """Write OUT, a synthetic LLaMA of SHAPE with weights drawn from SEED (docs/ml-spec.md §10.7), as the
    graph that serves every task up to the sizes given, with its card (no tokenizer: prompts are ids).
    Streams: memory stays far below the file's size. Then reads OUT back, checking every tensor's key."""
    from opml.ml.format import read_model
    from opml.ml.synth import SHAPES, matrix_specs, write_synth

    specs = matrix_specs(SHAPES[shape])
    done = [0]

    def progress(spec: object) -> None:
        done[0] += 1
        if done[0] % 16 == 0 or done[0] == 2 * len(specs):
            passes = "keys" if done[0] <= len(specs) else "file"
            click.echo(f"  {passes}: {done[0] % len(specs) or len(specs)}/{len(specs)} matrices", err=True)

    t0 = time.perf_counter()
    try:
        synth = write_synth(out, SHAPES[shape], seed, max_prompt, max_new, progress)
        written = time.perf_counter() - t0
        read_model(out, verify=True)
    except (OpmlError, ValueError) as exc:
        _fail(exc)
    except OSError as exc:
        _fail(OSError(f"{exc.filename or out}: {exc.strerror or exc}"))
    click.echo(
        f"{out}: {shape}, seed {seed}, {synth.params:,} parameters, {synth.file_bytes:,} bytes, "
        f"{len(synth.labels)} nodes; written in {written:.1f} s, checked in "
        f"{time.perf_counter() - t0 - written:.1f} s"
    )
    click.echo(f"commitment  {_hex(synth.commitment)}")


@model_group.command("run")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def model_run(model: str, input_file: str, as_json: bool) -> None:
    """Run MODEL on INPUT natively; print the prediction, every value's key and S_{N-1}.

    INPUT is the raw input tensor (exactly its bytes), a .npy array or a .json list of ints; for a model
    imported from ONNX, a float .npy of the ONNX input, quantized as its card says.
    """
    from opml.ml.format import Op
    from opml.ml.onnx_card import model_input
    from opml.ml.runner import run_model

    m = _read_model(model)
    try:
        x = model_input(input_file, model, m.input)
        result = run_model(m, x)
    except OpmlError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(OSError(f"{input_file}: {exc.strerror or exc}"))
    n = len(m.nodes)
    output = result.output.reshape(-1).tolist()
    prediction = output[0] if m.nodes[-1].op is Op.ARGMAX else None
    rows = [
        (v, m.nodes[v - 1].op.name.lower() if v else "input", str(m.values[v]), _hex(result.keys[v]))
        for v in range(n + 1)
    ]
    if as_json:
        report = {
            "commitment": _hex(m.commitment),
            "prediction": prediction,
            "output": output if len(output) <= 4096 else None,
            "output_key": _hex(result.output_key),
            "values": [
                {"value": v, "node": v - 1 if v else None, "op": op, "tensor": t, "key": k}
                for v, op, t, k in rows
            ],
            "states": [_hex(s) for s in result.states],
        }
        click.echo(json.dumps(report, indent=2))
        return
    if prediction is not None:
        click.echo(f"prediction  {prediction}")
    shown = output if len(output) <= 16 else [*output[:16], "…"]
    click.echo(f"output      {m.output} {shown}")
    click.echo(f"commitment  {_hex(m.commitment)}")
    click.echo(f"{f'S_{n - 1}':<12}{_hex(result.state(n - 1))}")
    width = max(len(r[1]) for r in rows)
    twidth = max(len(r[2]) for r in rows)
    click.echo(f"{'value':<5}  {'node':<4}  {'op':<{width}}  {'tensor':<{twidth}}  key")
    for v, op, tensor, key in rows:
        node = str(v - 1) if v else "-"
        click.echo(f"{v:<5}  {node:<4}  {op:<{width}}  {tensor:<{twidth}}  {key}")


@model_group.command("tiny-llama")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--seed", default=0, show_default=True, help="Seed of the weights.")
@click.option("--weights", type=click.Choice(["q4_1", "q8_0"]), default="q4_1", show_default=True)
@click.option("--prompt-len", default=4, show_default=True, help="Prompt tokens (the model's input).")
@click.option("--tokens", default=8, show_default=True, help="Greedy tokens generated.")
def model_tiny_llama(out: str, seed: int, weights: str, prompt_len: int, tokens: int) -> None:
    """Write the tiny LLaMA's generation graph to OUT: 2 layers, hidden 64, seeded weights (never
    committed to the repository; docs/ml-spec.md §10.5). Run it with a .json list of token ids."""
    from opml.ml.format import DType, write_model
    from opml.ml.llama import generation_graph
    from opml.ml.tiny_llama import tiny_llama

    wtype = DType.Q4_1 if weights == "q4_1" else DType.Q8_0
    try:
        gen = generation_graph(tiny_llama(seed, wtype), prompt_len, tokens)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    write_model(gen.model, out)
    click.echo(f"{out}: {len(gen.model.nodes)} nodes, commitment {_hex(gen.model.commitment)}")


def _add_chain_commands() -> None:
    """The commands on a deployed game (opml.chain.commands): model register, task, agents, report."""
    from opml.chain import commands

    model_group.add_command(commands.model_register)
    for command in (commands.task_group, commands.server, commands.challenger, commands.report):
        main.add_command(command)


_add_chain_commands()

if __name__ == "__main__":
    main()
