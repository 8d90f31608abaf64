"""The ``opml`` commands that act on a deployed game (docs/protocol.md), in Ape's style:

    opml model register MODEL [--uri URI]                   register MODEL with this checkout's programs
    opml task submit MODEL_ID INPUT --model FILE [--reward WEI] [--window S] [--single-phase]
    opml task submit MODEL_ID --model LLM (--prompt TEXT | --ids 1,2,3) [--tokens N]   an LLM's task
    opml task status TASK_ID                                the task, its result and its disputes
    opml server --model FILE... [--store DIR] [--lie-node K]     the long-running server agent
    opml challenger --model FILE... [--store DIR]                the long-running challenger agent
    opml report DISPUTE [--out DIR]                          the dispute report (HTML and PNG)

Each takes ``--network ECOSYSTEM:NETWORK:PROVIDER`` (e.g. ``ethereum:sepolia:node`` or
``ethereum:local:http://127.0.0.1:8545``), ``--account ALIAS`` where it sends transactions (an ``ape
accounts`` alias, or ``TEST::N`` for test account N on a local node) and ``--addresses FILE`` (what
``ape run deploy`` wrote; default ``deployments/<ecosystem>-<network>.json``). Every error (no such
account, a network that is wrong or unreachable, no addresses file, a balance below the bond, a
malformed model or input) prints one line and exits non-zero.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from opml.errors import OpmlError

TASK_STATUS = ("none", "open", "answered", "finalized", "rejected", "cancelled")
PHASES = ("none", "defense", "graph", "execution claim", "execution", "step", "resolved")


@dataclass
class Connection:
    """What a command acts with: the game contract and the sending account."""

    game: Any
    account: Any
    network: str


def chain_options(command: Any) -> Any:
    """``--network``, ``--account`` and ``--addresses``."""
    return _chain_options(command, sends=True)


def read_options(command: Any) -> Any:
    """``--network`` and ``--addresses``: for commands that only read the chain."""
    return _chain_options(command, sends=False)


def _chain_options(command: Any, sends: bool) -> Any:
    command = click.option(
        "--addresses",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="The addresses file of `ape run deploy` [default: deployments/<ecosystem>-<network>.json].",
    )(command)
    if sends:
        command = click.option(
            "--account", required=True, help="An `ape accounts` alias, or TEST::N for a local test account."
        )(command)
    return click.option(
        "--network", required=True, help="ECOSYSTEM:NETWORK:PROVIDER, e.g. ethereum:sepolia:node."
    )(command)


def _load_account(alias: str) -> Any:
    from ape import accounts

    if alias.startswith("TEST::"):
        index = alias.removeprefix("TEST::")
        if not index.isdigit():
            raise click.ClickException(f"account {alias!r}: TEST::N needs a number N")
        try:
            return accounts.test_accounts[int(index)]
        except IndexError:
            count = len(accounts.test_accounts)
            raise click.ClickException(
                f"no test account {alias} (there are {count}: TEST::0 … TEST::{count - 1})"
            ) from None
    try:
        return accounts.load(alias)
    except Exception:  # ape raises AccountsError (or IndexError) for an unknown alias
        raise click.ClickException(f"no account {alias!r}: see `ape accounts list`, or use TEST::N") from None


@contextlib.contextmanager
def connect(network: str, alias: str | None, addresses: Path | None) -> Iterator[Connection]:
    """Connect to ``network``, load the account and the game named in the addresses file."""
    from ape import chain, networks, project
    from ape.exceptions import ApeException
    from ape.logging import logger

    from opml.chain.deploy import read_addresses

    logger.set_level("WARNING")  # ape's line per connection and transaction would bury the output
    try:
        context = networks.parse_network_choice(network)
        context.__enter__()
    except (ApeException, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(f"cannot connect to network {network!r}: {first}") from None
    try:
        try:
            chain.blocks.height  # noqa: B018  # an unreachable node fails here, not at connect
        except Exception as exc:
            raise click.ClickException(f"network {network!r} does not answer: {type(exc).__name__}") from None
        here = chain.provider.network
        path = addresses or Path("deployments") / f"{here.ecosystem.name}-{here.name}.json"
        try:
            record = read_addresses(path)
        except OpmlError as exc:
            raise click.ClickException(str(exc)) from None
        address = record["contracts"]["OpmlGame"]
        if not chain.provider.get_code(address):
            raise click.ClickException(
                f"no contract at {address} on {network} (OpmlGame in {path}): "
                "wrong network or addresses file?"
            )
        game = project.OpmlGame.at(address)
        yield Connection(game, None if alias is None else _load_account(alias), network)
    finally:
        context.__exit__(None, None, None)


def _read_model(path: str) -> Any:
    from opml.ml.format import read_model

    try:
        return read_model(path)
    except OpmlError as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror or exc}") from None


def _send(what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
    """One transaction; a revert or a refused signature is a one-line error."""
    from ape.exceptions import ApeException

    try:
        return method(*args, **kwargs)
    except ApeException as exc:
        raise click.ClickException(f"{what} failed: {str(exc).strip().splitlines()[0]}") from None


def _require_funds(account: Any, amount: int, what: str) -> None:
    balance = int(account.balance)
    if balance < amount or balance == 0:  # an empty account cannot send anything, even at no gas price
        raise click.ClickException(
            f"account {account.address} holds {balance} wei, less than the {what} ({amount} wei): "
            "fund it first"
        )


# --- model and task ---------------------------------------------------------------------------------


@click.command("register")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--uri", default="", help="Where the model's manifest and tensors are published.")
@chain_options
def model_register(model: str, uri: str, network: str, account: str, addresses: Path | None) -> None:
    """Register MODEL (*.opml) with this checkout's node and whole-model programs; print its id."""
    from opml.game.agents import registration_args

    m = _read_model(model)
    with connect(network, account, addresses) as c:
        receipt = _send("registerModel", c.game.registerModel, *registration_args(m, uri), sender=c.account)
        model_id = int(receipt.events[0].modelId)
    click.echo(f"model {model_id}: {len(m.nodes)} nodes, commitment 0x{m.commitment.hex()}")


