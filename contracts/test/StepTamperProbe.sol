// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import { IMIPS } from "../interfaces/IMIPS.sol";

/// @title StepTamperProbe
/// @notice Test helper: runs `IMIPS.step` on every single-bit variant of a byte range of a witness in one
///         `eth_call`, so that the tamper tests can flip all 8 bits of every byte of a proof without one
///         node round trip per variant. It changes nothing on-chain; call it with `eth_call` only.
contract StepTamperProbe {
    /// @notice The outcome of `step` on one variant: `reverted`, and then the 4-byte custom-error selector
    ///         in the high bytes of `result` (zero for a revert without data); else the post-state hash.
    struct Outcome {
        bool reverted;
        bytes32 result;
    }

    /// @notice Flips each bit of bytes `from … to − 1` of `proof` (`tamperProof`) or of `stateData`, one
    ///         variant at a time, and steps `vm` on each variant with `localContext`.
    /// @return outcomes `8 · (to − from)` outcomes; variant `8 · (p − from) + b` flips bit `b` of byte `p`.
    function probe(
        IMIPS vm,
        bytes calldata stateData,
        bytes calldata proof,
        bytes32 localContext,
        bool tamperProof,
        uint256 from,
        uint256 to
    ) external returns (Outcome[] memory outcomes) {
        outcomes = new Outcome[](8 * (to - from));
        bytes memory data = tamperProof ? proof : stateData;
        for (uint256 p = from; p < to; p++) {
            for (uint256 b = 0; b < 8; b++) {
                data[p] ^= bytes1(uint8(1 << b));
                outcomes[8 * (p - from) + b] = tamperProof
                    ? _outcome(vm, stateData, data, localContext)
                    : _outcome(vm, data, proof, localContext);
                data[p] ^= bytes1(uint8(1 << b));
            }
        }
    }

    function _outcome(IMIPS vm, bytes memory stateData, bytes memory proof, bytes32 localContext)
        private
        returns (Outcome memory)
    {
        try vm.step(stateData, proof, localContext) returns (bytes32 postStateHash) {
            return Outcome(false, postStateHash);
        } catch (bytes memory reason) {
            return Outcome(true, reason.length >= 4 ? bytes32(bytes4(reason)) : bytes32(0));
        }
    }
}
