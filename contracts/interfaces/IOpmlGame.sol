// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IOpmlGame
/// @notice Types, errors and events of the opML verification game (docs/protocol.md).
interface IOpmlGame {
    /// @notice Where a task stands (protocol §3).
    enum TaskStatus {
        None,
        Open, //      waiting for a result
        Answered, //  a result is committed: challengeable until its window ends
        Finalized, // the result stands; the server was paid
        Rejected, //  a challenger won, or the output was never revealed; the requester was refunded
        Cancelled //  the requester took the reward back after an answer window with no result
    }

    /// @notice Where a dispute stands (protocol §4).
    enum Phase {
        None,
        Defense, //        opened: the server must stake its side of the dispute (`defend`)
        Graph, //          phase 1: bisection over the graph's states S_i
        ExecutionClaim, // phase 2 entered: the server must claim the program's valid exit
        Execution, //      phase 2: bisection over the program's steps
        Step, //           one step left: anyone may execute it
        Resolved //        over: a winner was decided
    }

    /// @notice The side whose move it is, or who won.
    enum Party {
        None,
        Server,
        Challenger
    }

    struct Model {
        bytes32 commitment; //   the manifest's chunk-Merkle key (ml-spec §3)
        bytes32 nodeProgram; //  initial state hash of the node program (vm-spec §2.2)
        bytes32 modelProgram; // initial state hash of the whole-model program
        uint32 nodeCount; //     N
        uint32 inputBytes; //    the size of the model's input (ml-spec §3.1)
        uint64 maxSteps; //      bound on the steps of any program a dispute runs (ml-spec, cost bound)
    }

    struct Task {
        address requester;
        uint64 modelId;
        uint64 window; //        seconds a result can be challenged
        uint64 createdAt; //     the answer window (`moveWindow`) runs from here: no cancel before its end
        bool multiPhase;
        TaskStatus status;
        uint32 challengerWins; // disputes of its result won by their challenger: they share the bond
        uint32 sharesClaimed; //  how many of them have claimed their share
        uint256 reward;
        bytes32 inputKey; //     key(v_0)
    }

    struct Result {
        address server;
        uint64 submittedAt;
        uint32 openDisputes;
        bytes32 outputKey; //    key(v_N), zero until the server reveals the output
        bytes32 finalState; //   the claimed S_{N−1}
    }

    /// @dev Bisection positions: phase 1 `0 … N` (position p is S_{p−1}); phase 2 `0 … steps`.
    ///      `loHash` is agreed; `hiHash` is `hiParty`'s claim, disputed by the other party; `midHash`,
    ///      when non-zero, is the claim at ⌊(lo + hi)/2⌋ of the party whose turn it is not.
    struct Dispute {
        address challenger;
        Phase phase;
        Party turn;
        Party winner;
        Party hiParty; //        whose claim `hiHash` is
        uint64 deadline;
        uint64 taskId;
        uint64 lo;
        uint64 hi;
        uint32 node; //          k, once phase 1 has ended
        bool localsLoaded; //    the program's local values are in the oracle
        bool defended; //        the server staked its side (`defend`): the winner takes both stakes
        bool shareClaimed; //    a winning challenger claimed its share of the server's bond
        bytes32 loHash; //       agreed
        bytes32 hiHash; //       claimed by `hiParty`, disputed by the other
        bytes32 midHash; //      the pending claim at the midpoint (0: none)
        bytes32 agreedState; //  phase 2: S_{k−1} (multi-phase)
        bytes32 claimedState; // phase 2: the server's S_k (multi-phase) or S_{N−1} (single-phase)
    }

