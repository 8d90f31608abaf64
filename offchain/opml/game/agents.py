"""Server and challenger agents: they watch an ``OpmlGame`` on any ape network, answer or check
tasks, open disputes and play every move before its deadline (docs/protocol.md).

An agent keeps no state of its own that it cannot rebuild: everything it acts on is read from the
chain on every :meth:`Agent.poll` (tasks, results, disputes, the local values of phase 2), and its
traces are recomputed from the model files and the task's input, so a restarted agent carries on where
the chain is. It checks every off-chain input against its key before using it (the model against the
registration, the input against the task's key) and bounds the VM steps a program may take.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from opml.game.lies import Lie, LyingExecutionTrace
from opml.game.solver import (
    Bisect,
    ClaimExecution,
    DisputeView,
    Move,
    Party,
    Phase,
    PlayStep,
    Respond,
    Timeout,
    Traces,
    execution_claimed_state,
    next_move,
)
from opml.game.traces import ExecutionTrace, GraphTrace, StepProof, program_state_hash
from opml.ml.errors import ProgramRunError
from opml.ml.format import Model, as_array, tensor_key
from opml.ml.phase import (
    EXIT_VALID,
    MODEL_PROGRAM,
    NODE_PROGRAM,
    model_program_setup,
    node_program_setup,
    run_program,
)
from opml.ml.runner import RunResult, run_model
from opml.oracle.chunk_tree import ChunkTree
from opml.oracle.client import OracleClient
from opml.oracle.keys import KeyType, key_type
from opml.oracle.store import PreimageStore
from opml.vm.elf import load_elf

TASK_OPEN, TASK_ANSWERED, TASK_FINALIZED, TASK_REJECTED, TASK_CANCELLED = 1, 2, 3, 4, 5
DEFAULT_MAX_VM_STEPS = 10_000_000_000
"""Steps after which an agent stops tracing a program: far above any model the format allows."""


def canonical_program_states() -> tuple[bytes, bytes]:
    """The initial state hashes of the node and whole-model programs built from this checkout."""
    return program_state_hash(load_elf(NODE_PROGRAM)), program_state_hash(load_elf(MODEL_PROGRAM))


def registration_args(model: Model, uri: str = "") -> tuple[Any, ...]:
    """The arguments of ``registerModel`` for ``model`` with this checkout's programs."""
    node, whole = canonical_program_states()
    return (model.commitment, len(model.nodes), node, whole, uri)


def output_proof(run: RunResult) -> tuple[bytes, bytes, list[bytes]]:
    """``(output bytes, stateRoot, siblings)`` for ``submitResult``: the output key is leaf N of the
    chunk tree of ``S_{N−1}``'s preimage."""
    n = len(run.keys) - 1
    tree = ChunkTree.from_bytes(b"".join(run.keys))
    return run.output.tobytes(), bytes(tree.root), list(tree.siblings(n))


@dataclass
class MoveRecord:
    """One transaction an agent sent."""

    kind: str
    dispute_id: int | None
    gas: int
    txn_hash: str


@dataclass
class _TaskView:
    task_id: int
    requester: str
    model_id: int
    window: int
    multi_phase: bool
    status: int
    input_key: bytes


