// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import { IMIPS } from "../interfaces/IMIPS.sol";
import { IOpmlGame } from "../interfaces/IOpmlGame.sol";
import { IPreimageOracle, PreimageKeyLib } from "../interfaces/IPreimageOracle.sol";
import { ChunkMerkleLib } from "./ChunkMerkleLib.sol";

/// @title OpmlGame
/// @notice Models, tasks, results and the two-phase verification game of docs/protocol.md.
/// @dev The game knows the VM only through `IMIPS` (`stateHash`, `step`, `oracle`), so a toy VM can
///      stand in for `MIPS` in tests. Every payment is a credit withdrawn with `withdraw`.
///
///      Local values (protocol §4.3), written by `loadLocalValues` under `localContext(disputeId)` from
///      what `claimExecution` fixed:
///
///      | ident | multi-phase (node program)        | single-phase (whole-model program) |
///      |------:|-----------------------------------|------------------------------------|
///      |     1 | model commitment                  | model commitment                   |
///      |     2 | k, 4 bytes u32 little-endian      | input key                          |
///      |     3 | S_{k−1} (agreed in phase 1)       | the server's S_{N−1}               |
///      |     4 | the server's S_k                  | –                                  |
contract OpmlGame is IOpmlGame {
    /// @notice Longest input (calldata) and output of a task, in bytes.
    uint256 public constant MAX_DATA_BYTES = 4096;
    /// @notice Largest node count of a model: a version-2 manifest's (ml-spec §3.1), 2^20.
    uint256 public constant MAX_NODES = 1 << 20;
    /// @notice Longest challenge window a task may ask for, and longest move window: a server's bond
    ///         is never locked for longer than the window plus the disputes' moves.
    uint64 public constant MAX_CHALLENGE_WINDOW = 30 days;
    /// @notice Largest step bound a model may register: a phase-2 bisection has at most 48 rounds.
    uint64 public constant MAX_STEP_BOUND = 2 ** 48;
    uint256 private constant STATUS_VALID = 0;

    IMIPS public immutable vm;
    IPreimageOracle public immutable oracle;
    uint256 public immutable serverBond;
    uint256 public immutable challengerBond;
    uint64 public immutable moveWindow;
    uint64 public immutable minChallengeWindow;

    Model[] private _models;
    /// @dev Mappings, not arrays: a move then reads no length slot (an unknown id has status None).
    mapping(uint256 => Task) private _tasks;
    uint256 private _taskCount;
    mapping(uint256 => Result) private _results;
    /// @dev A mapping, not an array: a move then reads no length slot (an unknown id has phase None).
    mapping(uint256 => Dispute) private _disputes;
    uint256 private _disputeCount;
    mapping(uint256 => mapping(address => bool)) public challenged;
    mapping(address => uint256) public credit;

    /// @dev Bonds must be non-zero; `0 < moveWindow_ ≤ MAX_CHALLENGE_WINDOW`;
    ///      `moveWindow_ ≤ minWindow_ ≤ MAX_CHALLENGE_WINDOW` (a challenge window shorter than one move
    ///      window would let a result finalize before a challenger could act).
    constructor(IMIPS vm_, uint256 serverBond_, uint256 challengerBond_, uint64 moveWindow_, uint64 minWindow_) {
        if (serverBond_ == 0 || challengerBond_ == 0) revert InvalidParameters();
        if (moveWindow_ == 0 || moveWindow_ > minWindow_ || minWindow_ > MAX_CHALLENGE_WINDOW) {
            revert InvalidParameters();
        }
        vm = vm_;
        oracle = vm_.oracle();
        serverBond = serverBond_;
        challengerBond = challengerBond_;
        moveWindow = moveWindow_;
        minChallengeWindow = minWindow_;
    }

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    function model(uint256 modelId) external view returns (Model memory) {
        if (modelId >= _models.length) revert UnknownId();
        return _models[modelId];
    }

    function task(uint256 taskId) external view returns (Task memory) {
        return _task(taskId);
    }

    function result(uint256 taskId) external view returns (Result memory) {
        _task(taskId);
        return _results[taskId];
    }

    function dispute(uint256 disputeId) external view returns (Dispute memory) {
        return _dispute(disputeId);
    }

    function modelCount() external view returns (uint256) {
        return _models.length;
    }

    function taskCount() external view returns (uint256) {
        return _taskCount;
    }

    function disputeCount() external view returns (uint256) {
        return _disputeCount;
    }

    /// @notice The oracle context of a dispute's local values: no other dispute or contract shares it.
    function localContext(uint256 disputeId) public view returns (bytes32) {
        return keccak256(abi.encode(address(this), disputeId));
    }

    /// @notice `S_{−1}`: the chunk-Merkle key of the input key alone (one chunk, so its own root).
    function initialGraphState(bytes32 inputKey) public pure returns (bytes32) {
        return ChunkMerkleLib.keyOf(inputKey, 32);
    }

    // ---------------------------------------------------------------------------------------------
    // Models and tasks (protocol §2–§3)
    // ---------------------------------------------------------------------------------------------

    /// @notice Registers a model. `uri` is only emitted, never stored: no read of a model can fail on it.
    function registerModel(
        bytes32 commitment,
        uint32 nodeCount,
        uint32 inputBytes,
        uint64 maxSteps,
        bytes32 nodeProgram,
        bytes32 modelProgram,
        string calldata uri
    ) external returns (uint256 modelId) {
        if (nodeCount == 0 || nodeCount > MAX_NODES) revert InvalidModel();
        if (commitment == 0 || nodeProgram == 0 || modelProgram == 0) revert InvalidModel();
        if (inputBytes == 0 || maxSteps == 0 || maxSteps > MAX_STEP_BOUND) revert InvalidModel();
        modelId = _models.length;
        _models.push(Model(commitment, nodeProgram, modelProgram, nodeCount, inputBytes, maxSteps));
        emit ModelRegistered(modelId, commitment, nodeCount, uri);
    }

    function createTask(uint256 modelId, bytes calldata input, uint64 window, bool multiPhase)
        external
        payable
        returns (uint256 taskId)
    {
        if (modelId >= _models.length) revert UnknownId();
        if (input.length > MAX_DATA_BYTES || input.length != _models[modelId].inputBytes) {
            revert InvalidDataSize();
        }
        bytes32 inputKey = ChunkMerkleLib.key(input);
        taskId = _newTask(modelId, inputKey, window, multiPhase);
        emit TaskCreated(taskId, modelId, inputKey, input);
    }

    /// @notice A task whose input is published off-chain by the requester (protocol §1). Nothing
    ///         on-chain checks that the bytes exist or have the model's input size: honest servers and
    ///         challengers ignore a task whose input they cannot fetch at its key and size.
    function createTaskByKey(uint256 modelId, bytes32 inputKey, uint64 window, bool multiPhase)
        external
        payable
        returns (uint256 taskId)
    {
        if (PreimageKeyLib.keyType(inputKey) != PreimageKeyLib.CHUNK_MERKLE) revert InvalidKeyType();
        taskId = _newTask(modelId, inputKey, window, multiPhase);
        emit TaskCreated(taskId, modelId, inputKey, "");
    }

    function _newTask(uint256 modelId, bytes32 inputKey, uint64 window, bool multiPhase)
        private
        returns (uint256 taskId)
    {
        if (modelId >= _models.length) revert UnknownId();
        if (msg.value == 0) revert ZeroReward();
        if (window < minChallengeWindow) revert WindowTooShort();
        if (window > MAX_CHALLENGE_WINDOW) revert WindowTooLong();
        taskId = _taskCount++;
        _tasks[taskId] =
            Task(msg.sender, uint64(modelId), window, uint64(block.timestamp), multiPhase, TaskStatus.Open, 0, 0, msg.value, inputKey);
    }

    /// @notice The requester takes the reward of a task nobody has answered back, once its answer window
    ///         has passed: an answer sent within the window cannot be raced by a cancel (protocol §3).
    function cancelTask(uint256 taskId) external {
        Task storage t = _task(taskId);
        if (msg.sender != t.requester) revert NotRequester();
        if (t.status != TaskStatus.Open) revert WrongTaskStatus(t.status);
        if (block.timestamp <= t.createdAt + moveWindow) revert AnswerWindowOpen();
        t.status = TaskStatus.Cancelled;
        credit[t.requester] += t.reward;
        emit TaskCancelled(taskId);
    }

    /// @notice Commits to an answer: the claimed `S_{N−1}`, which hides the output (protocol §3). Only
    ///         this server can reveal the output, so a copy of a pending commitment cannot be revealed
    ///         by the copier and pays it nothing.
    function submitResult(uint256 taskId, bytes32 finalState) external payable {
        Task storage t = _task(taskId);
        if (t.status != TaskStatus.Open) revert WrongTaskStatus(t.status);
        if (msg.value != serverBond) revert WrongBond(serverBond);
        t.status = TaskStatus.Answered;
        Result storage r = _results[taskId];
        (r.server, r.submittedAt) = (msg.sender, uint64(block.timestamp));
        r.finalState = finalState;
        emit ResultSubmitted(taskId, msg.sender, finalState);
    }

    /// @notice The server reveals the output its `S_{N−1}` commits to: the output's key must be leaf N of
    ///         the chunk tree whose root is `stateRoot` (`siblings`, lowest level first).
    function revealOutput(uint256 taskId, bytes calldata output, bytes32 stateRoot, bytes32[] calldata siblings)
        external
    {
        Task storage t = _task(taskId);
        if (t.status != TaskStatus.Answered) revert WrongTaskStatus(t.status);
        Result storage r = _results[taskId];
        if (msg.sender != r.server) revert NotServer();
        if (r.outputKey != 0) revert AlreadyRevealed();
        if (output.length == 0 || output.length > MAX_DATA_BYTES) revert InvalidDataSize();
        uint256 n = _models[t.modelId].nodeCount;
        bytes32 outputKey = ChunkMerkleLib.key(output);
        if (
            ChunkMerkleLib.keyOf(stateRoot, 32 * (n + 1)) != r.finalState
                || siblings.length != ChunkMerkleLib.depth(n + 1)
                || !ChunkMerkleLib.hasLeaf(stateRoot, n, outputKey, siblings)
        ) revert OutputNotInState();
        r.outputKey = outputKey;
        emit OutputRevealed(taskId, outputKey, output);
    }

    /// @notice Settles a result once its window has passed with no dispute open (protocol §3): a
    ///         revealed output pays the server; an output never revealed refunds the requester, who also
    ///         takes the server's bond.
    function finalize(uint256 taskId) external {
        Task storage t = _task(taskId);
        if (t.status != TaskStatus.Answered) revert WrongTaskStatus(t.status);
        Result storage r = _results[taskId];
        if (block.timestamp <= r.submittedAt + t.window) revert WindowOpen();
        if (r.openDisputes != 0) revert DisputesOpen();
        if (r.outputKey == 0) {
            t.status = TaskStatus.Rejected;
            credit[t.requester] += t.reward + serverBond;
            emit ResultRejected(taskId, true);
            return;
        }
        t.status = TaskStatus.Finalized;
        credit[r.server] += t.reward + serverBond;
        emit ResultFinalized(taskId, r.server);
    }

    // ---------------------------------------------------------------------------------------------
    // Disputes (protocol §4)
    // ---------------------------------------------------------------------------------------------

    function challenge(uint256 taskId) external payable returns (uint256 disputeId) {
        Task storage t = _task(taskId);
        if (t.status != TaskStatus.Answered) revert WrongTaskStatus(t.status);
        Result storage r = _results[taskId];
        if (block.timestamp > r.submittedAt + t.window) revert WindowClosed();
        if (msg.sender == r.server || challenged[taskId][msg.sender]) revert ChallengeNotAllowed();
        if (msg.value != challengerBond) revert WrongBond(challengerBond);
        challenged[taskId][msg.sender] = true;
        r.openDisputes += 1;

        disputeId = _disputeCount++;
        Dispute storage d = _disputes[disputeId];
        d.challenger = msg.sender;
        d.taskId = uint64(taskId);
        d.phase = Phase.Defense;
        _pass(d, Party.Server);
        emit DisputeOpened(disputeId, taskId, msg.sender);
    }

    /// @notice The server stakes its side of a dispute, `challengerBond`, as the challenger did: the
    ///         dispute's winner takes both stakes, whatever any other dispute does (protocol §5). Then
    ///         the bisection starts (protocol §4).
    function defend(uint256 disputeId) external payable {
        Dispute storage d = _move(disputeId);
        if (d.phase != Phase.Defense) revert WrongPhase(d.phase);
        if (msg.value != challengerBond) revert WrongBond(challengerBond);
        d.defended = true;
        emit DisputeDefended(disputeId);
        Task storage t = _tasks[d.taskId];
        d.hiParty = Party.Server;
        d.hiHash = _results[d.taskId].finalState;
        if (t.multiPhase) {
            d.phase = Phase.Graph;
            d.hi = _models[t.modelId].nodeCount;
            d.loHash = initialGraphState(t.inputKey);
            if (d.hi == 1) _enterExecution(d, disputeId, t);
            else _pass(d, Party.Challenger);
        } else {
            _enterExecution(d, disputeId, t);
        }
    }

    /// @notice The opening move of a bisection: the challenger's claim at the midpoint of the disputed
    ///         interval (protocol §4.1).
    function bisect(uint256 disputeId, bytes32 claim) external {
        Dispute storage d = _move(disputeId);
        if (d.phase != Phase.Graph && d.phase != Phase.Execution) revert WrongPhase(d.phase);
        if (d.midHash != 0) revert WrongMove();
        _claim(d, disputeId, claim, d.turn, _mid(d.lo, d.hi));
    }

    /// @notice A verdict on the other side's pending claim and, while the interval is wider than one,
    ///         the mover's own claim at the next midpoint (`claim`; zero when the move ends the
    ///         bisection) (protocol §4.1).
    function respond(uint256 disputeId, bool agree, bytes32 claim) external {
        Dispute storage d = _move(disputeId);
        if (d.phase != Phase.Graph && d.phase != Phase.Execution) revert WrongPhase(d.phase);
        bytes32 pending = d.midHash;
        if (pending == 0) revert WrongMove();
        (uint64 lo, uint64 hi, Party mover) = (d.lo, d.hi, d.turn);
        uint64 mid = _mid(lo, hi);
        if (agree) {
            lo = mid;
            d.lo = mid;
            d.loHash = pending;
        } else {
            hi = mid;
            d.hi = mid;
            d.hiHash = pending;
            d.hiParty = _other(mover);
        }
        emit Responded(disputeId, mover, mid, agree);
        if (hi - lo > 1) {
            _claim(d, disputeId, claim, mover, _mid(lo, hi));
            return;
        }
        if (claim != 0) revert InvalidClaim();
        d.midHash = 0;
        if (d.phase == Phase.Graph) {
            _enterExecution(d, disputeId, _tasks[d.taskId]);
        } else {
            d.phase = Phase.Step;
            _pass(d, Party.Server);
        }
    }

    /// @notice The server's claim that its program exits valid after `steps` steps (protocol §4.3).
    ///         `claimedState` is the state the program checks: the server's `S_k` (multi-phase; equal
    ///         to `hiHash` when that is the server's claim, different from it when it is the
    ///         challenger's) or the result's `S_{N−1}` (single-phase, where it is `hiHash`).
    function claimExecution(uint256 disputeId, uint64 steps, bytes32 finalState, bytes32 claimedState)
        external
    {
        Dispute storage d = _move(disputeId);
        if (d.phase != Phase.ExecutionClaim) revert WrongPhase(d.phase);
        if (steps == 0 || uint256(finalState) >> 248 != STATUS_VALID) revert NotAValidExit();
        if ((claimedState == d.hiHash) != (d.hiParty == Party.Server) || claimedState == 0) {
            revert InconsistentClaim();
        }
        Task storage t = _tasks[d.taskId];
        Model storage m = _models[t.modelId];
        if (steps > m.maxSteps) revert StepsOverBound(m.maxSteps);
        if (t.multiPhase) d.agreedState = d.loHash;
        d.claimedState = claimedState;
        d.lo = 0;
        d.hi = steps;
        d.loHash = t.multiPhase ? m.nodeProgram : m.modelProgram;
        d.hiHash = finalState;
        d.hiParty = Party.Server;
        emit ExecutionClaimed(disputeId, steps, finalState, claimedState);
        if (steps == 1) {
            d.phase = Phase.Step;
            _pass(d, Party.Server);
        } else {
            d.phase = Phase.Execution;
            _pass(d, Party.Challenger);
        }
    }

    /// @notice Writes the program's local values to the oracle under the dispute's context, from what
    ///         `claimExecution` fixed (protocol §4.3). Anyone may call it, once per dispute; it is
    ///         needed only when the disputed step reads a local value.
    function loadLocalValues(uint256 disputeId) external {
        Dispute storage d = _dispute(disputeId);
        if ((d.phase != Phase.Execution && d.phase != Phase.Step) || d.localsLoaded) {
            revert LocalValuesNotLoadable();
        }
        d.localsLoaded = true;
        Task storage t = _tasks[d.taskId];
        bytes32 context = localContext(disputeId);
        oracle.loadLocalData(1, context, _models[t.modelId].commitment, 32);
        if (t.multiPhase) {
            // k as a u32 little-endian in the first 4 bytes, zero after them.
            bytes32 kLE = bytes32(uint256(_reverse32(d.node)) << 224);
            oracle.loadLocalData(2, context, kLE, 4);
            oracle.loadLocalData(3, context, d.agreedState, 32);
            oracle.loadLocalData(4, context, d.claimedState, 32);
        } else {
            oracle.loadLocalData(2, context, t.inputKey, 32);
            oracle.loadLocalData(3, context, d.claimedState, 32);
        }
        emit LocalValuesLoaded(disputeId, context);
    }

    /// @notice Executes the one disputed instruction (protocol §4.4); anyone may call it. The post-state
    ///         equal to `hiHash` makes `hiParty` the winner, any other the party disputing it.
    function step(uint256 disputeId, bytes calldata stateData, bytes calldata proof) external {
        Dispute storage d = _live(disputeId);
        if (d.phase != Phase.Step) revert WrongPhase(d.phase);
        if (vm.stateHash(stateData) != d.loHash) revert WrongPreState();
        // Resolved before the VM is called (checks, effects, interaction): a re-entered `step` or
        // move would find the dispute over. A revert of the VM undoes this with everything else.
        d.phase = Phase.Resolved;
        bytes32 post = vm.step(stateData, proof, localContext(disputeId));
        emit StepPlayed(disputeId, d.lo, post);
        _resolve(d, disputeId, post == d.hiHash ? d.hiParty : _other(d.hiParty), false);
    }

    /// @notice After the deadline, the side whose turn it is loses (protocol §4.5).
    function timeout(uint256 disputeId) external {
        Dispute storage d = _dispute(disputeId);
        if (d.phase == Phase.Resolved) revert WrongPhase(d.phase);
        if (block.timestamp <= d.deadline) revert DeadlineNotPassed();
        _resolve(d, disputeId, d.turn == Party.Server ? Party.Challenger : Party.Server, true);
    }

    /// @notice Credits a winning challenger its equal share of the challengers' half of the rejected
    ///         server's bond, once every dispute of the result is over (protocol §5); anyone may call it.
    ///         The last share takes the remainder of the division, so the whole half is paid out.
    function claimBondShare(uint256 disputeId) external {
        Dispute storage d = _dispute(disputeId);
        if (d.winner != Party.Challenger || d.shareClaimed) revert NoBondShare();
        Result storage r = _results[d.taskId];
        if (r.openDisputes != 0) revert DisputesOpen();
        d.shareClaimed = true;
        Task storage t = _tasks[d.taskId];
        uint256 wins = t.challengerWins;
        uint256 half = serverBond - serverBond / 2;
        uint256 share = half / wins;
        t.sharesClaimed += 1;
        if (t.sharesClaimed == wins) share = half - share * (wins - 1);
        credit[d.challenger] += share;
        emit BondShareClaimed(disputeId, d.challenger, share);
    }

    function withdraw() external {
        uint256 amount = credit[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        credit[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        (bool ok,) = msg.sender.call{ value: amount }("");
        if (!ok) revert TransferFailed();
    }

    // ---------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------

    function _task(uint256 taskId) private view returns (Task storage) {
        Task storage t = _tasks[taskId];
        if (t.status == TaskStatus.None) revert UnknownId();
        return t;
    }

    function _dispute(uint256 disputeId) private view returns (Dispute storage) {
        Dispute storage d = _disputes[disputeId];
        if (d.phase == Phase.None) revert UnknownId();
        return d;
    }

    /// @dev A dispute that is still being played: not resolved, its deadline not passed. Its task is
    ///      `Answered`, or `Rejected` by another dispute: a rejection ends no other dispute's play.
    function _live(uint256 disputeId) private view returns (Dispute storage d) {
        d = _dispute(disputeId);
        if (d.phase == Phase.Resolved) revert WrongPhase(d.phase);
        if (block.timestamp > d.deadline) revert DeadlinePassed();
    }

    /// @dev A move by the party whose turn it is: the caller must be that party.
    function _move(uint256 disputeId) private view returns (Dispute storage d) {
        d = _live(disputeId);
        address server = _results[d.taskId].server;
        if (msg.sender != server && msg.sender != d.challenger) revert NotParty();
        if (msg.sender != (d.turn == Party.Server ? server : d.challenger)) revert NotYourTurn();
    }

    function _other(Party p) private pure returns (Party) {
        return p == Party.Server ? Party.Challenger : Party.Server;
    }

    /// @dev The mover's claim at the midpoint; the other side answers it next.
    function _claim(Dispute storage d, uint256 disputeId, bytes32 claim, Party mover, uint64 mid) private {
        if (claim == 0) revert InvalidClaim();
        d.midHash = claim;
        emit Bisected(disputeId, mover, mid, claim);
        _pass(d, _other(mover));
    }

    /// @dev ⌊(lo + hi) / 2⌋ without overflow, whatever `uint64` positions a bisection holds.
    function _mid(uint64 lo, uint64 hi) private pure returns (uint64) {
        return lo + (hi - lo) / 2;
    }

    function _pass(Dispute storage d, Party next) private {
        d.turn = next;
        d.deadline = uint64(block.timestamp) + moveWindow;
    }

    /// @dev Phase 2 is entered: node k is fixed (multi-phase) and the server must claim its program's
    ///      exit (protocol §4.3).
    function _enterExecution(Dispute storage d, uint256 disputeId, Task storage t) private {
        if (t.multiPhase) {
            d.node = uint32(d.lo);
            emit PhaseOneEnded(disputeId, d.node, localContext(disputeId));
        }
        d.phase = Phase.ExecutionClaim;
        _pass(d, Party.Server);
    }

    function _reverse32(uint32 v) private pure returns (uint32) {
        return (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
    }

    /// @dev Credits the winner both stakes of the dispute (only the challenger's when the server never
    ///      defended, which only the challenger can win) (protocol §5). A challenger's win rejects the
    ///      result and, the first time, pays the requester its reward and half the server's bond (so a
    ///      server cannot take back a bad answer through its own challenger); it earns a share of the
    ///      other half.
    function _resolve(Dispute storage d, uint256 disputeId, Party winner, bool byTimeout) private {
        d.phase = Phase.Resolved;
        d.winner = winner;
        Result storage r = _results[d.taskId];
        r.openDisputes -= 1;
        uint256 stakes = d.defended ? 2 * challengerBond : challengerBond;
        if (winner == Party.Server) {
            credit[r.server] += stakes;
        } else {
            credit[d.challenger] += stakes;
            Task storage t = _tasks[d.taskId];
            t.challengerWins += 1;
            if (t.status == TaskStatus.Answered) {
                t.status = TaskStatus.Rejected;
                credit[t.requester] += t.reward + serverBond / 2;
                emit ResultRejected(d.taskId, false);
            }
        }
        emit DisputeResolved(disputeId, winner, byTimeout);
    }
}