    /// @notice Thrown when a model, task or dispute id does not exist.
    error UnknownId();
    /// @notice Thrown when a model registration has N outside 1 … 2^20, a zero hash, a zero input size,
    ///         or a step bound outside 1 … `MAX_STEP_BOUND`.
    error InvalidModel();
    /// @notice Thrown when a task's reward is zero.
    error ZeroReward();
    /// @notice Thrown when a task's challenge window is below `minChallengeWindow`.
    error WindowTooShort();
    /// @notice Thrown when a task's challenge window is above `MAX_CHALLENGE_WINDOW`.
    error WindowTooLong();
    /// @notice Thrown when the constructor's bonds are zero or its windows are out of range.
    error InvalidParameters();
    /// @notice Thrown when someone other than the requester cancels a task.
    error NotRequester();
    /// @notice Thrown when input or output bytes are empty or longer than `MAX_DATA_BYTES`, or an input's
    ///         size is not the model's `inputBytes`.
    error InvalidDataSize();
    /// @notice Thrown when a task is cancelled before its answer window (`createdAt + moveWindow`) ends.
    error AnswerWindowOpen();
    /// @notice Thrown when someone other than the result's server reveals its output.
    error NotServer();
    /// @notice Thrown when a result's output is revealed twice.
    error AlreadyRevealed();
    /// @notice Thrown when an execution claim's step count is above the model's `maxSteps`.
    error StepsOverBound(uint64 maxSteps);
    /// @notice Thrown when a bond share is claimed for a dispute its challenger did not win, or twice.
    error NoBondShare();
    /// @notice Thrown when an input key is not a chunk-Merkle key (type 3).
    error InvalidKeyType();
    /// @notice Thrown when a task is not in the status the call requires.
    error WrongTaskStatus(TaskStatus status);
    /// @notice Thrown when `msg.value` is not the bond the call requires.
    error WrongBond(uint256 expected);
    /// @notice Thrown when a result's output key is not leaf N of its final state's chunk tree.
    error OutputNotInState();
    /// @notice Thrown when a challenge comes after the result's window.
    error WindowClosed();
    /// @notice Thrown when a result is finalized before its window has passed.
    error WindowOpen();
    /// @notice Thrown when a result with an open dispute is finalized, or a bond share is claimed while
    ///         one of its result's disputes is open.
    error DisputesOpen();
    /// @notice Thrown when the server challenges its own result, or a challenger disputes it twice.
    error ChallengeNotAllowed();
    /// @notice Thrown when a move comes from an account that is not the dispute's server or challenger.
    error NotParty();
    /// @notice Thrown when a party moves while it is the other side's turn.
    error NotYourTurn();
    /// @notice Thrown when a move does not belong to the dispute's current phase.
    error WrongPhase(Phase phase);
    /// @notice Thrown when a move comes after the dispute's deadline.
    error DeadlinePassed();
    /// @notice Thrown when `timeout` is called before the dispute's deadline.
    error DeadlineNotPassed();
    /// @notice Thrown when an execution claim's final state is not a valid exit (status byte 0), or
    ///         claims zero steps.
    error NotAValidExit();
    /// @notice Thrown when the step's pre-state does not hash to the agreed state.
    error WrongPreState();
    /// @notice Thrown when a claim is zero where one is required, or non-zero where the move ends the
    ///         bisection.
    error InvalidClaim();
    /// @notice Thrown when `bisect` is called while a claim is pending, or `respond` while none is.
    error WrongMove();
    /// @notice Thrown when the server's `S_k` in `claimExecution` contradicts phase 1: it must equal
    ///         `hiHash` when that is the server's claim, and differ from it when it is the challenger's;
    ///         and it is never zero.
    error InconsistentClaim();
    /// @notice Thrown when a dispute's local values are loaded twice, or outside phases Execution and
    ///         Step (before `claimExecution`, or once the dispute is resolved).
    error LocalValuesNotLoadable();
    /// @notice Thrown when `withdraw` is called with nothing credited.
    error NothingToWithdraw();
    /// @notice Thrown when sending a withdrawal fails.
    error TransferFailed();

    event ModelRegistered(uint256 indexed modelId, bytes32 commitment, uint32 nodeCount, string uri);
    event TaskCreated(uint256 indexed taskId, uint256 indexed modelId, bytes32 inputKey, bytes input);
    event ResultSubmitted(uint256 indexed taskId, address indexed server, bytes32 finalState);
    event OutputRevealed(uint256 indexed taskId, bytes32 outputKey, bytes output);
    event ResultFinalized(uint256 indexed taskId, address indexed server);
    event ResultRejected(uint256 indexed taskId, bool expired);
    event TaskCancelled(uint256 indexed taskId);
    event DisputeOpened(uint256 indexed disputeId, uint256 indexed taskId, address indexed challenger);
    event DisputeDefended(uint256 indexed disputeId);
    event Bisected(uint256 indexed disputeId, Party party, uint64 position, bytes32 claim);
    event Responded(uint256 indexed disputeId, Party party, uint64 position, bool agree);
    event PhaseOneEnded(uint256 indexed disputeId, uint32 node, bytes32 localContext);
    event ExecutionClaimed(uint256 indexed disputeId, uint64 steps, bytes32 finalState, bytes32 claimedState);
    event LocalValuesLoaded(uint256 indexed disputeId, bytes32 localContext);
    event StepPlayed(uint256 indexed disputeId, uint64 position, bytes32 postState);
    event DisputeResolved(uint256 indexed disputeId, Party winner, bool byTimeout);
    event BondShareClaimed(uint256 indexed disputeId, address indexed challenger, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
}