@click.group("task")
def task_group() -> None:
    """Post tasks to a deployed game and follow them."""


@task_group.command("submit")
@click.argument("model_id", type=click.IntRange(min=0))
@click.argument("input_file", metavar="[INPUT]", type=click.Path(dir_okay=False), required=False)
@click.option("--model", "model_file", required=True, help="The model file registered as MODEL_ID.")
@click.option("--prompt", default=None, help="An LLM's prompt, in its chat template (instead of INPUT).")
@click.option("--ids", default=None, help="An LLM's prompt as token ids, comma-separated (instead of INPUT).")
@click.option("--tokens", type=click.IntRange(min=1), default=None, help="An LLM's new tokens [the most].")
@click.option("--reward", type=click.IntRange(min=1), default=10**16, show_default=True, help="wei")
@click.option("--window", type=click.IntRange(min=1), default=None, help="seconds [default: the minimum]")
@click.option("--single-phase", is_flag=True, help="Dispute the whole model in the VM (no graph phase).")
@chain_options
def task_submit(
    model_id: int,
    input_file: str | None,
    model_file: str,
    prompt: str | None,
    ids: str | None,
    tokens: int | None,
    reward: int,
    window: int | None,
    single_phase: bool,
    network: str,
    account: str,
    addresses: Path | None,
) -> None:
    """Post a task: MODEL_ID on INPUT (raw tensor bytes, .npy or .json; a float .npy for a model imported
    from ONNX), or for an LLM (a model from `opml model import`) on --prompt TEXT or --ids, with a reward;
    print its id."""
    import numpy as np

    from opml.ml.onnx_card import model_input

    if (input_file is None) == (prompt is None and ids is None) or (prompt is not None and ids is not None):
        raise click.UsageError("give exactly one of INPUT, --prompt and --ids")
    m = _read_model(model_file)
    if input_file is None:
        if single_phase:  # its whole-model program is ~10^11 steps: no agent could dispute it
            raise click.UsageError("an LLM's tasks are multi-phase: drop --single-phase")
        x = _llm_input(model_file, prompt, ids, tokens)
    else:
        try:
            x = np.asarray(model_input(input_file, model_file, m.input))
        except OpmlError as exc:
            raise click.ClickException(f"{input_file}: {exc}") from None
        except OSError as exc:
            raise click.ClickException(f"{input_file}: {exc.strerror or exc}") from None
    with connect(network, account, addresses) as c:
        if model_id >= int(c.game.modelCount()):
            raise click.ClickException(f"no model {model_id} in the game (it has {int(c.game.modelCount())})")
        if bytes(c.game.model(model_id).commitment) != m.commitment:
            raise click.ClickException(f"model {model_id} is not {model_file} (other commitment)")
        _require_funds(c.account, reward, "reward")
        seconds = int(c.game.minChallengeWindow()) if window is None else window
        receipt = _send(
            "createTask",
            c.game.createTask,
            model_id,
            x.tobytes(),
            seconds,
            not single_phase,
            sender=c.account,
            value=reward,
        )
        event = receipt.events[0]
    click.echo(f"task {int(event.taskId)}: input key 0x{bytes(event.inputKey).hex()}")


