// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title CodeSizeProbe
/// @notice Test helper: deploys a contract whose runtime code has an arbitrary size, so tests can
///         check that a local node accepts contracts above the EIP-170 limit of 24,576 bytes.
contract CodeSizeProbe {
    /// @notice Thrown when the node refused to create the contract.
    error CreateFailed(uint256 size);

    /// @notice Deploys `size` bytes of zero runtime code and returns its address.
    function deploy(uint16 size) external returns (address created) {
        // Init code: PUSH2 size, PUSH0, RETURN -> returns `size` zero bytes of fresh memory.
        bytes memory initCode = abi.encodePacked(hex"61", size, hex"5ff3");
        assembly {
            created := create(0, add(initCode, 32), mload(initCode))
        }
        if (created == address(0)) revert CreateFailed(size);
    }
}
