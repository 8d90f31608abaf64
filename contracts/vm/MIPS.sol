// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import { IMIPS } from "../interfaces/IMIPS.sol";
import { IPreimageOracle } from "../interfaces/IPreimageOracle.sol";
import { MIPSState } from "./lib/MIPSState.sol";
import { MIPSMemory } from "./lib/MIPSMemory.sol";
import { MIPSInstructions } from "./lib/MIPSInstructions.sol";

/// @title MIPS
/// @notice On-chain single-step executor of the opML MIPS32 little-endian VM (docs/vm-spec.md).
/// @dev Witness layout (spec §3.3, §3.4): `proof = instructionProof ‖ dataProof?`, each a compact
///      memory proof
///
///      | bytes   | field      | meaning                                                          |
///      |--------:|------------|------------------------------------------------------------------|
///      |      32 | `leaf`     | the 32 bytes of the leaf (memory bytes in address order)         |
///      |       4 | `zeroMask` | big-endian; bit `k` set ⇔ the sibling at level `k` is `Z[k]`     |
///      | 32 each | siblings   | the siblings whose bit is clear, lowest level first              |
///
///      The instruction proof covers leaf `i = pc >> 5` with 27 levels. The data proof is present
///      exactly when the step's data address (an aligned load or store's address, an aligned
///      `preimage_select` key address, a `preimage_read` buffer with `count ≠ 0`) lies in a leaf
///      `j ≠ i`, and covers only its levels `0 … floor(log2(i XOR j)) − 1`; the levels above are
///      shared with the instruction proof.
///      A state that has exited takes an empty proof. See `MIPSState` for the state layout.
///
///      The preimage system calls (spec §5.5) read `oracle`; a local key (type 1) is localized with
///      `msg.sender` and the `localContext` argument (zero for the two-argument `step`).
contract MIPS is IMIPS {
    /// @inheritdoc IMIPS
    IPreimageOracle public immutable oracle;

    /// @param oracle_ The preimage oracle that `preimage_length` and `preimage_read` ask.
    constructor(IPreimageOracle oracle_) {
        oracle = oracle_;
    }

    /// @inheritdoc IMIPS
    function stateHash(bytes calldata stateData) external pure returns (bytes32) {
        MIPSState.State memory s = MIPSState.decode(stateData);
        return MIPSState.stateHash(keccak256(stateData), s.exited, s.exitCode);
    }

    /// @inheritdoc IMIPS
    function step(bytes calldata stateData, bytes calldata proof) external returns (bytes32) {
        return _step(stateData, proof, bytes32(0));
    }

    /// @inheritdoc IMIPS
    function step(bytes calldata stateData, bytes calldata proof, bytes32 localContext) external returns (bytes32) {
        return _step(stateData, proof, localContext);
    }

    /// @dev Order of checks of spec §4.1.
    function _step(bytes calldata stateData, bytes calldata proof, bytes32 localContext)
        private
        returns (bytes32 postStateHash)
    {
        // 1. decode and validate the pre-state
        MIPSState.State memory s = MIPSState.decode(stateData);
        bytes32 preStateHash = MIPSState.stateHash(keccak256(stateData), s.exited, s.exitCode);

        // 2. a final state does not change
        if (s.exited) {
            if (proof.length != 0) revert MIPSMemory.InvalidProofLength();
            return preStateHash;
        }

        // 3. count the step
        unchecked {
            s.step += 1;
        }

        MIPSMemory.Proof memory p = MIPSMemory.init(proof);
        if (s.pc & 3 != 0) {
            // 4. misaligned pc
            MIPSInstructions.panic(s, MIPSInstructions.SIGBUS);
        } else {
            // 5. fetch against memRoot, 6. execute
            uint32 insn = MIPSMemory.readInstruction(p, s.memRoot, s.pc);
            MIPSInstructions.execMipsCoreStepLogic(s, p, insn, oracle, localContext);
        }

        // 7. the witness is consumed exactly
        MIPSMemory.checkConsumed(p);

        // 8. post-state
        bytes memory postState = MIPSState.encode(s);
        postStateHash = MIPSState.stateHash(keccak256(postState), s.exited, s.exitCode);
        emit StepExecuted(preStateHash, postStateHash, postState);
    }
}