def _llm_input(model_file: str, prompt: str | None, ids: str | None, tokens: int | None) -> Any:
    """The task input of an LLM's prompt (text in the chat template, or ids) and new-token count."""
    from opml.ml.llm import LlmModel

    try:
        llm = LlmModel.load(model_file)
        if prompt is not None:
            prompt_ids = llm.prompt_ids(prompt)
        else:
            assert ids is not None
            try:
                prompt_ids = [int(t) for t in ids.split(",")] if ids.strip() else []
            except ValueError:
                raise ValueError(f"--ids {ids!r} is not a comma-separated list of token ids") from None
        return llm.task(prompt_ids, llm.card.max_new if tokens is None else tokens)
    except (OpmlError, ValueError) as exc:
        raise click.ClickException(f"{model_file}: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"{exc.filename or model_file}: {exc.strerror or exc}") from None


@task_group.command("status")
@click.argument("task_id", type=click.IntRange(min=0))
@read_options
def task_status(task_id: int, network: str, addresses: Path | None) -> None:
    """The task, its result and every dispute on it."""
    from ape import chain

    with connect(network, None, addresses) as c:
        game = c.game
        if task_id >= int(game.taskCount()):
            raise click.ClickException(f"no task {task_id} (the game has {int(game.taskCount())})")
        while True:  # one block's view: read again if a block landed meanwhile (a move resolves both)
            head = chain.blocks.height
            lines = _status_lines(game, task_id, head)
            if chain.blocks.height == head:
                break
        click.echo("\n".join(lines))


def _status_lines(game: Any, task_id: int, head: int) -> list[str]:
    t = game.task(task_id)
    mode = "multi-phase" if t.multiPhase else "single-phase"
    lines = [
        f"task {task_id}: {TASK_STATUS[int(t.status)]} (model {int(t.modelId)}, {mode})",
        f"  reward {int(t.reward)} wei, window {int(t.window)} s, input key 0x{bytes(t.inputKey).hex()}",
    ]
    r = game.result(task_id)
    if int(t.status) not in (1, 5):
        ends = int(r.submittedAt) + int(t.window)
        revealed = bytes(r.outputKey) != bytes(32)
        output = f"output key 0x{bytes(r.outputKey).hex()}" if revealed else "output not revealed yet"
        lines.append(f"  result by {r.server}: {output}")
        lines.append(f"  challengeable until {ends}; {int(r.openDisputes)} dispute(s) open")
    for log in game.DisputeOpened.range(0, head + 1, search_topics={"taskId": task_id}):
        d = game.dispute(int(log.disputeId))
        winner = ("", ", server won", ", challenger won")[int(d.winner)]
        lines.append(
            f"  dispute {int(log.disputeId)} by {d.challenger}: {PHASES[int(d.phase)]}"
            f" [{int(d.lo)}, {int(d.hi)}]{winner}"
        )
    return lines


# --- agents and report ------------------------------------------------------------------------------


def _agent_command(role_name: str) -> Any:
    @click.command(role_name)
    @click.option("--model", "models", multiple=True, required=True, help="A model file the agent holds.")
    @click.option(
        "--store",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"Its preimage folder [default: .opml/{role_name}-<address>].",
    )
    @click.option("--interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True, help="s")
    @click.option(
        "--from-block",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Where to start reading the game's events (its deployment block).",
    )
    @chain_options
    def command(**kw: Any) -> None:
        _run_agent(role_name, **kw)

    command.help = (
        "Run the server agent: answer tasks on the held models, defend results, finalize, withdraw."
        if role_name == "server"
        else "Run the challenger agent: check every result on the held models, dispute wrong ones."
    )
    return command


def _run_agent(
    role_name: str,
    models: tuple[str, ...],
    store: Path | None,
    interval: float,
    from_block: int,
    network: str,
    account: str,
    addresses: Path | None,
    lie_node: int | None = None,
    min_reward: int = 1,
    max_open_results: int = 16,
) -> None:
    from opml.game.agents import Agent
    from opml.game.lies import Lie
    from opml.game.policy import AgentPolicy
    from opml.game.solver import Party

    held = [_read_model(path) for path in models]
    role = Party.SERVER if role_name == "server" else Party.CHALLENGER
    with connect(network, account, addresses) as c:
        from ape import chain

        policy = AgentPolicy(min_reward=min_reward, max_open_results=max_open_results)
        # An account that cannot pay the moves of one dispute is misconfigured; one that cannot post a
        # new bond still plays its open disputes (the agent logs each bond it cannot afford).
        _require_funds(c.account, policy.gas_reserve(int(chain.provider.gas_price), 0), "gas of one dispute")
        folder = store or Path(".opml") / f"{role_name}-{c.account.address}"
        lie = None if lie_node is None else Lie.at_node(lie_node)
        agent = Agent(
            c.game,
            c.account,
            role,
            held,
            folder,
            lie=lie,
            policy=policy,
            from_block=from_block,
            log=lambda line: click.echo(line),
        )
        click.echo(
            f"{role_name} {c.account.address} on {network}: game {c.game.address}, {len(held)} model(s)"
        )
        stopping: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM):  # finish the poll in progress, then stop
            signal.signal(signum, lambda received, _frame: stopping.append(received))
        try:
            agent.run(interval, stop=lambda: bool(stopping))
        except OpmlError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{role_name} stopped")


server = _agent_command("server")
server.params[:0] = [
    click.Option(
        ["--min-reward"],
        type=click.IntRange(min=1),
        default=10**12,
        show_default=True,
        help="wei: tasks paying less are not answered.",
    ),
    click.Option(
        ["--max-open-results"],
        type=click.IntRange(min=1),
        default=16,
        show_default=True,
        help="Answers not yet settled beyond which no new task is answered (bonds at stake).",
    ),
]
server.params.insert(
    0,
    click.Option(
        ["--lie-node"],
        type=click.IntRange(min=0),
        default=None,
        help="Lie at this graph node (for demos and tests: the server loses its bond).",
    ),
)
challenger = _agent_command("challenger")


@click.command("report")
@click.argument("dispute", type=click.IntRange(min=0))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True
)
@read_options
def report(dispute: int, out: Path, network: str, addresses: Path | None) -> None:
    """Write the report of DISPUTE: one HTML page (task, verdict, bisection plot, the disassembled step,
    every move with its gas) and its plot as PNG."""
    from opml.game.report import write_report

    with connect(network, None, addresses) as c:
        try:
            page = write_report(c.game, dispute, out)
        except OpmlError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"report written to {page} (plot: {page.with_suffix('.png')})")
