// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title MIPSState
/// @notice The VM state of docs/vm-spec.md §2: decoding from calldata, packed encoding and the state hash.
/// @dev `stateData` is 226 packed bytes, integers big-endian (spec §2.1):
///
/// | offset | size | field          | meaning                                              |
/// |-------:|-----:|----------------|------------------------------------------------------|
/// |      0 |   32 | `memRoot`      | Merkle root of the 4 GiB memory (spec §3)            |
/// |     32 |   32 | `preimageKey`  | oracle key selected by the guest                     |
/// |     64 |    4 | `pc`           | address of the instruction the next step executes    |
/// |     68 |    4 | `nextPC`       | address of the instruction after it                  |
/// |     72 |    4 | `lo`           | multiply/divide register LO                          |
/// |     76 |    4 | `hi`           | multiply/divide register HI                          |
/// |     80 |    4 | `brk`          | current program break                                |
/// |     84 |    4 | `heap`         | next address the anonymous `mmap` allocator returns  |
/// |     88 |    1 | `exitCode`     | exit status once `exited` is 1                       |
/// |     89 |    1 | `exited`       | 0 = running, 1 = exited; other values are invalid    |
/// |     90 |    8 | `step`         | number of steps executed so far                      |
/// |     98 |  128 | `registers[32]`| `$0`…`$31`, 4 bytes each                             |
library MIPSState {
    /// @notice Thrown when `stateData` is not 226 bytes long, `exited` is above 1, or `registers[0]` is not zero.
    error InvalidState();

    /// @notice Length of the packed state encoding.
    uint256 internal constant STATE_SIZE = 226;

    /// @notice Status byte of a state hash (spec §2.2).
    uint256 internal constant STATUS_VALID = 0;
    uint256 internal constant STATUS_INVALID = 1;
    uint256 internal constant STATUS_PANIC = 2;
    uint256 internal constant STATUS_UNFINISHED = 3;

    /// @notice The decoded state. Field order is relied upon by `decode` (one 32-byte word per field,
    ///         `registers` is a pointer to 32 words), exactly as Solidity lays out a memory struct.
    struct State {
        bytes32 memRoot; //      0x000
        bytes32 preimageKey; //  0x020
        uint32 pc; //            0x040
        uint32 nextPC; //        0x060
        uint32 lo; //            0x080
        uint32 hi; //            0x0a0
        uint32 brk; //           0x0c0
        uint32 heap; //          0x0e0
        uint8 exitCode; //       0x100
        bool exited; //          0x120
        uint64 step; //          0x140
        uint32[32] registers; // 0x160 (pointer)
    }

    /// @notice Decodes and validates `stateData` (spec §2.1).
    /// @dev Reads calldata with shifts and allocates the struct and its register array without
    ///      zero-filling them first (every word is written here).
    function decode(bytes calldata stateData) internal pure returns (State memory s) {
        if (stateData.length != STATE_SIZE) revert InvalidState();
        bool bad;
        assembly ("memory-safe") {
            let p := stateData.offset
            s := mload(0x40)
            let regs := add(s, 0x180)
            mstore(0x40, add(regs, 0x400))
            mstore(s, calldataload(p)) // memRoot
            mstore(add(s, 0x20), calldataload(add(p, 32))) // preimageKey
            let w := calldataload(add(p, 64)) // pc ‖ nextPC ‖ lo ‖ hi ‖ brk ‖ heap ‖ exitCode ‖ exited ‖ step[0..6]
            mstore(add(s, 0x40), shr(224, w)) // pc
            mstore(add(s, 0x60), and(shr(192, w), 0xffffffff)) // nextPC
            mstore(add(s, 0x80), and(shr(160, w), 0xffffffff)) // lo
            mstore(add(s, 0xa0), and(shr(128, w), 0xffffffff)) // hi
            mstore(add(s, 0xc0), and(shr(96, w), 0xffffffff)) // brk
            mstore(add(s, 0xe0), and(shr(64, w), 0xffffffff)) // heap
            mstore(add(s, 0x100), and(shr(56, w), 0xff)) // exitCode
            let exited := and(shr(48, w), 0xff)
            mstore(add(s, 0x120), exited) // exited (validated below)
            mstore(add(s, 0x140), shr(192, calldataload(add(p, 90)))) // step
            mstore(add(s, 0x160), regs)
            let rp := add(p, 98)
            for { let i := 0 } lt(i, 32) { i := add(i, 1) } {
                mstore(add(regs, shl(5, i)), shr(224, calldataload(add(rp, shl(2, i)))))
            }
            bad := or(gt(exited, 1), iszero(iszero(mload(regs))))
        }
        if (bad) revert InvalidState();
    }

    /// @notice Packs `s` into its 226-byte encoding (spec §2.1).
    /// @dev Fields are written in increasing offset order with left-aligned `mstore`s; each write's
    ///      trailing zero bytes are overwritten by the next one, and the last one only zeroes padding.
    function encode(State memory s) internal pure returns (bytes memory out) {
        assembly ("memory-safe") {
            out := mload(0x40)
            mstore(0x40, add(out, 0x140)) // 32 (length) + 256 (226 rounded up) + 32 (tail of the last write)
            mstore(out, 226)
            let d := add(out, 0x20)
            mstore(d, mload(s)) // memRoot
            mstore(add(d, 32), mload(add(s, 0x20))) // preimageKey
            mstore(add(d, 64), shl(224, mload(add(s, 0x40)))) // pc
            mstore(add(d, 68), shl(224, mload(add(s, 0x60)))) // nextPC
            mstore(add(d, 72), shl(224, mload(add(s, 0x80)))) // lo
            mstore(add(d, 76), shl(224, mload(add(s, 0xa0)))) // hi
            mstore(add(d, 80), shl(224, mload(add(s, 0xc0)))) // brk
            mstore(add(d, 84), shl(224, mload(add(s, 0xe0)))) // heap
            mstore(add(d, 88), shl(248, mload(add(s, 0x100)))) // exitCode
            mstore(add(d, 89), shl(248, mload(add(s, 0x120)))) // exited
            mstore(add(d, 90), shl(192, mload(add(s, 0x140)))) // step
            let regs := mload(add(s, 0x160))
            let rp := add(d, 98)
            for { let i := 0 } lt(i, 32) { i := add(i, 1) } {
                mstore(add(rp, shl(2, i)), shl(224, mload(add(regs, shl(5, i)))))
            }
            mstore(add(d, 226), 0) // clean padding up to the next word boundary
        }
    }

    /// @notice The status byte of a state (spec §2.2).
    function status(bool exited, uint8 exitCode) internal pure returns (uint256) {
        if (!exited) return STATUS_UNFINISHED;
        if (exitCode == 0) return STATUS_VALID;
        if (exitCode == 1) return STATUS_INVALID;
        return STATUS_PANIC;
    }

    /// @notice `keccak256(encoded)` with its most significant byte replaced by the status (spec §2.2).
    function stateHash(bytes32 h, bool exited, uint8 exitCode) internal pure returns (bytes32) {
        return bytes32((uint256(h) & ((1 << 248) - 1)) | (status(exited, exitCode) << 248));
    }
}