@dataclass
class Agent:
    """One party: ``role`` is :data:`Party.SERVER` or :data:`Party.CHALLENGER`.

    ``models`` are the model files it holds; it serves and checks only tasks on registrations that match
    one of them and this checkout's programs. An agent given ``lie`` computes every run with that lie
    (:mod:`opml.game.lies`): a lying server answers with it, a lying challenger disputes honest results
    with it.
    """

    game: Any
    account: Any
    role: Party
    models: Sequence[Model]
    store_dir: Path
    lie: Lie | None = None
    max_vm_steps: int = DEFAULT_MAX_VM_STEPS
    log: Callable[[str], None] = print
    moves: list[MoveRecord] = field(default_factory=list)
    vm_steps: int = 0
    vm_seconds: float = 0.0
    native_seconds: float = 0.0
    _runs: dict[int, RunResult] = field(default_factory=dict)
    _inputs: dict[int, npt.NDArray[Any]] = field(default_factory=dict)
    _executions: dict[int, Any] = field(default_factory=dict)
    _verified: dict[int, Model | None] = field(default_factory=dict)
    _servers: dict[int, str] = field(default_factory=dict)
    _settled_tasks: set[int] = field(default_factory=set)
    _resolved_disputes: set[int] = field(default_factory=set)
    _polled_tasks: dict[int, _TaskView] = field(default_factory=dict)
    _checked: set[int] = field(default_factory=set)
    _refused: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        from ape import project

        self.oracle = project.PreimageOracle.at(self.game.oracle())
        self.store = PreimageStore(self.store_dir)
        self.address = str(self.account.address)
        self._programs = canonical_program_states()

    # --- chain reads -----------------------------------------------------------------------------

    def _now(self) -> int:
        from ape import chain

        return int(chain.blocks.head.timestamp)

    def _task(self, task_id: int) -> _TaskView:
        t = self.game.task(task_id)
        return _TaskView(
            task_id,
            str(t.requester),
            int(t.modelId),
            int(t.window),
            bool(t.multiPhase),
            int(t.status),
            bytes(t.inputKey),
        )

    def _dispute(self, dispute_id: int) -> DisputeView:
        d = self.game.dispute(dispute_id)
        return DisputeView(
            dispute_id=dispute_id,
            task_id=int(d.taskId),
            challenger=str(d.challenger),
            phase=Phase(int(d.phase)),
            turn=Party(int(d.turn)),
            winner=Party(int(d.winner)),
            deadline=int(d.deadline),
            lo=int(d.lo),
            hi=int(d.hi),
            node=int(d.node),
            lo_hash=bytes(d.loHash),
            hi_hash=bytes(d.hiHash),
            hi_party=Party(int(d.hiParty)),
            mid_hash=bytes(d.midHash),
            claimed_state=bytes(d.claimedState),
        )

    def _model_for(self, model_id: int) -> Model | None:
        """The held model that registration ``model_id`` names, if it matches it and our programs."""
        if model_id not in self._verified:
            m = self.game.model(model_id)
            found = None
            for model in self.models:
                if (
                    bytes(m.commitment) == model.commitment
                    and int(m.nodeCount) == len(model.nodes)
                    and (bytes(m.nodeProgram), bytes(m.modelProgram)) == self._programs
                ):
                    found = model
            self._verified[model_id] = found
        return self._verified[model_id]

    def _input(self, task: _TaskView, model: Model) -> npt.NDArray[Any] | None:
        """The task's input from its ``TaskCreated`` event (or the store), checked against its key."""
        if task.task_id not in self._inputs:  # an input that is not available yet is looked for again
            data = None
            from ape import chain

            head = chain.blocks.height
            for log in self.game.TaskCreated.range(0, head + 1, search_topics={"taskId": task.task_id}):
                data = bytes(log.input) or None
            if data is None and task.input_key in self.store:
                data = self.store.get(task.input_key)
            if data is None or tensor_key(data) != task.input_key or len(data) != model.input.nbytes:
                key = task.input_key.hex()
                self.log(f"task {task.task_id}: no input of the model's shape with key 0x{key}")
                return None
            self._inputs[task.task_id] = np.array(as_array(data, model.input))
        return self._inputs[task.task_id]

    # --- what each role computes --------------------------------------------------------------------

    def _run(self, task: _TaskView, model: Model, x: npt.NDArray[Any]) -> RunResult:
        if task.task_id not in self._runs:
            t0 = time.perf_counter()
            self._runs[task.task_id] = run_model(model, x) if self.lie is None else self.lie.run(model, x)
            self.native_seconds += time.perf_counter() - t0
        return self._runs[task.task_id]

    def _execution(
        self, view: DisputeView, task: _TaskView, model: Model, x: npt.NDArray[Any], claim: bytes
    ) -> Any:
        """The phase-2 trace of dispute ``view``: its program on the local values of protocol §4.3, with
        ``claim`` the state the server's program checks (its ``S_k`` or ``S_{N−1}``)."""
        if view.dispute_id not in self._executions:
            context = bytes(self.game.localContext(view.dispute_id))
            run = self._run(task, model, x)
            caller = self.game.address
            if task.multi_phase:
                setup = node_program_setup(
                    model, x, view.node, claim, self.store, caller=caller, local_context=context, run=run
                )
            else:
                setup = model_program_setup(model, x, claim, self.store, caller=caller, local_context=context)
            t0 = time.perf_counter()
            trace = ExecutionTrace(setup, max_steps=self.max_vm_steps)
            self.vm_seconds += time.perf_counter() - t0
            self.vm_steps += trace.size
            claims = trace if self.lie is None else LyingExecutionTrace(trace, self.lie.step)
            self._executions[view.dispute_id] = claims
        return self._executions[view.dispute_id]

    # --- acting ----------------------------------------------------------------------------------------

    def _send(self, kind: str, dispute_id: int | None, method: Any, *args: Any, **kw: Any) -> Any:
        """Send one move. A revert is logged, not raised: another party's transaction can land first
        (e.g. both sides execute the final step), and the next poll acts on what the chain shows then."""
        from ape.exceptions import ContractLogicError

        try:
            receipt = method(*args, sender=self.account, **kw)
        except ContractLogicError as exc:
            where = f" dispute {dispute_id}" if dispute_id is not None else ""
            self.log(
                f"{self.role.name.lower()} {self.address[:10]}: {kind}{where} reverted ({exc}); looking again"
            )
            return None
        self.moves.append(MoveRecord(kind, dispute_id, int(receipt.gas_used), str(receipt.txn_hash)))
        where = f"dispute {dispute_id}" if dispute_id is not None else ""
        self.log(f"{self.role.name.lower()} {self.address[:10]}: {kind} {where} (gas {receipt.gas_used})")
        return receipt

    def run(self, interval: float = 2.0, stop: Callable[[], bool] = lambda: False) -> None:
        """Poll until ``stop()`` says so, sleeping ``interval`` seconds whenever there was nothing to do:
        the long-running form of the agent (a plain loop over ape's provider; silverback is not used)."""
        while not stop():
            if self.poll() == 0:
                time.sleep(interval)

    def poll(self) -> int:
        """Act on everything the chain shows now; return the number of transactions sent.

        Settled tasks and resolved disputes never change again, so they are not read twice."""
        sent = 0
        self._polled_tasks = {}
        for task_id in range(int(self.game.taskCount())):
            if task_id in self._settled_tasks:
                continue
            task = self._task(task_id)
            self._polled_tasks[task_id] = task
            if task.status == TASK_CANCELLED or (
                task.status in (TASK_FINALIZED, TASK_REJECTED) and not self._disputes_open(task_id)
            ):
                self._settled_tasks.add(task_id)
            sent += self._act_on_task(task)
        for dispute_id in range(int(self.game.disputeCount())):
            if dispute_id not in self._resolved_disputes:
                sent += self._act_on_dispute(dispute_id)
        if int(self.game.credit(self.address)) > 0:
            self._send("withdraw", None, self.game.withdraw)
            sent += 1
        return sent

    def _act_on_task(self, task: _TaskView) -> int:
        if task.status not in (TASK_OPEN, TASK_ANSWERED):
            return 0
        model = self._model_for(task.model_id)
        if model is None:
            return 0
        if self.role is Party.SERVER:
            if task.status == TASK_OPEN:
                x = self._input(task, model)
                if x is None:
                    return 0
                run = self._run(task, model, x)
                if self.lie is None and not self._can_defend(task, model, x, run):
                    return 0
                output, root, siblings = output_proof(run)
                self._send(
                    "submitResult",
                    None,
                    self.game.submitResult,
                    task.task_id,
                    output,
                    run.states[-1],
                    root,
                    siblings,
                    value=self.game.serverBond(),
                )
                return 1
            if self._server_of(task.task_id) != self.address:
                return 0
            result = self.game.result(task.task_id)
            if int(result.openDisputes) == 0 and self._now() > int(result.submittedAt) + task.window:
                self._send("finalize", None, self.game.finalize, task.task_id)
                return 1
            return 0
        # challenger: each answered task is checked once it can be decided (a result never changes)
        if task.status != TASK_ANSWERED or task.task_id in self._checked:
            return 0
        result = self.game.result(task.task_id)
        if self.game.challenged(task.task_id, self.address) or str(result.server) == self.address:
            self._checked.add(task.task_id)
            return 0
        if self._now() > int(result.submittedAt) + task.window:
            self._checked.add(task.task_id)
            return 0
        x = self._input(task, model)
        if x is None:
            return 0  # the input may still be published before the window closes: look again
        self._checked.add(task.task_id)
        run = self._run(task, model, x)
        if bytes(result.finalState) == run.states[-1] and bytes(result.outputKey) == run.keys[-1]:
            return 0
        self._send("challenge", None, self.game.challenge, task.task_id, value=self.game.challengerBond())
        return 1

    def _can_defend(self, task: _TaskView, model: Model, x: npt.NDArray[Any], run: RunResult) -> bool:
        """Whether every program a dispute on this answer could run exits valid within the agent's
        step limit (each node program on its claim, or the whole-model program): an honest server
        answers only what it can prove, since a claim it cannot execute loses its bond. Decided once
        per task (a refusal is logged and not retried)."""
        if task.task_id in self._refused:
            return False
        store = PreimageStore(self.store_dir / "dry-run")
        if task.multi_phase:
            setups = [
                node_program_setup(model, x, k, run.state(k), store, run=run) for k in range(len(model.nodes))
            ]
        else:
            setups = [model_program_setup(model, x, run.states[-1], store)]
        for setup in setups:
            try:
                result = run_program(setup, self.max_vm_steps)
            except ProgramRunError:
                result = None
            if result is None or result.exit_code != EXIT_VALID:
                self._refused.add(task.task_id)
                self.log(
                    f"task {task.task_id}: not answered: a dispute could not be won within "
                    f"{self.max_vm_steps} VM steps"
                )
                return False
        return True

    def _disputes_open(self, task_id: int) -> bool:
        return int(self.game.result(task_id).openDisputes) > 0

    def _server_of(self, task_id: int) -> str:
        """The result's server (fixed once the result is submitted)."""
        if task_id not in self._servers:
            self._servers[task_id] = str(self.game.result(task_id).server)
        return self._servers[task_id]

    def _act_on_dispute(self, dispute_id: int) -> int:
        view = self._dispute(dispute_id)
        if view.phase in (Phase.NONE, Phase.RESOLVED):
            self._resolved_disputes.add(dispute_id)
            return 0
        task = self._polled_tasks.get(view.task_id) or self._task(view.task_id)
        server = self._server_of(view.task_id)
        me = self.address
        if me not in (server, view.challenger):
            return 0
        if task.status == TASK_REJECTED:
            if me == view.challenger:
                self._send("closeDispute", dispute_id, self.game.closeDispute, dispute_id)
                return 1
            return 0
        model = self._model_for(task.model_id)
        if model is None:
            return 0
        x = self._input(task, model)
        if x is None:
            return 0
        graph = GraphTrace(self._run(task, model, x)) if task.multi_phase else None
        party = Party.SERVER if me == server else Party.CHALLENGER
        execution = None
        if view.phase in (Phase.EXECUTION, Phase.STEP):
            execution = self._execution(view, task, model, x, view.claimed_state)
        elif view.phase is Phase.EXECUTION_CLAIM and party is Party.SERVER:
            claim = execution_claimed_state(view, Traces(graph, None))
            execution = self._execution(view, task, model, x, claim)
        move = next_move(view, party, Traces(graph, execution), self._now())
        if move is None:
            return 0
        self._play(view, move, execution)
        return 1

    def _play(self, view: DisputeView, move: Move, execution: Any) -> None:
        game, i = self.game, view.dispute_id
        if isinstance(move, Bisect):
            self._send("bisect", i, game.bisect, i, move.claim)
        elif isinstance(move, Respond):
            self._send("respond", i, game.respond, i, move.agree, move.claim)
        elif isinstance(move, ClaimExecution):
            args = (i, move.steps, move.final_state, move.claimed_state)
            self._send("claimExecution", i, game.claimExecution, *args)
        elif isinstance(move, PlayStep):
            proof: StepProof = execution.step_proof(move.position)
            self._reveal(view, proof)
            self._send("step", i, game.step, i, proof.state_data, proof.proof)
        elif isinstance(move, Timeout):
            self._send("timeout", i, game.timeout, i)

    def _reveal(self, view: DisputeView, proof: StepProof) -> None:
        """Put on-chain the oracle answers the step needs; the game writes the local values itself."""
        reads_local = any(key_type(read.key) == KeyType.LOCAL for read in proof.reads)
        if reads_local and not self.game.dispute(view.dispute_id).localsLoaded:
            self._send("loadLocalValues", view.dispute_id, self.game.loadLocalValues, view.dispute_id)
        client = OracleClient(self.oracle, self.store, self.account)
        # Revealing any part puts the length on-chain too: a length question needs its own reveal (of
        # part 0) only when the step reads no part of that key.
        with_parts = {read.key for read in proof.reads if read.part_offset is not None}
        for read in proof.reads:
            if read.part_offset is None and read.key in with_parts:
                continue
            receipt = (
                client.ensure_length(read.key)
                if read.part_offset is None
                else client.ensure_part(read.key, read.part_offset)
            )
            if receipt is not None:
                self.moves.append(MoveRecord("oracle", None, int(receipt.gas_used), str(receipt.txn_hash)))
