"""Server and challenger agents: they watch an ``OpmlGame`` on any ape network, answer or check
tasks, open disputes and play every move before its deadline (docs/protocol.md).

An agent must never be silenced by what a stranger puts on-chain, so each poll is a scheduler over
isolated items (op-challenger's shape):

- **discovery** reads the game's events from a cursor (never from genesis on every poll): new tasks
  with their inputs, committed answers, opened disputes. Nothing it reads can fail to decode (no
  strings are read: a model's ``uri`` is not needed).
- **disputes first, in deadline order**, then tasks, then credits. Each item runs in its own error
  boundary: an exception is logged with the item's id and the item is retried after a back-off,
  while every other item goes on (:meth:`Agent._guard`).
- **money and cost policy** (:mod:`opml.game.policy`): an agent bonds only when it can still afford
  the stakes and gas of its open disputes; before they first bond on a model, both roles check every
  program's step bound and dry-run in the VM one program per node kind (:meth:`Agent._dry_run`);
  phase-2 traces are shared between disputes (:mod:`opml.game.trace_cache`).

An agent keeps no state it cannot rebuild: a restarted agent scans the events again and carries on
where the chain is. It checks every off-chain input against its key before using it (the model against
the registration, the input against the task's key).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from eth_utils import keccak

from opml.game.lies import Lie, LyingExecutionTrace
from opml.game.policy import AgentPolicy
from opml.game.solver import (
    Bisect,
    ClaimExecution,
    Defend,
    DisputeView,
    Move,
    Party,
    Phase,
    PlayStep,
    Respond,
    Traces,
    execution_claimed_state,
    next_move,
    timeout_move,
)
from opml.game.trace_cache import TraceCache, trace_key
from opml.game.traces import ExecutionTrace, GraphTrace, StepProof, program_state_hash
from opml.ml.cost import model_program_bound, model_step_bound, node_step_bound
from opml.ml.errors import ProgramRunError
from opml.ml.format import Model, as_array, tensor_key
from opml.ml.phase import (
    EXIT_VALID,
    MODEL_PROGRAM,
    NODE_PROGRAM,
    ProgramSetup,
    model_program_setup,
    node_kinds,
    node_program_setup,
    run_program,
)
from opml.ml.runner import RunResult, run_model
from opml.oracle.chunk_tree import ChunkTree
from opml.oracle.client import OracleClient
from opml.oracle.keys import KeyType, key_type
from opml.oracle.store import PreimageStore
from opml.vm.elf import load_elf

_DISCOVERED = ("TaskCreated", "ResultSubmitted", "DisputeOpened")
"""The events discovery reads (never a string, so nothing in them can fail to decode)."""
TASK_OPEN, TASK_ANSWERED, TASK_FINALIZED, TASK_REJECTED, TASK_CANCELLED = 1, 2, 3, 4, 5
DEFAULT_MAX_VM_STEPS = 10_000_000_000
"""Steps after which an agent stops tracing a program: far above any model the format allows."""


def canonical_program_states() -> tuple[bytes, bytes]:
    """The initial state hashes of the node and whole-model programs built from this checkout."""
    return program_state_hash(load_elf(NODE_PROGRAM)), program_state_hash(load_elf(MODEL_PROGRAM))


def registration_args(model: Model, uri: str = "") -> tuple[Any, ...]:
    """The arguments of ``registerModel`` for ``model`` with this checkout's programs."""
    node, whole = canonical_program_states()
    return (model.commitment, len(model.nodes), model.input.nbytes, model_step_bound(model), node, whole, uri)


