"""The dispute report (`opml report`, the demo): one self-contained HTML page, its plot also as PNG.

Everything in it is read from the chain: the game's events for the dispute (every move, by
transaction), the task and its model, and the step transaction's calldata (the pre-state and its
witness) with the VM's ``StepExecuted`` event (the post-state). The disputed instruction is decoded
from the witness itself and disassembled with capstone; the memory it touched is what the step read
and wrote while it was replayed over the witness (docs/vm-spec.md §3.3).
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode

from opml.errors import OpmlError
from opml.game.solver import Party, Phase
from opml.vm.state import decode_state
from opml.vm.step import step as vm_step
from opml.vm.witness import LEAF_SIZE, ProofMemory

REGISTER_NAMES = (
    *("zero", "at", "v0", "v1", "a0", "a1", "a2", "a3", "t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"),
    *("s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "t8", "t9", "k0", "k1", "gp", "sp", "fp", "ra"),
)
MOVE_OF_EVENT = (  # the move a transaction made, by the first of these events it emitted
    ("DisputeOpened", "challenge"),
    ("DisputeDefended", "defend"),
    ("Responded", "respond"),
    ("Bisected", "bisect"),
    ("ExecutionClaimed", "claimExecution"),
    ("LocalValuesLoaded", "loadLocalValues"),
    ("StepPlayed", "step"),
    ("BondShareClaimed", "claimBondShare"),
    ("DisputeResolved", "timeout"),
)


class ReportError(OpmlError):
    """Raised when a dispute cannot be reported (unknown id, not started)."""


@dataclass(frozen=True)
class Move:
    kind: str
    sender: str
    txn_hash: str
    block: int
    gas: int


@dataclass(frozen=True)
class Interval:
    phase: int  # 1 graph, 2 VM
    round: int  # 0: the start of the phase
    lo: int
    hi: int


@dataclass(frozen=True)
class StepDetail:
    """The executed instruction: where, what, and its effect."""

    position: int
    pc: int
    word: int
    disassembly: str
    registers_before: dict[str, int]
    registers_after: dict[str, int]
    memory: list[tuple[str, int, int, int | None]]  # (read/write, address, before, after)
    txn_hash: str
    post_hash: str  # what MIPS.step computed
    claimed_hash: str  # hiHash, the claim at that position
    claimed_by: str  # hiParty


@dataclass
class DisputeReport:
    dispute_id: int
    task_id: int
    model_id: int
    model_commitment: str
    nodes: int
    multi_phase: bool
    requester: str
    server: str
    challenger: str
    input_key: str
    output_key: str
    phase: str
    winner: str
    by_timeout: bool | None
    node: int | None
    moves: list[Move] = field(default_factory=list)
    path: list[Interval] = field(default_factory=list)
    step: StepDetail | None = None
    context: list[tuple[str, str]] = field(default_factory=list)
    """Rows the caller adds to the task table (an LLM's prompt, answers, what the disputed node is)."""

    @property
    def total_gas(self) -> int:
        return sum(m.gas for m in self.moves)


def collect(game: Any, dispute_id: int) -> DisputeReport:
    """Read dispute ``dispute_id`` of ``game`` (an ape contract instance) from the chain."""
    from ape import chain, project

    if not 0 <= dispute_id < int(game.disputeCount()):
        raise ReportError(f"dispute {dispute_id} does not exist (the game has {int(game.disputeCount())})")
    d = game.dispute(dispute_id)
    task = game.task(int(d.taskId))
    result = game.result(int(d.taskId))
    model = game.model(int(task.modelId))
    head = chain.blocks.height + 1
    logs = []
    for name in (*(event for event, _ in MOVE_OF_EVENT), "PhaseOneEnded"):  # each event queried once
        logs += [
            (name, log) for log in getattr(game, name).range(0, head, search_topics={"disputeId": dispute_id})
        ]
    logs.sort(key=lambda item: (item[1].block_number, item[1].log_index))
    by_txn: dict[str, list[tuple[str, Any]]] = {}
    for name, log in logs:
        by_txn.setdefault(str(log.transaction_hash), []).append((name, log))
    report = DisputeReport(
        dispute_id=dispute_id,
        task_id=int(d.taskId),
        model_id=int(task.modelId),
        model_commitment="0x" + bytes(model.commitment).hex(),
        nodes=int(model.nodeCount),
        multi_phase=bool(task.multiPhase),
        requester=str(task.requester),
        server=str(result.server),
        challenger=str(d.challenger),
        input_key="0x" + bytes(task.inputKey).hex(),
        output_key="0x" + bytes(result.outputKey).hex(),
        phase=Phase(int(d.phase)).name.lower().replace("_", " "),
        winner=Party(int(d.winner)).name.lower(),
        by_timeout=None,
        node=int(d.node) if task.multiPhase and int(d.phase) >= Phase.EXECUTION_CLAIM else None,
    )
    for txn_hash, events in by_txn.items():
        names = {name for name, _ in events}
        kind = next(move for event, move in MOVE_OF_EVENT if event in names)
        receipt = chain.provider.get_receipt(txn_hash)
        report.moves.append(
            Move(kind, str(receipt.sender), txn_hash, events[0][1].block_number, int(receipt.gas_used))
        )
        for name, log in events:
            if name == "DisputeResolved":
                report.by_timeout = bool(log.byTimeout)
    report.path = _path(logs, int(model.nodeCount) if task.multiPhase else None)
    played = [log for name, log in logs if name == "StepPlayed"]
    if played:
        claim = ("0x" + bytes(d.hiHash).hex(), Party(int(d.hiParty)).name.lower())
        report.step = _step_detail(played[0], project.MIPS.at(game.vm()), claim)
    return report


def _path(logs: list[tuple[str, Any]], nodes: int | None) -> list[Interval]:
    """The interval after every verdict: phase 1 from ``[0, N]``, phase 2 from ``[0, steps]``."""
    out: list[Interval] = []
    phase, lo, hi = (1, 0, nodes) if nodes is not None and nodes > 1 else (0, 0, 0)
    if phase:
        out.append(Interval(1, 0, lo, hi))
    for name, log in logs:
        if name == "ExecutionClaimed":
            phase, lo, hi = 2, 0, int(log.steps)
            out.append(Interval(2, 0, lo, hi))
        elif name == "Responded" and phase:
            position = int(log.position)
            lo, hi = (position, hi) if log.agree else (lo, position)
            out.append(Interval(phase, out[-1].round + 1, lo, hi))
    return out


class _LoggingProofMemory(ProofMemory):
    """A witness's memory that notes every word the step reads and writes."""

    def __init__(self, root: bytes, proof: bytes) -> None:
        super().__init__(root, proof)
        self.accesses: list[tuple[str, int, int, int | None]] = []

    def read_u32(self, addr: int) -> int:
        value = super().read_u32(addr)
        self.accesses.append(("read", addr, value, None))
        return value

    def write_u32(self, addr: int, value: int) -> None:
        before = super().read_u32(addr)
        super().write_u32(addr, value)
        self.accesses.append(("write", addr, before, value))


def _registers(state: Any) -> dict[str, int]:
    regs = {name: int(v) for name, v in zip(REGISTER_NAMES, state.registers, strict=True)}
    regs.update(pc=state.pc, nextPC=state.next_pc, hi=state.hi, lo=state.lo)
    regs.update(exited=int(state.exited), exitCode=state.exit_code, step=state.step)
    return regs


def _step_detail(played: Any, vm: Any, claim: tuple[str, str]) -> StepDetail:
    from ape import chain
    from capstone import CS_ARCH_MIPS, CS_MODE_LITTLE_ENDIAN, CS_MODE_MIPS32, Cs

    receipt = chain.provider.get_receipt(str(played.transaction_hash))
    _, state_data, proof = abi_decode(["uint256", "bytes", "bytes"], bytes(receipt.transaction.data)[4:])
    [executed] = receipt.decode_logs(vm.StepExecuted)
    memory = _LoggingProofMemory(state_data[:LEAF_SIZE], proof)
    pre = decode_state(state_data, memory)  # type: ignore[arg-type]  # duck-typed memory
    before = _registers(pre)
    word = memory.read_u32(pre.pc)
    memory.accesses.clear()
    pre.stdout = pre.stderr = None
    # A preimage system call needs the oracle: its memory effect is left out (the registers come from
    # the on-chain post-state either way).
    with contextlib.suppress(OpmlError):
        vm_step(pre, None)
    accesses = [a for a in memory.accesses if not (a[0] == "read" and a[1] == before["pc"])]
    post_data = bytes(executed.postState)
    post = decode_state(post_data, ProofMemory(post_data[:LEAF_SIZE], b""))  # type: ignore[arg-type]
    disassembler = Cs(CS_ARCH_MIPS, CS_MODE_MIPS32 + CS_MODE_LITTLE_ENDIAN)
    decoded = list(disassembler.disasm(word.to_bytes(4, "little"), before["pc"]))
    text = f"{decoded[0].mnemonic} {decoded[0].op_str}".strip() if decoded else f".word 0x{word:08x}"
    return StepDetail(
        int(played.position),
        before["pc"],
        word,
        text,
        before,
        _registers(post),
        accesses,
        str(played.transaction_hash),
        "0x" + bytes(played.postState).hex(),
        *claim,
    )


def render_plot(report: DisputeReport) -> bytes:
    """PNG: the width of the disputed interval after every round, per phase (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for ax, phase, title in ((axes[0], 1, "phase 1: graph nodes"), (axes[1], 2, "phase 2: MIPS steps")):
        points = [i for i in report.path if i.phase == phase]
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.set_ylabel("hi − lo")
        if not points:
            ax.text(0.5, 0.5, "no rounds", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.step([p.round for p in points], [p.hi - p.lo for p in points], where="post", marker="o")
        ax.set_yscale("log", base=2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"Dispute {report.dispute_id}: the disputed interval per round")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _esc(value: object) -> str:
    return html.escape(str(value))


def render_html(report: DisputeReport, png: bytes) -> str:
    """One self-contained page: no script, no external resource (the plot is an inline PNG)."""
    roles = {report.server: "server", report.challenger: "challenger"}
    rows = "".join(
        f"<tr><td>{_esc(m.kind)}</td><td>{roles.get(m.sender, 'anyone')}</td>"
        f"<td class=mono>{_esc(m.sender)}</td>"
        f"<td class=mono>{_esc(m.txn_hash)}</td><td>{m.block}</td><td class=num>{m.gas:,}</td></tr>"
        for m in report.moves
    )
    path = "".join(
        f"<tr><td>{i.phase}</td><td>{i.round}</td><td class=num>{i.lo:,}</td><td class=num>{i.hi:,}</td></tr>"
        for i in report.path
    )
    verdict = f"{report.winner} wins" + (" (by timeout)" if report.by_timeout else "")
    if report.winner == "none":
        verdict = f"not resolved yet (phase: {report.phase})"
    step_html = "<p>No step was executed in this dispute.</p>"
    if report.step is not None:
        s = report.step
        regs = "".join(
            f"<tr{' class=changed' if s.registers_before[r] != s.registers_after[r] else ''}><td>{r}</td>"
            f"<td class=mono>0x{s.registers_before[r]:08x}</td>"
            f"<td class=mono>0x{s.registers_after[r]:08x}</td></tr>"
            for r in s.registers_before
        )
        mem = (
            "".join(
                f"<tr><td>{kind}</td><td class=mono>0x{addr:08x}</td><td class=mono>0x{before:08x}</td>"
                f"<td class=mono>{'' if after is None else f'0x{after:08x}'}</td></tr>"
                for kind, addr, before, after in s.memory
            )
            or "<tr><td colspan=4>no data memory access (beyond the instruction fetch)</td></tr>"
        )
        other = "challenger" if s.claimed_by == "server" else "server"
        equal = s.post_hash == s.claimed_hash
        outcome = f"equal: the {s.claimed_by} wins" if equal else f"different: the {other} wins"
        step_html = (
            f"<p>Step {s.position:,} of the disputed program, executed on-chain in "
            f"<span class=mono>{_esc(s.txn_hash)}</span>:</p>"
            f"<pre id=disassembly>0x{s.pc:08x}:  {s.word:08x}    {_esc(s.disassembly)}</pre>"
            f"<p>Post-state hash computed on-chain: <span class=mono>{s.post_hash}</span><br>"
            f"claimed at step {s.position + 1:,} by the {s.claimed_by}: "
            f"<span class=mono>{s.claimed_hash}</span> &rarr; {outcome}. (The top byte of a state hash is"
            " its status: 0 valid exit, 1 invalid exit, 2 panic, 3 running.)</p>"
            "<h3>Registers before and after</h3>"
            "<table><tr><th>register</th><th>before</th><th>after</th></tr>"
            f"{regs}</table><h3>Memory it touched</h3><table><tr><th></th><th>address</th><th>before</th>"
            f"<th>after</th></tr>{mem}</table>"
        )
    node = "whole model (single-phase)" if report.node is None else f"node {report.node} of {report.nodes}"
    context = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in report.context)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>opML dispute {report.dispute_id}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }}
.mono, pre {{ font-family: monospace; }} .num {{ text-align: right; }}
tr.changed {{ background: #fff3c4; }}
#disassembly {{ background: #e8f0fe; padding: 0.8em; font-size: 1.2em; }}
</style></head><body>
<h1>opML dispute {report.dispute_id}: {_esc(verdict)}</h1>
<h2>Task and model</h2>
<table>
<tr><td>task</td><td>{report.task_id} ({"multi-phase" if report.multi_phase else "single-phase"})</td></tr>
<tr><td>model</td><td>{report.model_id}: {report.nodes} nodes, commitment
<span class=mono>{report.model_commitment}</span></td></tr>
<tr><td>requester</td><td class=mono>{_esc(report.requester)}</td></tr>
<tr><td>server</td><td class=mono>{_esc(report.server)}</td></tr>
<tr><td>challenger</td><td class=mono>{_esc(report.challenger)}</td></tr>
<tr><td>input key</td><td class=mono>{report.input_key}</td></tr>
<tr><td>claimed output key</td><td class=mono>{report.output_key}</td></tr>
<tr><td>disputed</td><td>{node}</td></tr>
{context}
</table>
<h2>Bisection</h2>
<img id=plot alt="the disputed interval per round"
 src="data:image/png;base64,{base64.b64encode(png).decode()}">
<h2>The disputed instruction</h2>
{step_html}
<h2>Moves</h2>
<table><tr><th>move</th><th>by</th><th>sender</th><th>transaction</th><th>block</th><th>gas</th></tr>{rows}
<tr><td colspan=5>total</td><td class=num>{report.total_gas:,}</td></tr></table>
<h2>The interval after each round</h2>
<table><tr><th>phase</th><th>round</th><th>lo</th><th>hi</th></tr>{path}</table>
</body></html>
"""


def write_report(game: Any, dispute_id: int, out_dir: Path, context: Sequence[tuple[str, str]] = ()) -> Path:
    """Write ``dispute-<id>.html`` and ``dispute-<id>.png`` under ``out_dir``; return the HTML's path.
    ``context``: (what, text) rows for the task table."""
    report = collect(game, dispute_id)
    report.context = list(context)
    png = render_plot(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"dispute-{dispute_id}.png").write_bytes(png)
    page = out_dir / f"dispute-{dispute_id}.html"
    page.write_text(render_html(report, png))
    return page
