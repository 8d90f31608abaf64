// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import { IPreimageOracle } from "./IPreimageOracle.sol";

/// @title IMIPS
/// @notice The one-step VM that the dispute game depends on (docs/vm-spec.md §8). A toy VM that
///         implements this interface can stand in for `MIPS` when the game itself is tested.
interface IMIPS {
    /// @notice Emitted by every step of a running state, with the packed post-state.
    event StepExecuted(bytes32 indexed preStateHash, bytes32 indexed postStateHash, bytes postState);

    /// @notice The preimage oracle that the preimage system calls read (spec §5.5).
    function oracle() external view returns (IPreimageOracle);

    /// @notice The status-tagged hash (spec §2.2) of the packed state `stateData`; reverts with
    ///         `InvalidState` where `step` would. The dispute game checks a step's pre-state with it.
    function stateHash(bytes calldata stateData) external pure returns (bytes32);

    /// @notice Executes one instruction from the packed state `stateData` with the memory witness `proof`,
    ///         with `localContext = 0`.
    /// @return postStateHash The status-tagged hash of the post-state (spec §2.2).
    function step(bytes calldata stateData, bytes calldata proof) external returns (bytes32 postStateHash);

    /// @notice As `step(stateData, proof)`; the oracle is asked for local keys (type 1) localized with
    ///         `msg.sender` and `localContext` (spec §5.5, oracle-spec §1.1).
    /// @return postStateHash The status-tagged hash of the post-state (spec §2.2).
    function step(bytes calldata stateData, bytes calldata proof, bytes32 localContext)
        external
        returns (bytes32 postStateHash);
}
