// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title MIPSMemory
/// @notice Compact Merkle proofs for the 4 GiB memory of docs/vm-spec.md §3.
/// @dev Memory is a binary tree of depth `MEM_TREE_DEPTH = 27` over 32-byte leaves. Leaf `i` holds the
///      bytes `[32·i, 32·i + 32)` in address order, so byte `a` is the `(a mod 32)`-th most significant
///      byte of leaf `a >> 5` viewed as a `bytes32`; words and halfwords are little-endian (§3.2).
///
///      A compact proof for leaf `i` with `levels` levels (spec §3.3):
///
///      | bytes   | field      | meaning                                                          |
///      |--------:|------------|------------------------------------------------------------------|
///      |      32 | `leaf`     | the 32 bytes of leaf `i`                                         |
///      |       4 | `zeroMask` | big-endian; bit `k` set ⇔ sibling `k` is `Z[k]` and is omitted   |
///      | 32 each | siblings   | the siblings whose bit is clear, lowest level first              |
///
///      The witness of a step is `instructionProof ‖ dataProof?` (spec §3.4). The instruction proof has
///      27 levels. The data proof for leaf `j ≠ i` has `L = floor(log2(i XOR j))` levels; at level `L`
///      its sibling is the node of `i`'s path and above `L` it shares `i`'s siblings. Instead of hashing
///      those shared levels again, `readLeaf` checks that `j`'s node at level `L` equals the instruction
///      proof's (already authenticated) sibling at level `L`, which is equivalent to recomputing `memRoot`.
///
///      Proofs are read straight from calldata. The instruction path (its node and its sibling at every
///      level) and the zero-root table `Z` are kept in one scratch area of 81 words:
///      `[Z[0..26] | node_i[0..26] | sib_i[0..26]]`.
library MIPSMemory {
    /// @notice Thrown when `proof` is shorter than the step needs or has bytes left over.
    error InvalidProofLength();
    /// @notice Thrown when a proof's `zeroMask` has a bit set at or above its number of levels.
    error InvalidZeroMask();
    /// @notice Thrown when a proof does not recompute `memRoot`.
    error InvalidMemoryProof();

    /// @notice Depth of the memory tree; the root is at this level.
    uint256 internal constant MEM_TREE_DEPTH = 27;
    /// @notice Bytes of a proof before its siblings: `leaf` (32) and `zeroMask` (4).
    uint256 internal constant PROOF_HEADER_SIZE = 36;

    /// @dev Byte offsets inside the scratch area.
    uint256 private constant NODES_OFFSET = 27 * 32;
    uint256 private constant SIBLINGS_OFFSET = 54 * 32;
    uint256 private constant SCRATCH_SIZE = 81 * 32;

    /// @notice Reading position in the `proof` calldata, and what the instruction proof established.
    struct Proof {
        uint256 cursor; //       calldata offset of the next unread byte of `proof`
        uint256 end; //          calldata offset one past the last byte of `proof`
        uint256 scratch; //      memory pointer to `[Z | node_i | sib_i]`
        uint256 leafIndex; //    `i`, the leaf holding `pc`
        bytes32 leaf; //         the instruction leaf
        uint256 dataIndex; //    `j`, the leaf of the last `readLeaf`
        bytes32 dataLeaf; //     its value
        uint256 dataLevels; //   `L` (unused when `j == i`)
        uint256 dataMask; //     the data proof's `zeroMask`
        uint256 dataSiblings; // calldata offset of the data proof's first sibling
    }

    /// @notice Starts reading `proof`.
    function init(bytes calldata proof) internal pure returns (Proof memory p) {
        p.cursor = _offset(proof);
        p.end = p.cursor + proof.length;
    }

    /// @notice Step 7 of spec §4.1: the whole proof must have been read.
    function checkConsumed(Proof memory p) internal pure {
        if (p.cursor != p.end) revert InvalidProofLength();
    }

    /// @notice Reads the 27-level instruction proof, checks it against `memRoot` and returns the
    ///         little-endian instruction word at `pc` (which must be 4-aligned).
    function readInstruction(Proof memory p, bytes32 memRoot, uint32 pc) internal pure returns (uint32 insn) {
        uint256 scratch = _allocScratch();
        p.scratch = scratch;
        uint256 i = pc >> 5;
        (bytes32 leaf, uint256 mask, uint256 sibs) = _readHeader(p, MEM_TREE_DEPTH);
        bytes32 root = _walkCalldata(leaf, i, MEM_TREE_DEPTH, mask, sibs, scratch, scratch + NODES_OFFSET);
        if (root != memRoot) revert InvalidMemoryProof();
        p.leafIndex = i;
        p.leaf = leaf;
        insn = wordAt(leaf, pc);
    }

    /// @notice Returns the aligned little-endian word that contains `addr`, reading the data proof
    ///         when `addr` lies outside the instruction leaf. Must follow `readInstruction`.
    function readWord(Proof memory p, uint32 addr) internal pure returns (uint32) {
        return wordAt(readLeaf(p, addr), addr);
    }

    /// @notice Returns the 32-byte leaf that contains `addr` (the data address of spec §3.4), reading
    ///         the data proof when `addr` lies outside the instruction leaf. Must follow
    ///         `readInstruction`, and is called at most once per step.
    function readLeaf(Proof memory p, uint32 addr) internal pure returns (bytes32) {
        uint256 j = addr >> 5;
        uint256 i = p.leafIndex;
        p.dataIndex = j;
        if (j == i) {
            bytes32 instructionLeaf = p.leaf;
            p.dataLeaf = instructionLeaf;
            return instructionLeaf;
        }
        uint256 levels = _log2(i ^ j);
        (bytes32 leaf, uint256 mask, uint256 sibs) = _readHeader(p, levels);
        bytes32 node = _walkCalldata(leaf, j, levels, mask, sibs, p.scratch, 0);
        if (node != _siblingOfInstructionPath(p, levels)) revert InvalidMemoryProof();
        p.dataLeaf = leaf;
        p.dataLevels = levels;
        p.dataMask = mask;
        p.dataSiblings = sibs;
        return leaf;
    }

    /// @notice Replaces the aligned word containing `addr` by `word` and returns the new `memRoot`.
    ///         Must follow `readWord(p, addr)`; it reuses that proof's siblings.
    function writeWord(Proof memory p, uint32 addr, uint32 word) internal pure returns (bytes32) {
        return writeLeaf(p, withWord(p.dataLeaf, addr, word));
    }

    /// @notice Replaces the leaf of the last `readLeaf`/`readWord` by `leaf` and returns the new
    ///         `memRoot`, reusing that proof's siblings.
    function writeLeaf(Proof memory p, bytes32 leaf) internal pure returns (bytes32) {
        uint256 j = p.dataIndex;
        uint256 siblings = p.scratch + SIBLINGS_OFFSET;
        if (j == p.leafIndex) return _walkMemory(leaf, j, 0, siblings);
        uint256 levels = p.dataLevels;
        bytes32 node = _walkCalldata(leaf, j, levels, p.dataMask, p.dataSiblings, p.scratch, 0);
        node = _hashPair(node, _nodeOfInstructionPath(p, levels), (j >> levels) & 1);
        return _walkMemory(node, j, levels + 1, siblings);
    }

    /// @notice The little-endian word at the 4-aligned address `addr & ~3` inside `leaf` (spec §3.2).
    function wordAt(bytes32 leaf, uint32 addr) internal pure returns (uint32) {
        uint256 shift = (28 - (addr & 28)) << 3;
        return _bswap32(uint32(uint256(leaf) >> shift));
    }

    /// @notice `leaf` with the little-endian word at `addr & ~3` replaced by `word` (spec §3.2).
    function withWord(bytes32 leaf, uint32 addr, uint32 word) internal pure returns (bytes32) {
        uint256 shift = (28 - (addr & 28)) << 3;
        uint256 cleared = uint256(leaf) & ~(uint256(0xffffffff) << shift);
        return bytes32(cleared | (uint256(_bswap32(word)) << shift));
    }

    /// @dev Reverses the byte order of a 32-bit word.
    function _bswap32(uint32 x) private pure returns (uint32) {
        return (x >> 24) | ((x >> 8) & 0xff00) | ((x << 8) & 0xff0000) | (x << 24);
    }

    /// @dev Reads `leaf` and `zeroMask` of a proof with `levels` levels and skips its siblings.
    ///      Checks, in this order: 36 bytes are left (`InvalidProofLength`), the mask has no bit at or
    ///      above `levels` (`InvalidZeroMask`), all its siblings are present (`InvalidProofLength`).
    function _readHeader(Proof memory p, uint256 levels)
        private
        pure
        returns (bytes32 leaf, uint256 mask, uint256 sibs)
    {
        uint256 cursor = p.cursor;
        uint256 left = p.end - cursor;
        if (left < PROOF_HEADER_SIZE) revert InvalidProofLength();
        assembly ("memory-safe") {
            leaf := calldataload(cursor)
            mask := shr(224, calldataload(add(cursor, 32)))
        }
        if (mask >> levels != 0) revert InvalidZeroMask();
        uint256 size = PROOF_HEADER_SIZE + ((levels - _popcount(mask)) << 5);
        if (left < size) revert InvalidProofLength();
        sibs = cursor + PROOF_HEADER_SIZE;
        p.cursor = cursor + size;
    }

    /// @dev Hashes `node` (leaf `index`'s path at level 0) up `levels` levels. The sibling at level `k`
    ///      is `Z[k]` when bit `k` of `mask` is set, else the next 32 bytes of calldata from `sibs`.
    ///      Parent = keccak(node ‖ sib) when bit `k` of `index` is 0, keccak(sib ‖ node) otherwise.
    ///      When `record` is not 0, stores the path's node at `record + 32k` and its sibling at
    ///      `record + 864 + 32k`.
    function _walkCalldata(
        bytes32 node,
        uint256 index,
        uint256 levels,
        uint256 mask,
        uint256 sibs,
        uint256 zeros,
        uint256 record
    )
        private
        pure
        returns (bytes32)
    {
        assembly ("memory-safe") {
            for { let k := 0 } lt(k, levels) { k := add(k, 1) } {
                let sib
                switch and(shr(k, mask), 1)
                case 0 {
                    sib := calldataload(sibs)
                    sibs := add(sibs, 32)
                }
                default { sib := mload(add(zeros, shl(5, k))) }
                if record {
                    mstore(add(record, shl(5, k)), node)
                    mstore(add(record, add(864, shl(5, k))), sib)
                }
                let b := shl(5, and(shr(k, index), 1)) // 0: node on the left, 32: node on the right
                mstore(b, node)
                mstore(xor(b, 32), sib)
                node := keccak256(0x00, 0x40)
            }
        }
        return node;
    }

    /// @dev Hashes `node` (leaf `index`'s path at level `from`) up to the root with the siblings
    ///      stored at `siblings + 32k` (the instruction path's siblings).
    function _walkMemory(bytes32 node, uint256 index, uint256 from, uint256 siblings) private pure returns (bytes32) {
        assembly ("memory-safe") {
            for { let k := from } lt(k, 27) { k := add(k, 1) } {
                let b := shl(5, and(shr(k, index), 1))
                mstore(b, node)
                mstore(xor(b, 32), mload(add(siblings, shl(5, k))))
                node := keccak256(0x00, 0x40)
            }
        }
        return node;
    }

    /// @dev keccak(node ‖ sib) when `right` is 0, keccak(sib ‖ node) otherwise.
    function _hashPair(bytes32 node, bytes32 sib, uint256 right) private pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let b := shl(5, right)
            mstore(b, node)
            mstore(xor(b, 32), sib)
            h := keccak256(0x00, 0x40)
        }
    }

    /// @dev The instruction path's sibling at `level`.
    function _siblingOfInstructionPath(Proof memory p, uint256 level) private pure returns (bytes32 v) {
        uint256 ptr = p.scratch + SIBLINGS_OFFSET + (level << 5);
        assembly ("memory-safe") {
            v := mload(ptr)
        }
    }

    /// @dev The instruction path's node at `level` (level 0 is the instruction leaf).
    function _nodeOfInstructionPath(Proof memory p, uint256 level) private pure returns (bytes32 v) {
        uint256 ptr = p.scratch + NODES_OFFSET + (level << 5);
        assembly ("memory-safe") {
            v := mload(ptr)
        }
    }

    /// @dev Number of set bits of a 32-bit value.
    function _popcount(uint256 x) private pure returns (uint256) {
        unchecked {
            x = x - ((x >> 1) & 0x55555555);
            x = (x & 0x33333333) + ((x >> 2) & 0x33333333);
            x = (x + (x >> 4)) & 0x0f0f0f0f;
            return ((x * 0x01010101) >> 24) & 0xff;
        }
    }

    /// @dev floor(log2(x)) for 0 < x < 2^32.
    function _log2(uint256 x) private pure returns (uint256 r) {
        unchecked {
            if (x > 0xffff) { x >>= 16; r = 16; }
            if (x > 0xff) { x >>= 8; r += 8; }
            if (x > 0xf) { x >>= 4; r += 4; }
            if (x > 0x3) { x >>= 2; r += 2; }
            if (x > 0x1) { r += 1; }
        }
    }

    /// @dev Absolute calldata offset of a `bytes calldata` argument.
    function _offset(bytes calldata b) private pure returns (uint256 o) {
        assembly ("memory-safe") {
            o := b.offset
        }
    }

    /// @dev Allocates the scratch area and fills `Z[0..26]`, the roots of all-zero subtrees
    ///      (`Z[0] = 0`, `Z[k+1] = keccak(Z[k] ‖ Z[k])`), from precomputed constants.
    function _allocScratch() private pure returns (uint256 zeros) {
        assembly ("memory-safe") {
            zeros := mload(0x40)
            mstore(0x40, add(zeros, 2592)) // SCRATCH_SIZE
            mstore(zeros, 0)
            mstore(add(zeros, 0x20), 0xad3228b676f7d3cd4284a5443f17f1962b36e491b30a40b2405849e597ba5fb5)
            mstore(add(zeros, 0x40), 0xb4c11951957c6f8f642c4af61cd6b24640fec6dc7fc607ee8206a99e92410d30)
            mstore(add(zeros, 0x60), 0x21ddb9a356815c3fac1026b6dec5df3124afbadb485c9ba5a3e3398a04b7ba85)
            mstore(add(zeros, 0x80), 0xe58769b32a1beaf1ea27375a44095a0d1fb664ce2dd358e7fcbfb78c26a19344)
            mstore(add(zeros, 0xa0), 0x0eb01ebfc9ed27500cd4dfc979272d1f0913cc9f66540d7e8005811109e1cf2d)
            mstore(add(zeros, 0xc0), 0x887c22bd8750d34016ac3c66b5ff102dacdd73f6b014e710b51e8022af9a1968)
            mstore(add(zeros, 0xe0), 0xffd70157e48063fc33c97a050f7f640233bf646cc98d9524c6b92bcf3ab56f83)
            mstore(add(zeros, 0x100), 0x9867cc5f7f196b93bae1e27e6320742445d290f2263827498b54fec539f756af)
            mstore(add(zeros, 0x120), 0xcefad4e508c098b9a7e1d8feb19955fb02ba9675585078710969d3440f5054e0)
            mstore(add(zeros, 0x140), 0xf9dc3e7fe016e050eff260334f18a5d4fe391d82092319f5964f2e2eb7c1c3a5)
            mstore(add(zeros, 0x160), 0xf8b13a49e282f609c317a833fb8d976d11517c571d1221a265d25af778ecf892)
            mstore(add(zeros, 0x180), 0x3490c6ceeb450aecdc82e28293031d10c7d73bf85e57bf041a97360aa2c5d99c)
            mstore(add(zeros, 0x1a0), 0xc1df82d9c4b87413eae2ef048f94b4d3554cea73d92b0f7af96e0271c691e2bb)
            mstore(add(zeros, 0x1c0), 0x5c67add7c6caf302256adedf7ab114da0acfe870d449a3a489f781d659e8becc)
            mstore(add(zeros, 0x1e0), 0xda7bce9f4e8618b6bd2f4132ce798cdc7a60e7e1460a7299e3c6342a579626d2)
            mstore(add(zeros, 0x200), 0x2733e50f526ec2fa19a22b31e8ed50f23cd1fdf94c9154ed3a7609a2f1ff981f)
            mstore(add(zeros, 0x220), 0xe1d3b5c807b281e4683cc6d6315cf95b9ade8641defcb32372f1c126e398ef7a)
            mstore(add(zeros, 0x240), 0x5a2dce0a8a7f68bb74560f8f71837c2c2ebbcbf7fffb42ae1896f13f7c7479a0)
            mstore(add(zeros, 0x260), 0xb46a28b6f55540f89444f63de0378e3d121be09e06cc9ded1c20e65876d36aa0)
            mstore(add(zeros, 0x280), 0xc65e9645644786b620e2dd2ad648ddfcbf4a7e5b1a3a4ecfe7f64667a3f0b7e2)
            mstore(add(zeros, 0x2a0), 0xf4418588ed35a2458cffeb39b93d26f18d2ab13bdce6aee58e7b99359ec2dfd9)
            mstore(add(zeros, 0x2c0), 0x5a9c16dc00d6ef18b7933a6f8dc65ccb55667138776f7dea101070dc8796e377)
            mstore(add(zeros, 0x2e0), 0x4df84f40ae0c8229d0d6069e5c8f39a7c299677a09d367fc7b05e3bc380ee652)
            mstore(add(zeros, 0x300), 0xcdc72595f74c7b1043d0e1ffbab734648c838dfb0527d971b602bc216c9619ef)
            mstore(add(zeros, 0x320), 0x0abf5ac974a1ed57f4050aa510dd9c74f508277b39d7973bb2dfccc5eeb0618d)
            mstore(add(zeros, 0x340), 0xb8cd74046ff337f0a7bf2c8e03e10f642c1886798d71806ab1e888d9e5ee87d0)
        }
    }
}
