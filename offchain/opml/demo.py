"""The opML story behind `ape run demo` (and `make demo`), on whatever network ape is connected to.

Everything is real: the contracts deployed on the connected node, the committed digits model, the
cross-compiled MIPS programs, and the same agents a user runs (:mod:`opml.game.agents`). Two tasks:

1. an honest server answers, nobody challenges, the window passes and the server is paid;
2. a server lies at one graph node; an honest challenger disputes; phase 1 narrows the graph to that
   node, phase 2 narrows its program to one MIPS instruction, which ``MIPS.step`` executes on-chain;
   the bonds move to the winner.

The chain's clock is moved past windows (local networks only), so the story takes seconds.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from opml.game.agents import TASK_FINALIZED, TASK_REJECTED, Agent, registration_args
from opml.game.lies import Lie
from opml.game.report import write_report
from opml.game.solver import Party, Phase
from opml.ml.format import Model, read_model
from opml.ml.runner import run_model

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
LLM_NAME = "smollm2"
MODEL_NAMES = ("digits_cnn", "digits_mlp", LLM_NAME)
REWARD = 10**16
WINDOW = 7200
LLM_QUESTION = "What is the capital of France?"
LLM_TOKENS = 12
LLM_LIE = ("attention", 17)
"""Where the lying server alters SmolLM2's run by default: this layer's attention at the prompt's last
token."""


@dataclass(frozen=True)
class DemoOptions:
    """``model``: a committed digits model; ``lie_node``: the node the lying server alters (None: the
    middle one); ``multi_phase``: the game's mode; ``image``: index into the digits test split."""

    model: str = "digits_cnn"
    lie_node: int | None = None
    multi_phase: bool = True
    image: int = 0
    report_dir: Path = Path("reports")


@dataclass
class DemoResult:
    """What the demo did, read back from the chain and the agents."""

    honest_task: int
    disputed_task: int
    dispute_id: int
    winner: Party
    node: int | None
    step_position: int
    rounds: dict[str, int]
    gas: dict[str, list[int]]
    vm_steps: int
    vm_seconds: float
    native_seconds: float
    nets: dict[str, int] = field(default_factory=dict)
    report: Path | None = None
    context: list[tuple[str, str]] = field(default_factory=list)
    """What the task was, what each server answered, where the lie was and what phase 1 found."""

    @property
    def total_gas(self) -> int:
        return sum(sum(v) for v in self.gas.values())


@dataclass(frozen=True)
class _Subject:
    """What a story is about: the model, the task's input, and how to say what a run answered and what
    a node computes."""

    model: Model
    x: np.ndarray
    task_text: str
    answer: Callable[[np.ndarray], str]
    node_text: Callable[[int], str]
    default_lie: int
    context: tuple[tuple[str, str], ...] = ()


def _digits_subject(options: DemoOptions) -> _Subject:
    model = read_model(MODELS / f"{options.model}.opml")
    x = demo_image(model, options.image)
    return _Subject(
        model,
        x,
        "an 8×8 digit",
        lambda output: f"the label {int(output.reshape(-1)[0])}",
        lambda k: f"node {k} ({model.nodes[k].op.name.lower()})",
        len(model.nodes) // 2,
    )


def _llm_subject(out: Console) -> _Subject:
    from opml.ml.llm import LlmModel, import_gguf
    from opml.ml.tokenizer import smollm2_gguf

    path = MODELS / f"{LLM_NAME}.opml"
    if not path.is_file():
        with out.status(f"Importing SmolLM2-135M-Instruct's GGUF into {path} (once, about a minute) …"):
            import_gguf(smollm2_gguf(), path, 48, 16)
    llm = LlmModel.load(path)
    ids = llm.prompt_ids(LLM_QUESTION)
    x = llm.task(ids, LLM_TOKENS)
    labels = llm.card.labels

    def node_text(k: int) -> str:
        label = labels[k]
        token = int(x[2 + label.step]) if label.step < len(ids) else None
        at = f"token {label.step}" + (f" ({llm.decode([token])!r})" if token is not None else "")
        layer = "" if label.layer is None else f" in layer {label.layer}"
        op = llm.model.nodes[k].op.name.lower()
        what = label.role if op == label.role else f"{label.role} ({op})"
        return f"node {k}: {what}{layer} at {at}"

    role, layer = LLM_LIE
    lie = max(k for k, lb in enumerate(labels) if (lb.role, lb.layer, lb.step) == (role, layer, len(ids) - 1))
    return _Subject(
        llm.model,
        x,
        f"the question {LLM_QUESTION!r}: {len(ids)} tokens in the chat template, {LLM_TOKENS} new tokens",
        lambda output: repr(llm.decode(t for t in llm.answer(output) if t != llm.card.stop_id)),
        node_text,
        lie,
        (("prompt", LLM_QUESTION),),
    )


