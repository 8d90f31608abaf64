// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import { IMIPS } from "../interfaces/IMIPS.sol";
import { IPreimageOracle } from "../interfaces/IPreimageOracle.sol";

/// @title AlphabetVM
/// @notice A toy VM behind `IMIPS`, so that the verification game is tested without MIPS (as Optimism
///         tests its dispute game with an alphabet VM).
/// @dev A state is `abi.encode(uint64 position, uint8 status)` (64 bytes); its hash is
///      `keccak256(stateData)` with the most significant byte replaced by `status` (3 running, 0 valid,
///      1 invalid, 2 panic, as vm-spec §2.2). `step` from a running state at `position` gives
///      `position + 1`, which exits with `haltStatus` once `position + 1 == haltAt`; an exited state
///      steps to itself. `step` ignores `proof` unless its first byte is 0xFF, which reverts (a forged
///      witness). The initial state is `initialState()`.
contract AlphabetVM is IMIPS {
    IPreimageOracle public immutable oracle;
    uint64 public immutable haltAt;
    uint8 public immutable haltStatus;

    /// @notice Thrown when a proof is marked forged, or a state is not 64 bytes.
    error BadWitness();

    constructor(IPreimageOracle oracle_, uint64 haltAt_, uint8 haltStatus_) {
        oracle = oracle_;
        haltAt = haltAt_;
        haltStatus = haltStatus_;
    }

    function initialState() external pure returns (bytes memory) {
        return abi.encode(uint64(0), uint8(3));
    }

    function stateHash(bytes calldata stateData) public pure returns (bytes32) {
        if (stateData.length != 64) revert BadWitness();
        (, uint8 status) = abi.decode(stateData, (uint64, uint8));
        return bytes32((uint256(keccak256(stateData)) & ((1 << 248) - 1)) | (uint256(status) << 248));
    }

    function step(bytes calldata stateData, bytes calldata proof) external returns (bytes32) {
        return _step(stateData, proof);
    }

    function step(bytes calldata stateData, bytes calldata proof, bytes32) external returns (bytes32) {
        return _step(stateData, proof);
    }

    function _step(bytes calldata stateData, bytes calldata proof) private returns (bytes32 post) {
        if (proof.length > 0 && proof[0] == 0xFF) revert BadWitness();
        bytes32 pre = stateHash(stateData);
        (uint64 position, uint8 status) = abi.decode(stateData, (uint64, uint8));
        if (status != 3) return pre;
        position += 1;
        bytes memory next = abi.encode(position, position == haltAt ? haltStatus : uint8(3));
        post = this.stateHash(next);
        emit StepExecuted(pre, post, next);
    }
}
