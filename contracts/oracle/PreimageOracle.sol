// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import { IPreimageOracle, PreimageKeyLib } from "../interfaces/IPreimageOracle.sol";

/// @title PreimageOracle
/// @notice Stores the 32-byte parts of preimages that the VM reads, each revealed with a proof against
///         its key (docs/oracle-spec.md). Revealing one part of a chunk-Merkle preimage of `n` bytes
///         costs one Merkle path of `treeDepth(n) = ⌈log2(⌈n/32⌉)⌉` siblings.
/// @dev Chunk tree (spec §1.3): `n = ⌈size/32⌉` chunks of 32 bytes, the last one zero-padded, are the
///      leaves `0 … n−1` of a tree of depth `d = treeDepth(size)`; leaves `n … 2^d − 1` are zero.
///      Leaves are the raw chunk bytes, inner nodes `keccak256(left ‖ right)` (the hashing of the VM
///      memory tree). `loadChunkMerklePart` arguments:
///
///      | argument     | meaning                                                                  |
///      |--------------|--------------------------------------------------------------------------|
///      | `key`        | `withType(keccak256(abi.encode(chunkRoot, size)), 3)`                    |
///      | `chunkRoot`  | root of the chunk tree                                                   |
///      | `size`       | preimage length in bytes                                                 |
///      | `partOffset` | `32 · i` for chunk `i`                                                   |
///      | `part`       | chunk `i` (the leaf)                                                     |
///      | `siblings`   | `d` siblings of leaf `i`, lowest level first                             |
contract PreimageOracle is IPreimageOracle {
    /// @notice The longest preimage a keccak key (type 2) can reveal; it travels whole in calldata.
    uint256 public constant MAX_KECCAK_PREIMAGE = 1 << 16;

    /// @inheritdoc IPreimageOracle
    mapping(bytes32 => mapping(uint256 => bytes32)) public preimageParts;
    /// @inheritdoc IPreimageOracle
    mapping(bytes32 => mapping(uint256 => bool)) public preimagePartOk;
    /// @inheritdoc IPreimageOracle
    mapping(bytes32 => uint256) public preimageLengths;
    /// @inheritdoc IPreimageOracle
    mapping(bytes32 => bool) public preimageLengthOk;

    // ---------------------------------------------------------------------------------------------
    // Reading (what MIPS.step calls)
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc IPreimageOracle
    function readPreimage(bytes32 key, uint256 partOffset) external view returns (bytes32 part, uint256 length) {
        if (!preimagePartOk[key][partOffset]) revert PartNotLoaded(key, partOffset);
        // Every loader stores the length together with the part.
        return (preimageParts[key][partOffset], preimageLengths[key]);
    }

    /// @inheritdoc IPreimageOracle
    function preimageLength(bytes32 key) external view returns (uint256 length) {
        if (!preimageLengthOk[key]) revert PreimageNotLoaded(key);
        return preimageLengths[key];
    }

    // ---------------------------------------------------------------------------------------------
    // Loading (spec §3; checks in the order of the table)
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc IPreimageOracle
    /// @dev A refinement of spec §3: `value` must be zero past `size` (`NonZeroPadding`), as every part
    ///      is. The caller may overwrite its own local values.
    function loadLocalData(uint256 ident, bytes32 localContext, bytes32 value, uint256 size)
        external
        returns (bytes32 key)
    {
        if (size > 32) revert LocalDataTooLarge();
        if (ident >> 248 != 0) revert InvalidLocalIdent();
        if (_padding(value, size) != 0) revert NonZeroPadding();
        key = PreimageKeyLib.localizeIdent(ident, msg.sender, localContext);
        _store(key, 0, value, size);
    }

    /// @inheritdoc IPreimageOracle
    function loadKeccak256PreimagePart(uint256 partOffset, bytes calldata preimage) external returns (bytes32 key) {
        uint256 size = preimage.length;
        if (size > MAX_KECCAK_PREIMAGE) revert PreimageTooLarge();
        _checkPartOffset(partOffset, size);
        bytes32 h;
        bytes32 part;
        assembly ("memory-safe") {
            // Hash the preimage in free memory, without claiming it.
            let p := mload(0x40)
            calldatacopy(p, preimage.offset, size)
            h := keccak256(p, size)
            // partOffset < size ≤ 2^16 (or both 0), so this cannot overflow.
            part := calldataload(add(preimage.offset, partOffset))
        }
        // calldataload reads on past the preimage (ABI padding or other arguments): clear those bytes.
        part ^= _padding(part, size - partOffset);
        key = PreimageKeyLib.withType(h, PreimageKeyLib.KECCAK);
        _store(key, partOffset, part, size);
    }

    /// @inheritdoc IPreimageOracle
    function loadChunkMerklePart(
        bytes32 key,
        bytes32 chunkRoot,
        uint256 size,
        uint256 partOffset,
        bytes32 part,
        bytes32[] calldata siblings
    ) external {
        if (PreimageKeyLib.keyType(key) != PreimageKeyLib.CHUNK_MERKLE) revert InvalidKeyType();
        if (PreimageKeyLib.chunkMerkleKey(chunkRoot, size) != key) revert KeyMismatch();
        _checkPartOffset(partOffset, size);
        if (siblings.length != treeDepth(size)) revert InvalidProofLength();
        if (_merkleRoot(part, partOffset >> 5, siblings) != chunkRoot) revert InvalidPartProof();
        if (_padding(part, size - partOffset) != 0) revert NonZeroPadding();
        _store(key, partOffset, part, size);
    }

    // ---------------------------------------------------------------------------------------------
    // Helpers
    // ---------------------------------------------------------------------------------------------

    /// @notice `⌈log2(max(⌈size/32⌉, 1))⌉`: the depth of the chunk tree of a `size`-byte preimage.
    function treeDepth(uint256 size) public pure returns (uint256 depth) {
        // Number of chunks, without the overflow of (size + 31) / 32.
        uint256 n = (size >> 5) + (size & 31 == 0 ? 0 : 1);
        if (n <= 1) return 0;
        // ⌈log2(n)⌉ = floor(log2(n − 1)) + 1 for n ≥ 2.
        uint256 x = n - 1;
        unchecked {
            for (uint256 s = 128; s != 0; s >>= 1) {
                if (x >> s != 0) {
                    x >>= s;
                    depth += s;
                }
            }
            depth += 1;
        }
    }

    /// @notice The localized key of local value `ident` stored by `caller` for `localContext`
    ///         (`PreimageKeyLib.localizeIdent`, for off-chain callers).
    function localizedKey(uint256 ident, address caller, bytes32 localContext) external pure returns (bytes32) {
        return PreimageKeyLib.localizeIdent(ident, caller, localContext);
    }

    /// @dev Reverts unless `partOffset` is a multiple of 32 below `size`, or `partOffset == size == 0`.
    function _checkPartOffset(uint256 partOffset, uint256 size) private pure {
        if (partOffset & 31 != 0 || (partOffset >= size && (size != 0 || partOffset != 0))) {
            revert InvalidPartOffset();
        }
    }

    /// @dev The bytes of `part` from byte `remaining` on (the bytes past the end of a preimage that has
    ///      `remaining` bytes left at this part); zero when `remaining ≥ 32`.
    function _padding(bytes32 part, uint256 remaining) private pure returns (bytes32) {
        if (remaining >= 32) return bytes32(0);
        return part & bytes32(type(uint256).max >> (remaining << 3));
    }

    /// @dev Root of the Merkle path from leaf `index` with value `leaf` up through `siblings` (calldata,
    ///      lowest level first). At level `k`, bit `k` of `index` says whether the node is the right child.
    ///      The pair is hashed in scratch space: word 0 holds the left child, word 1 the right child.
    function _merkleRoot(bytes32 leaf, uint256 index, bytes32[] calldata siblings)
        private
        pure
        returns (bytes32 node)
    {
        assembly ("memory-safe") {
            node := leaf
            let sib := siblings.offset
            let end := add(sib, shl(5, siblings.length))
            for {} lt(sib, end) { sib := add(sib, 0x20) } {
                // right = 1: node goes to word 1 and the sibling to word 0, and vice versa.
                let b := shl(5, and(index, 1))
                mstore(b, node)
                mstore(xor(b, 0x20), calldataload(sib))
                node := keccak256(0x00, 0x40)
                index := shr(1, index)
            }
        }
    }

    /// @dev Stores a checked part and the preimage length, and emits `PreimagePartLoaded`.
    function _store(bytes32 key, uint256 partOffset, bytes32 part, uint256 size) private {
        preimageParts[key][partOffset] = part;
        preimagePartOk[key][partOffset] = true;
        preimageLengths[key] = size;
        preimageLengthOk[key] = true;
        emit PreimagePartLoaded(key, partOffset, part, size);
    }
}
