// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IPreimageOracle
/// @notice The preimage oracle of docs/oracle-spec.md: the VM reads the data behind a 32-byte key one
///         32-byte part at a time. `readPreimage` and `preimageLength` are what `MIPS.step` calls;
///         the `load*` functions reveal parts, each checked against its key (spec §3).
/// @dev Storage (spec §2), all public:
///
///      | mapping                              | value                                              |
///      |--------------------------------------|----------------------------------------------------|
///      | `preimageParts[key][partOffset]`     | the 32 bytes at `partOffset`, zero-padded past end |
///      | `preimagePartOk[key][partOffset]`    | the part was revealed                              |
///      | `preimageLengths[key]`               | the preimage length, valid when `preimageLengthOk` |
///      | `preimageLengthOk[key]`              | some part of the key was revealed                  |
interface IPreimageOracle {
    /// @notice Thrown when `partOffset` is not a multiple of 32, or is not below the preimage length
    ///         (except `partOffset == 0` for an empty preimage).
    error InvalidPartOffset();
    /// @notice Thrown when a keccak preimage is longer than `MAX_KECCAK_PREIMAGE` bytes.
    error PreimageTooLarge();
    /// @notice Thrown when a key's type byte is not the one the loading function proves.
    error InvalidKeyType();
    /// @notice Thrown when `keccak256(abi.encode(chunkRoot, size))` does not give the key.
    error KeyMismatch();
    /// @notice Thrown when a chunk-Merkle part proof does not have exactly `treeDepth(size)` siblings.
    error InvalidProofLength();
    /// @notice Thrown when a chunk-Merkle part proof does not recompute `chunkRoot`.
    error InvalidPartProof();
    /// @notice Thrown when a part (or a local value) has a non-zero byte past the end of the preimage.
    error NonZeroPadding();
    /// @notice Thrown when a local value is longer than 32 bytes.
    error LocalDataTooLarge();
    /// @notice Thrown when a local identifier has more than 248 bits: no guest can name it (its key
    ///         `withType(ident, 1)` keeps only the low 248 bits).
    error InvalidLocalIdent();
    /// @notice Thrown when `readPreimage` asks for a part that was never revealed.
    error PartNotLoaded(bytes32 key, uint256 partOffset);
    /// @notice Thrown when `preimageLength` asks for a key none of whose parts was revealed.
    error PreimageNotLoaded(bytes32 key);

    /// @notice Emitted for every revealed part (also when it was revealed before).
    event PreimagePartLoaded(bytes32 indexed key, uint256 indexed partOffset, bytes32 part, uint256 size);

    /// @notice The revealed part of `key` at `partOffset` and the preimage length.
    function readPreimage(bytes32 key, uint256 partOffset) external view returns (bytes32 part, uint256 length);

    /// @notice The length of the preimage behind `key`.
    function preimageLength(bytes32 key) external view returns (uint256 length);

    /// @notice Stores a local value of `size ≤ 32` bytes under the key localized with `msg.sender`.
    /// @return key The localized key (spec §1.1).
    function loadLocalData(uint256 ident, bytes32 localContext, bytes32 value, uint256 size)
        external
        returns (bytes32 key);

    /// @notice Reveals the part at `partOffset` of `preimage` under its keccak key (type 2).
    /// @return key `withType(keccak256(preimage), 2)`.
    function loadKeccak256PreimagePart(uint256 partOffset, bytes calldata preimage) external returns (bytes32 key);

    /// @notice Reveals the part at `partOffset` of a chunk-Merkle preimage (type 3) with its Merkle path.
    /// @param siblings The `treeDepth(size)` siblings of chunk `partOffset / 32`, lowest level first.
    function loadChunkMerklePart(
        bytes32 key,
        bytes32 chunkRoot,
        uint256 size,
        uint256 partOffset,
        bytes32 part,
        bytes32[] calldata siblings
    ) external;

    function preimageParts(bytes32 key, uint256 partOffset) external view returns (bytes32);
    function preimagePartOk(bytes32 key, uint256 partOffset) external view returns (bool);
    function preimageLengths(bytes32 key) external view returns (uint256);
    function preimageLengthOk(bytes32 key) external view returns (bool);
}

/// @title PreimageKeyLib
/// @notice The key derivations of docs/oracle-spec.md §1, for the oracle and for `MIPS.step` (which
///         localizes a type-1 key before it asks the oracle).
/// @dev `withType(h, t) = (h & ~(0xFF << 248)) | (t << 248)`.
///
///      | type | key                                                                        |
///      |-----:|----------------------------------------------------------------------------|
///      |    1 | `withType(keccak256(abi.encode(ident, caller, localContext)), 1)`          |
///      |    2 | `withType(keccak256(data), 2)`                                             |
///      |    3 | `withType(keccak256(abi.encode(chunkRoot(data), len(data))), 3)`           |
///
///      The guest names local value `ident` by the identifier key `withType(ident, 1)`; `localize`
///      recovers `ident` as the key's low 248 bits.
library PreimageKeyLib {
    uint8 internal constant LOCAL = 1;
    uint8 internal constant KECCAK = 2;
    uint8 internal constant CHUNK_MERKLE = 3;

    /// @dev The low 248 bits of a key (everything but the type byte).
    uint256 internal constant IDENT_MASK = (1 << 248) - 1;

    /// @notice `h` with its most significant byte replaced by `t`.
    function withType(bytes32 h, uint8 t) internal pure returns (bytes32) {
        return bytes32((uint256(h) & IDENT_MASK) | (uint256(t) << 248));
    }

    /// @notice The type byte (most significant byte) of `key`.
    function keyType(bytes32 key) internal pure returns (uint8) {
        return uint8(uint256(key) >> 248);
    }

    /// @notice The localized key of local value `ident` stored by `sender` (the spec's `caller`) for
    ///         `localContext`.
    function localizeIdent(uint256 ident, address sender, bytes32 localContext) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            // abi.encode(ident, caller, localContext) in free memory, without claiming it.
            let p := mload(0x40)
            mstore(p, ident)
            mstore(add(p, 0x20), and(sender, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(p, 0x40), localContext)
            h := keccak256(p, 0x60)
        }
        return withType(h, LOCAL);
    }

    /// @notice The localized form of a type-1 identifier key `withType(ident, 1)` held by the guest.
    function localize(bytes32 key, address sender, bytes32 localContext) internal pure returns (bytes32) {
        return localizeIdent(uint256(key) & IDENT_MASK, sender, localContext);
    }

    /// @notice The chunk-Merkle key of a preimage of `size` bytes whose chunk tree has root `chunkRoot`.
    function chunkMerkleKey(bytes32 chunkRoot, uint256 size) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            mstore(0x00, chunkRoot)
            mstore(0x20, size)
            h := keccak256(0x00, 0x40)
        }
        return withType(h, CHUNK_MERKLE);
    }
}
