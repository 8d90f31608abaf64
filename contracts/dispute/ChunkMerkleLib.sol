// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import { PreimageKeyLib } from "../interfaces/IPreimageOracle.sol";

/// @title ChunkMerkleLib
/// @notice Chunk-Merkle keys (docs/oracle-spec.md §1.3) on-chain: the key of bytes in calldata, and a
///         check that a 32-byte leaf sits at an index of a chunk tree.
/// @dev `n = ⌈len/32⌉` chunks (the last zero-padded) are the leaves of a tree of depth
///      `d = ⌈log2(max(n, 1))⌉`; leaves `n … 2^d − 1` are zero; inner nodes are `keccak256(left ‖ right)`.
///      `key = withType(keccak256(abi.encode(root, len)), 3)`.
library ChunkMerkleLib {
    /// @notice The key of a preimage with chunk-tree root `chunkRoot` and length `size`.
    function keyOf(bytes32 chunkRoot, uint256 size) internal pure returns (bytes32) {
        return PreimageKeyLib.withType(keccak256(abi.encode(chunkRoot, size)), PreimageKeyLib.CHUNK_MERKLE);
    }

    /// @notice `⌈log2(max(chunks, 1))⌉`.
    function depth(uint256 chunks) internal pure returns (uint256 d) {
        while ((uint256(1) << d) < chunks) d++;
    }

    /// @notice The chunk-tree root of `data`, built level by level (for data of a few KiB).
    function root(bytes calldata data) internal pure returns (bytes32) {
        uint256 n = (data.length + 31) / 32;
        if (n == 0) return bytes32(0);
        bytes32[] memory level = new bytes32[](n);
        for (uint256 i = 0; i < n; i++) {
            uint256 start = 32 * i;
            uint256 end = start + 32 < data.length ? start + 32 : data.length;
            level[i] = bytes32(data[start:end]); // right-padded with zeros
        }
        bytes32 zero; // Z[l], the root of an all-zero subtree of height l
        uint256 count = n;
        for (uint256 l = depth(n); l > 0; l--) {
            uint256 parents = (count + 1) / 2;
            for (uint256 i = 0; i < parents; i++) {
                bytes32 right = 2 * i + 1 < count ? level[2 * i + 1] : zero;
                level[i] = keccak256(abi.encode(level[2 * i], right));
            }
            count = parents;
            zero = keccak256(abi.encode(zero, zero));
        }
        return level[0];
    }

    /// @notice The chunk-Merkle key of `data`.
    function key(bytes calldata data) internal pure returns (bytes32) {
        return keyOf(root(data), data.length);
    }

    /// @notice Whether `leaf` is leaf `index` of the tree with root `treeRoot`, given its siblings
    ///         (lowest level first).
    function hasLeaf(bytes32 treeRoot, uint256 index, bytes32 leaf, bytes32[] calldata siblings)
        internal
        pure
        returns (bool)
    {
        bytes32 node = leaf;
        for (uint256 l = 0; l < siblings.length; l++) {
            node = (index >> l) & 1 == 0
                ? keccak256(abi.encode(node, siblings[l]))
                : keccak256(abi.encode(siblings[l], node));
        }
        return node == treeRoot && index >> siblings.length == 0;
    }
}