def demo_image(model: Model, index: int) -> np.ndarray:
    """Image ``index`` of the digits test split (models/train_digits.py), in the model's input shape."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    _, test = train_test_split(
        np.arange(len(digits.target)), test_size=0.3, random_state=0, stratify=digits.target
    )
    return np.asarray(digits.images[test][index], np.int8).reshape(model.input.shape)


def _eth(wei: int) -> str:
    return f"{wei / 10**18:+.4f} ETH"


class _Stage:
    """Drives agents until ``done()``, moving the clock past windows and deadlines when nobody acts."""

    def __init__(self, chain: Any, agents: list[Agent], skip: int):
        self.chain, self.agents, self.skip = chain, agents, skip

    def until(
        self, done: Callable[[], bool], on_poll: Callable[[], None] = lambda: None, limit: int = 500
    ) -> None:
        for _ in range(limit):
            if done():
                return
            sent = sum(agent.poll() for agent in self.agents)
            on_poll()
            if sent == 0 and not done():
                self.chain.pending_timestamp += self.skip
                self.chain.mine()
        raise RuntimeError("the demo did not reach the expected state; see the agents' log above")


def run_demo(
    deployment: Any, deployer: Any, options: DemoOptions = DemoOptions(), console: Console | None = None
) -> DemoResult:
    """Tell both stories on ``deployment`` and print the summary table."""
    from ape import accounts, chain

    out = console or Console()
    game = deployment.game
    if options.model not in MODEL_NAMES:
        raise ValueError(f"unknown model {options.model!r}: choose one of {', '.join(MODEL_NAMES)}")
    subject = _llm_subject(out) if options.model == LLM_NAME else _digits_subject(options)
    model, x = subject.model, subject.x
    n = len(model.nodes)
    lie_node = subject.default_lie if options.lie_node is None else options.lie_node
    if not 0 <= lie_node < n:
        raise ValueError(f"--lie-node must be in 0 … {n - 1} for {options.model}")
    requester, honest_server, liar_account, challenger_account = accounts.test_accounts[1:5]
    skip = max(int(game.moveWindow()), WINDOW) + 1
    log_lines: list[str] = []

    out.rule(
        f"opML on {chain.provider.network.ecosystem.name}:{chain.provider.network.name}:{chain.provider.name}"
    )
    out.print(
        f"OpmlGame at {game.address}: server bond {_eth(int(game.serverBond()))[1:]}, challenger bond "
        f"{_eth(int(game.challengerBond()))[1:]}, a move window of {int(game.moveWindow())} s"
    )
    receipt = game.registerModel(*registration_args(model, f"file://{MODELS}"), sender=deployer)
    model_id = int(receipt.events[0].modelId)
    out.print(
        f"Registered {options.model} as model {model_id}: {n} graph nodes, "
        f"commitment 0x{model.commitment.hex()[:16]}…"
    )
    with out.status("Computing the honest answer natively …"):
        honest = subject.answer(run_model(model, x).output)

    with tempfile.TemporaryDirectory(prefix="opml-demo-") as tmp:

        def agent(account: Any, role: Party, name: str, lie: Lie | None = None) -> Agent:
            return Agent(game, account, role, [model], Path(tmp) / name, lie=lie, log=log_lines.append)

        server = agent(honest_server, Party.SERVER, "server")
        liar = agent(liar_account, Party.SERVER, "liar", Lie.at_node(lie_node))
        challenger = agent(challenger_account, Party.CHALLENGER, "challenger")

        # --- story 1 -----------------------------------------------------------------------------------
        out.rule("Story 1: an honest answer")
        task1 = _post(game, model_id, x, requester, options.multi_phase)
        out.print(
            f"The requester posts task {task1} ({subject.task_text}, reward {_eth(REWARD)[1:]}, "
            f"window {WINDOW} s)."
        )
        stage = _Stage(chain, [server, challenger], skip)
        with out.status("The server and the challenger compute the task natively …"):
            stage.until(
                lambda: (
                    int(game.task(task1).status) == TASK_FINALIZED and int(game.credit(server.address)) == 0
                )
            )
        out.print(
            f"The server answers {honest}; the challenger recomputes it natively, agrees and stays quiet."
        )
        out.print("The window passes: the result finalizes and the server withdraws reward and bond.")

        # --- story 2 -----------------------------------------------------------------------------------
        out.rule(f"Story 2: a server lies at {subject.node_text(lie_node)}")
        task2 = _post(game, model_id, x, requester, options.multi_phase)
        stage = _Stage(chain, [liar, challenger], skip)
        with out.status("The lying server and the challenger compute the task natively …"):
            stage.until(lambda: int(game.disputeCount()) > 0)
        dispute_id = int(game.disputeCount()) - 1
        lied = subject.answer(liar._runs[task2].output)
        answer = (
            f"{lied}, which happens to be right, with claimed states S_{lie_node} … S_{n - 1} that"
            " are not the model's run"
            if lied == honest
            else f"the wrong answer {lied} (the model says {honest})"
        )
        out.print(
            f"Task {task2}: the lying server alters node {lie_node}'s output and every later one, and bonds "
            f"{answer}. The challenger's native run disagrees with the claimed S_{n - 1}: it opens dispute "
            f"{dispute_id} with its own bond."
        )
        rounds = _play_dispute(out, game, dispute_id, stage, n, options.multi_phase)
        stage.until(
            lambda: (
                int(game.task(task2).status) == TASK_REJECTED
                and bool(game.dispute(dispute_id).shareClaimed)
                and all(int(game.credit(a.address)) == 0 for a in (liar, challenger))
            )
        )
        game.withdraw(sender=requester)  # the reward back and half the liar's bond
        paid = {
            requester.address: 2 * REWARD,
            honest_server.address: int(game.serverBond()),
            liar_account.address: int(game.serverBond()) + int(game.challengerBond()),  # bond + stake
            challenger_account.address: int(game.challengerBond()),
        }
        names = {
            requester.address: "requester",
            honest_server.address: "honest server",
            liar_account.address: "lying server",
            challenger_account.address: "challenger",
        }
        nets = {names[a]: _withdrawn(game, a) - p for a, p in paid.items()}

    d = game.dispute(dispute_id)
    winner = Party(int(d.winner))
    (played,) = [
        e for e in game.StepPlayed.range(0, chain.blocks.height + 1) if int(e.disputeId) == dispute_id
    ]
    node = int(d.node) if options.multi_phase else None
    where = f"node {node}'s program" if node is not None else "the whole-model program"
    out.print(
        f"One step left: {where} at step {int(played.position):,}. The challenger has "
        f"MIPS.step execute it on-chain; the post-state is not the server's claim."
    )
    if node is not None:
        out.print(f"Phase 1 found {subject.node_text(node)}.")
    out.print(
        f"[bold]{winner.name.lower()} wins[/bold]: the server's S_{lie_node} was not the output of node "
        f"{lie_node} on the agreed S_{lie_node - 1}, so its program could not reach a valid exit."
    )
    gas: dict[str, list[int]] = {}
    for a in (liar, challenger):
        for move in a.moves:
            if move.dispute_id == dispute_id or move.kind in ("challenge", "oracle"):
                gas.setdefault(move.kind, []).append(move.gas)
    result = DemoResult(
        task1,
        task2,
        dispute_id,
        winner,
        node,
        int(played.position),
        rounds,
        gas,
        challenger.vm_steps,
        challenger.vm_seconds,
        challenger.native_seconds,
        nets,
    )
    context = [
        *subject.context,
        ("honest answer", honest),
        ("lying answer", lied),
        ("the lie", subject.node_text(lie_node)),
    ]
    if node is not None:
        context.append(("phase 1 found", subject.node_text(node)))
    result.report = write_report(game, dispute_id, options.report_dir, context)
    result.context = context
    _summary(out, result, options)
    return result


def _post(game: Any, model_id: int, x: np.ndarray, requester: Any, multi_phase: bool) -> int:
    receipt = game.createTask(model_id, x.tobytes(), WINDOW, multi_phase, sender=requester, value=REWARD)
    return int(receipt.events[0].taskId)


def _play_dispute(
    out: Console, game: Any, dispute_id: int, stage: _Stage, n: int, multi_phase: bool
) -> dict[str, int]:
    """Plays the dispute to its end, with one progress bar per phase (rounds done of at most ⌈log2 n⌉)."""
    rounds = {"graph": 0, "vm": 0}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} rounds  {task.fields[interval]}"),
    )
    with Progress(*columns, console=out, transient=False) as progress:
        bars: dict[str, Any] = {}
        if multi_phase and n > 1:
            bars["graph"] = progress.add_task(
                "phase 1: graph nodes ", total=math.ceil(math.log2(n)), interval=""
            )

        def update() -> None:
            d = game.dispute(dispute_id)
            phase = Phase(int(d.phase))
            if phase is Phase.GRAPH:
                rounds["graph"] = _verdicts(game, dispute_id)
                progress.update(
                    bars["graph"], completed=rounds["graph"], interval=f"[{int(d.lo)}, {int(d.hi)}]"
                )
            elif "graph" in bars and rounds["vm"] == 0:
                progress.update(bars["graph"], interval=f"node {int(d.node)}")
            if phase in (Phase.EXECUTION, Phase.STEP):
                if "vm" not in bars:
                    steps = int(d.hi) if rounds["vm"] == 0 and int(d.lo) == 0 else None
                    total = math.ceil(math.log2(max(steps or 2, 2)))
                    if "graph" in bars:
                        rounds["graph"] = _verdicts(game, dispute_id)
                        progress.update(bars["graph"], completed=rounds["graph"], total=rounds["graph"])
                    bars["vm"] = progress.add_task("phase 2: MIPS steps  ", total=total, interval="")
                rounds["vm"] = _verdicts(game, dispute_id) - rounds["graph"]
                progress.update(
                    bars["vm"], completed=rounds["vm"], interval=f"[{int(d.lo):,}, {int(d.hi):,}]"
                )

        stage.until(lambda: Phase(int(game.dispute(dispute_id).phase)) is Phase.RESOLVED, update)
        update()
        if "vm" in bars:
            progress.update(bars["vm"], total=rounds["vm"])
    return rounds


def _withdrawn(game: Any, address: str) -> int:
    from ape import chain

    return sum(
        int(e.amount) for e in game.Withdrawn.range(0, chain.blocks.height + 1) if e.account == address
    )


def _verdicts(game: Any, dispute_id: int) -> int:
    from ape import chain

    return sum(1 for e in game.Responded.range(0, chain.blocks.height + 1) if int(e.disputeId) == dispute_id)


def _summary(out: Console, r: DemoResult, options: DemoOptions) -> None:
    table = Table(title="Summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    mode = "multi-phase" if options.multi_phase else "single-phase"
    table.add_row("model, mode", f"{options.model}, {mode}")
    for what, text in r.context:
        table.add_row(what, text)
    table.add_row("winner", r.winner.name.lower())
    table.add_row("disputed node", "-" if r.node is None else str(r.node))
    table.add_row("rounds (phase 1 + phase 2)", f"{r.rounds['graph']} + {r.rounds['vm']}")
    for kind, gas in sorted(r.gas.items()):
        table.add_row(f"gas: {kind} ×{len(gas)}", f"{sum(gas):,}" if len(gas) > 1 else f"{gas[0]:,}")
    table.add_row("gas in total", f"{r.total_gas:,}")
    table.add_row("VM steps run by the challenger", f"{r.vm_steps:,}")
    table.add_row(
        "native inference / VM trace time", f"{r.native_seconds * 1e3:.1f} ms / {r.vm_seconds * 1e3:.0f} ms"
    )
    for who, net in r.nets.items():
        table.add_row(f"net of the game: {who}", _eth(net))
    table.add_row("dispute report", str(r.report))
    out.print(table)