def output_proof(run: RunResult) -> tuple[bytes, bytes, list[bytes]]:
    """``(output bytes, stateRoot, siblings)`` for ``revealOutput``: the output key is leaf N of the
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
class _Task:
    """A task the agent follows, as far as it knows it: fixed fields, then what it learnt."""

    task_id: int
    model: Model
    input_key: bytes
    input_data: bytes | None
    reward: int = 0
    window: int = 0
    multi_phase: bool = True
    server: str | None = None
    final_state: bytes | None = None


@dataclass
class _Failure:
    count: int
    retry_at: float


@dataclass
class Agent:
    """One party: ``role`` is :data:`Party.SERVER` or :data:`Party.CHALLENGER`.

    ``models`` are the model files it holds; it serves and checks only tasks on registrations that match
    one of them (commitment, node count, input size, step bound) and this checkout's programs. An agent
    given ``lie`` computes every run with that lie (:mod:`opml.game.lies`): a lying server answers with
    it, a lying challenger disputes honest results with it. ``from_block`` is where discovery starts
    (the game's deployment block, when known).
    """

    game: Any
    account: Any
    role: Party
    models: Sequence[Model]
    store_dir: Path
    lie: Lie | None = None
    policy: AgentPolicy = field(default_factory=AgentPolicy)
    max_vm_steps: int = DEFAULT_MAX_VM_STEPS
    log: Callable[[str], None] = print
    from_block: int = 0
    moves: list[MoveRecord] = field(default_factory=list)
    vm_steps: int = 0
    vm_seconds: float = 0.0
    native_seconds: float = 0.0
    dry_run_seconds: float = 0.0
    traces: TraceCache = field(default_factory=TraceCache)
    _runs: dict[int, RunResult] = field(default_factory=dict)
    _tasks: dict[int, _Task] = field(default_factory=dict)
    _pending: set[int] = field(default_factory=set)
    _disputes: set[int] = field(default_factory=set)
    _models_seen: dict[int, Model | None] = field(default_factory=dict)
    _dry_runs: dict[tuple[bytes, bool], bool] = field(default_factory=dict)
    """Per (model commitment, multi-phase): whether a dispute on it can be proven (:meth:`_dry_run`)."""
    _failures: dict[str, _Failure] = field(default_factory=dict)
    _views: dict[int, DisputeView] = field(default_factory=dict)
    _setups: dict[int, ProgramSetup] = field(default_factory=dict)
    """Each dispute's phase-2 program setup: its oracle view (the dispute's own context) proves its step."""
    _committed: int = 0
    """Disputes this poll committed us to (a challenge or a defense sent) that no view shows yet."""
    _logged: set[str] = field(default_factory=set)
    _cursor: int = -1
    _head_time: int = 0

    def __post_init__(self) -> None:
        from ape import project

        self.oracle = project.PreimageOracle.at(self.game.oracle())
        self.store = PreimageStore(self.store_dir)
        self.address = str(self.account.address)
        self._programs = canonical_program_states()
        self._server_bond = int(self.game.serverBond())  # immutables of the game: read once
        self._stake = int(self.game.challengerBond())
        self._max_data = int(self.game.MAX_DATA_BYTES())
        self._cursor = self.from_block - 1
        self._name = f"{self.role.name.lower()} {self.address[:10]}"

    # --- the loop ---------------------------------------------------------------------------------

    def run(self, interval: float = 2.0, stop: Callable[[], bool] = lambda: False) -> None:
        """Poll until ``stop()`` says so, sleeping ``interval`` seconds whenever there was nothing to do.
        No error of a task, a dispute or the node ends the loop: each is logged and retried."""
        while not stop():
            try:
                sent = self.poll()
            except Exception as exc:  # the node itself failed (e.g. reading the head): try again later
                self.log(f"{self._name}: poll failed: {_brief(exc)}")
                sent = 0
            if sent == 0:
                time.sleep(interval)

    def poll(self) -> int:
        """Act on everything the chain shows now; return the number of transactions sent. The disputes
        already known come first, the nearest deadline first (discovery, which may read a burst of new
        tasks, cannot delay them); then the disputes discovery found; then tasks; then credits."""
        from ape import chain

        self._head_time = int(chain.blocks.head.timestamp)
        self._committed = 0
        known = set(self._disputes)
        sent = self._play_disputes(known)
        self._guard("discovery", self._discover)
        sent += self._play_disputes(self._disputes - known)
        for task_id in sorted(self._pending):
            sent += self._guard(f"task {task_id}", partial(self._act_on_task, task_id)) or 0
        sent += self._guard("credit", self._withdraw) or 0
        return sent

    def _play_disputes(self, dispute_ids: set[int]) -> int:
        views = []
        for dispute_id in sorted(dispute_ids):
            view = self._guard(f"dispute {dispute_id}", partial(self._dispute, dispute_id))
            if view is not None:
                self._views[dispute_id] = view
                views.append(view)
        sent = 0
        for view in sorted(views, key=lambda v: v.deadline):
            sent += self._guard(f"dispute {view.dispute_id}", partial(self._act_on_dispute, view)) or 0
        return sent

    def _guard(self, item: str, action: Callable[[], Any]) -> Any:
        """Run ``action`` for ``item`` in its own error boundary: an exception is logged and the item
        is skipped until its back-off has passed; other items are not affected."""
        failure = self._failures.get(item)
        if failure is not None and time.monotonic() < failure.retry_at:
            return None
        try:
            result = action()
        except Exception as exc:
            count = failure.count + 1 if failure else 1
            delay = self.policy.retry_delay(count)
            self._failures[item] = _Failure(count, time.monotonic() + delay)
            self.log(f"{self._name}: {item}: {_brief(exc)}; retrying in {delay:.0f} s")
            return None
        self._failures.pop(item, None)
        return result

    def _once(self, what: str, line: str) -> None:
        """Log ``line`` the first time ``what`` happens (a refusal is not repeated every poll)."""
        if what not in self._logged:
            self._logged.add(what)
            self.log(f"{self._name}: {line}")

    # --- discovery ----------------------------------------------------------------------------------

    def _discover(self) -> None:
        """Read the events of the blocks since the cursor, one log query per page of blocks however
        many tasks and disputes exist: new tasks (with their inputs), committed answers, opened
        disputes. The cursor moves page by page, so a node's range limit never stalls discovery."""
        from ape import chain
        from ape.types import LogFilter

        head = int(chain.blocks.height)
        events = [getattr(self.game, name).abi for name in _DISCOVERED]
        topics = [["0x" + keccak(text=abi.selector).hex() for abi in events]]
        while self._cursor < head:
            start = self._cursor + 1
            stop = min(head, start + self.policy.log_page_blocks - 1)
            query = LogFilter(
                addresses=[self.game.address],
                events=events,
                topic_filter=topics,
                start_block=start,
                stop_block=stop,
            )
            logs = sorted(
                chain.provider.get_contract_logs(query), key=lambda g: (g.block_number, g.log_index)
            )
            for log in logs:
                self._on_log(log)
            self._cursor = stop

    def _on_log(self, log: Any) -> None:
        if log.event_name == "TaskCreated":
            self._on_task_created(int(log.taskId), int(log.modelId), bytes(log.inputKey), bytes(log.input))
        elif log.event_name == "ResultSubmitted" and int(log.taskId) in self._tasks:
            task = self._tasks[int(log.taskId)]
            task.server, task.final_state = str(log.server), bytes(log.finalState)
            if task.server == self.address:
                self._pending.add(task.task_id)  # our answer, whatever we would decide today
        elif log.event_name == "DisputeOpened":
            self._on_dispute_opened(int(log.disputeId), int(log.taskId), str(log.challenger))

    def _on_task_created(self, task_id: int, model_id: int, input_key: bytes, data: bytes) -> None:
        if task_id in self._tasks:
            return
        model = self._model_for(model_id)
        if model is None:
            return
        t = self.game.task(task_id)
        task = _Task(
            task_id, model, input_key, data or None, int(t.reward), int(t.window), bool(t.multiPhase)
        )
        self._tasks[task_id] = task  # kept whatever we decide: our answers and disputes on it need it
        if self.role is Party.SERVER and not self.policy.worth_answering(task.reward, self._gas_price()):
            self._once(f"reward {task_id}", f"task {task_id}: reward {task.reward} wei does not pay its gas")
            return
        self._pending.add(task_id)

    def _on_dispute_opened(self, dispute_id: int, task_id: int, challenger: str) -> None:
        task = self._tasks.get(task_id)
        mine_as_server = task is not None and task.server == self.address
        if challenger == self.address or mine_as_server:
            self._disputes.add(dispute_id)

    def _model_for(self, model_id: int) -> Model | None:
        """The held model that registration ``model_id`` names, if it matches it and our programs.
        Decided once per registration (a registration never changes)."""
        if model_id not in self._models_seen:
            m = self.game.model(model_id)
            found = None
            for model in self.models:
                if (
                    bytes(m.commitment) == model.commitment
                    and int(m.nodeCount) == len(model.nodes)
                    and int(m.inputBytes) == model.input.nbytes
                    and int(m.maxSteps) == model_step_bound(model)
                    and (bytes(m.nodeProgram), bytes(m.modelProgram)) == self._programs
                    and model.output.nbytes <= self._max_data  # else its output could not be revealed
                ):
                    found = model
            self._models_seen[model_id] = found
        return self._models_seen[model_id]

    def _input(self, task: _Task) -> npt.NDArray[Any] | None:
        """The task's input (from its event, or from the store for a task posted by key), checked
        against its key and the model's input size; ``None`` (logged once) while it is not available."""
        data = task.input_data
        if data is None and task.input_key in self.store:
            data = self.store.get(task.input_key)
        if data is None:
            key = task.input_key.hex()
            self._once(f"input {task.task_id}", f"task {task.task_id}: input 0x{key} not published yet")
            return None
        if tensor_key(data) != task.input_key or len(data) != task.model.input.nbytes:
            self._once(f"shape {task.task_id}", f"task {task.task_id}: input is not of the model's shape")
            return None
        return np.array(as_array(data, task.model.input))

    # --- what each role computes --------------------------------------------------------------------

    def _run(self, task: _Task, x: npt.NDArray[Any]) -> RunResult:
        if task.task_id not in self._runs:
            t0 = time.perf_counter()
            self._runs[task.task_id] = (
                run_model(task.model, x) if self.lie is None else self.lie.run(task.model, x)
            )
            self.native_seconds += time.perf_counter() - t0
        return self._runs[task.task_id]

    def _execution(self, view: DisputeView, task: _Task, x: npt.NDArray[Any], claim: bytes) -> Any:
        """The phase-2 trace of dispute ``view``: its program on the local values of protocol §4.3, with
        ``claim`` the state the server's program checks (its ``S_k`` or ``S_{N−1}``). Shared with every
        dispute on the same program and local values."""
        setup = self._setups.get(view.dispute_id)
        if setup is None:  # built once per dispute (it stores the model's preimages); its claim is fixed
            context = bytes(self.game.localContext(view.dispute_id))
            run = self._run(task, x)
            caller = self.game.address
            if task.multi_phase:
                setup = node_program_setup(
                    task.model, x, view.node, claim, self.store, caller=caller, local_context=context, run=run
                )
            else:
                setup = model_program_setup(
                    task.model, x, claim, self.store, caller=caller, local_context=context
                )
            self._setups[view.dispute_id] = setup
        key = trace_key(program_state_hash(setup.state), setup.local_values)
        return self.traces.get(key, view.dispute_id, lambda: self._trace(setup))

    def _trace(self, setup: ProgramSetup) -> Any:
        t0 = time.perf_counter()
        trace = ExecutionTrace(setup, max_steps=self.max_vm_steps)
        self.vm_seconds += time.perf_counter() - t0
        self.vm_steps += trace.size
        return trace if self.lie is None else LyingExecutionTrace(trace, self.lie.step)

    def _dry_run(self, task: _Task, x: npt.NDArray[Any], run: RunResult) -> bool:
        """Whether every program a dispute on this task could run exits valid on the honest values within
        the agent's step limit: a party stakes only on what it can prove in the VM, never on the native
        run alone. Every program's step bound (ml-spec §9) must be within the limit, and the programs run:
        the whole-model program, or the node program on the first node of each kind (``node_kinds``: a
        generation graph repeats a few hundred kinds over thousands of nodes). Decided once per model and
        mode, on its first task: the bounds and the kinds are the model's, whatever the input."""
        mode = (task.model.commitment, task.multi_phase)
        if mode not in self._dry_runs:
            t0 = time.perf_counter()
            store = PreimageStore(self.store_dir / "dry-run")
            model, n = task.model, len(task.model.nodes)
            if task.multi_phase:
                ok = all(node_step_bound(model, k) <= self.max_vm_steps for k in range(n))
                kinds = node_kinds(model)
                setups = (node_program_setup(model, x, k, run.state(k), store, run=run) for k in kinds)
            else:
                ok = model_program_bound(model) <= self.max_vm_steps
                setups = (model_program_setup(model, x, run.states[-1], store) for _ in range(1))
            for setup in setups:
                try:
                    ok = ok and run_program(setup, self.max_vm_steps).exit_code == EXIT_VALID
                except ProgramRunError:
                    ok = False
            self._dry_runs[mode] = ok
            self.dry_run_seconds += time.perf_counter() - t0
        if not self._dry_runs[mode]:
            self.log(
                f"{self._name}: task {task.task_id}: not staked on: a dispute could not be won within "
                f"{self.max_vm_steps} VM steps"
            )
        return self._dry_runs[mode]

    def _gas_price(self) -> int:
        from ape import chain

        return int(chain.provider.gas_price)

    def _active_disputes(self) -> int:
        """Disputes this agent plays (a server's undefended ones, which it may leave, do not count)."""
        playing = sum(
            1
            for v in self._views.values()
            if v.phase is not Phase.RESOLVED
            and not (v.phase is Phase.DEFENSE and v.challenger != self.address)
        )
        return playing + self._committed

    def _can_afford(self, what: str, bond: int, stake: int = 0, results: int = 0) -> bool:
        """The money policy: after ``bond``, ``stake`` (what disputes on our results may need from us)
        and the gas of every dispute we play, of one dispute on each of our ``results`` and of one more
        stay covered. A refusal is logged, and looked at again next poll."""
        balance = int(self.account.balance)
        disputes = self._active_disputes() + results
        if self.policy.can_bond(balance, bond, stake, self._gas_price(), disputes):
            self._logged.discard(f"funds {what}")
            return True
        self._once(f"funds {what}", f"{what}: balance {balance} wei cannot cover it and the open disputes")
        return False

    # --- tasks ----------------------------------------------------------------------------------------

    def _act_on_task(self, task_id: int) -> int:
        task = self._tasks[task_id]
        if self.role is Party.SERVER:
            return self._serve(task)
        return self._check(task)

    def _serve(self, task: _Task) -> int:
        if task.server is None:
            if self._open_results() >= self.policy.max_open_results:
                self._once(f"cap {task.task_id}", f"task {task.task_id}: too many open results to answer")
                return 0
            if int(self.game.task(task.task_id).status) != TASK_OPEN:
                self._pending.discard(task.task_id)  # cancelled
                return 0
            x = self._input(task)
            if x is None:
                return 0
            run = self._run(task, x)
            if self.lie is None and not self._dry_run(task, x, run):
                self._pending.discard(task.task_id)
                return 0
            # a stake and the gas of a dispute for every result we have open, and for this one
            results = self._open_results()
            bond, stake = self._server_bond, self._stake * (results + 1)
            if not self._can_afford(f"task {task.task_id}", bond, stake, results):
                return 0
            sent = self._send(
                "submitResult", None, self.game.submitResult, task.task_id, run.states[-1], value=bond
            )
            if sent is None:
                return 0
            task.server, task.final_state = self.address, run.states[-1]
            return 1
        if task.server != self.address:
            self._forget(task.task_id)  # another server answered
            return 0
        status = int(self.game.task(task.task_id).status)
        result = self.game.result(task.task_id)
        if status == TASK_ANSWERED and bytes(result.outputKey) == bytes(32):
            x = self._input(task)
            if x is None:
                return 0
            output, root, siblings = output_proof(self._run(task, x))
            return _sent(
                self._send("revealOutput", None, self.game.revealOutput, task.task_id, output, root, siblings)
            )
        if status == TASK_ANSWERED:
            if int(result.openDisputes) == 0 and self._head_time > int(result.submittedAt) + task.window:
                return _sent(self._send("finalize", None, self.game.finalize, task.task_id))
            return 0
        if int(result.openDisputes) == 0:
            self._forget(task.task_id)  # settled
        return 0

    def _open_results(self) -> int:
        return sum(1 for i in self._pending if self._tasks[i].server == self.address)

    def _check(self, task: _Task) -> int:
        """A challenger checks each answer once: it disputes a wrong one within the window."""
        if task.server is None:
            return 0
        result = self.game.result(task.task_id)
        if (
            task.server == self.address
            or self._head_time > int(result.submittedAt) + task.window
            or int(self.game.task(task.task_id).status) != TASK_ANSWERED
            or self.game.challenged(task.task_id, self.address)
        ):
            self._forget(task.task_id)
            return 0
        x = self._input(task)
        if x is None:
            return 0  # the input may still be published before the window closes: look again
        run = self._run(task, x)
        if task.final_state == run.states[-1] or (self.lie is None and not self._dry_run(task, x, run)):
            self._forget(task.task_id)
            return 0
        bond = self._stake
        if not self._can_afford(f"task {task.task_id}", bond):
            return 0
        if self._send("challenge", None, self.game.challenge, task.task_id, value=bond) is None:
            return 0
        self._committed += 1
        self._pending.discard(task.task_id)  # its dispute needs the run: kept until the dispute is over
        return 1

    def _forget(self, task_id: int) -> None:
        """The task needs nothing more from us: drop what we computed for it, unless a dispute we play
        is on it."""
        self._pending.discard(task_id)
        self._drop_run_if_unused(task_id)

    def _drop_run_if_unused(self, task_id: int) -> None:
        """Drop the task's native run unless the task is pending or a dispute we watch is on it."""
        if task_id not in self._pending and not any(v.task_id == task_id for v in self._views.values()):
            self._runs.pop(task_id, None)

    def _withdraw(self) -> int:
        if int(self.game.credit(self.address)) > 0:
            return _sent(self._send("withdraw", None, self.game.withdraw))
        return 0

    # --- disputes -----------------------------------------------------------------------------------

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
            share_claimed=bool(d.shareClaimed),
        )

    def _act_on_dispute(self, view: DisputeView) -> int:
        me = Party.CHALLENGER if view.challenger == self.address else Party.SERVER
        if view.phase is Phase.RESOLVED:
            self.traces.release(view.dispute_id)
            self._setups.pop(view.dispute_id, None)
            return self._claim_share(view, me)
        move: Move | None = timeout_move(view, me, self._head_time)
        execution = None
        if move is None and view.turn is me and view.deadline < self._head_time + self.policy.deadline_margin:
            self._once(
                f"late {view.dispute_id}", f"dispute {view.dispute_id}: moving within the deadline margin"
            )
        if move is None and view.phase is Phase.DEFENSE:
            if view.turn is me and self._can_afford(f"dispute {view.dispute_id}", self._stake):
                move = Defend()
        elif move is None and (view.turn is me or view.phase is Phase.STEP):
            move, execution = self._bisection_move(view, me)
        if move is None:
            return 0
        return _sent(self._play(view, move, execution))

    def _claim_share(self, view: DisputeView, me: Party) -> int:
        """A dispute won by its challenger earns a share of the server's bond once the result has no
        dispute open; then the dispute is no longer watched."""
        if me is Party.CHALLENGER and view.winner is Party.CHALLENGER and not view.share_claimed:
            if int(self.game.result(view.task_id).openDisputes) > 0:
                return 0
            return _sent(
                self._send("claimBondShare", view.dispute_id, self.game.claimBondShare, view.dispute_id)
            )
        self._disputes.discard(view.dispute_id)
        self._views.pop(view.dispute_id, None)
        self._drop_run_if_unused(view.task_id)
        return 0

    def _bisection_move(self, view: DisputeView, me: Party) -> tuple[Move | None, Any]:
        """The solver's move in a bisection, claimExecution or step, with the phase-2 trace it used."""
        task = self._tasks[view.task_id]
        x = self._input(task)
        if x is None:
            return None, None
        graph = GraphTrace(self._run(task, x)) if task.multi_phase else None
        execution = None
        if view.phase in (Phase.EXECUTION, Phase.STEP):
            execution = self._execution(view, task, x, view.claimed_state)
        elif view.phase is Phase.EXECUTION_CLAIM and me is Party.SERVER:
            claim = execution_claimed_state(view, Traces(graph, None))
            execution = self._execution(view, task, x, claim)
        return next_move(view, me, Traces(graph, execution), self._head_time), execution

    # --- acting ----------------------------------------------------------------------------------------

    def _send(self, kind: str, dispute_id: int | None, method: Any, *args: Any, **kw: Any) -> Any:
        """Send one transaction. ape estimates it first, so a move that would revert (another party's
        transaction landed first, a deadline passed, funds ran out) fails unsent; it is logged, not
        raised, and the next poll acts on what the chain shows then."""
        from ape.exceptions import ApeException

        where = f" dispute {dispute_id}" if dispute_id is not None else ""
        try:
            receipt = method(*args, sender=self.account, **kw)
        except ApeException as exc:
            self.log(f"{self._name}: {kind}{where} not sent ({_brief(exc)}); looking again")
            return None
        self.moves.append(MoveRecord(kind, dispute_id, int(receipt.gas_used), str(receipt.txn_hash)))
        self.log(f"{self._name}: {kind}{where} (gas {receipt.gas_used})")
        return receipt

    def _play(self, view: DisputeView, move: Move, execution: Any) -> Any:
        """Send ``move``; its receipt, or ``None`` when it was not sent."""
        game, i = self.game, view.dispute_id
        if isinstance(move, Defend):
            receipt = self._send("defend", i, game.defend, i, value=self._stake)
            self._committed += receipt is not None
            return receipt
        if isinstance(move, Bisect):
            return self._send("bisect", i, game.bisect, i, move.claim)
        if isinstance(move, Respond):
            return self._send("respond", i, game.respond, i, move.agree, move.claim)
        if isinstance(move, ClaimExecution):
            args = (i, move.steps, move.final_state, move.claimed_state)
            return self._send("claimExecution", i, game.claimExecution, *args)
        if isinstance(move, PlayStep):
            proof: StepProof = execution.step_proof(move.position, self._setups[i].oracle)
            self._reveal(view, proof)
            return self._send("step", i, game.step, i, proof.state_data, proof.proof)
        return self._send("timeout", i, game.timeout, i)

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


def _sent(receipt: Any) -> int:
    """1 for a transaction sent, 0 for one that was not (a poll that sent nothing then sleeps)."""
    return 0 if receipt is None else 1


def _brief(exc: BaseException) -> str:
    """One line for a log: the exception's type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
