// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import { IPreimageOracle, PreimageKeyLib } from "../../interfaces/IPreimageOracle.sol";
import { MIPSState } from "./MIPSState.sol";
import { MIPSMemory } from "./MIPSMemory.sol";

/// @title MIPSSyscalls
/// @notice The Linux o32 system calls of docs/vm-spec.md §5. The number is in `$v0`, the arguments
///         in `$a0`…`$a3`; the result goes to `$v0` with `$a3 = 0`, or a positive errno to `$v0`
///         with `$a3 = 1`. No other register changes.
/// @dev The preimage system calls 9001–9003 (spec §5.5) read the data proof of their data address
///      (spec §3.4) and ask the preimage oracle with the effective key: a local key (type 1) is
///      localized with `msg.sender` of `step` and its `localContext`. The oracle's `PartNotLoaded` /
///      `PreimageNotLoaded` reverts bubble up.
library MIPSSyscalls {
    uint32 internal constant SYS_EXIT = 4001;
    uint32 internal constant SYS_WRITE = 4004;
    uint32 internal constant SYS_BRK = 4045;
    uint32 internal constant SYS_MMAP = 4090;
    uint32 internal constant SYS_MUNMAP = 4091;
    uint32 internal constant SYS_EXIT_GROUP = 4246;
    uint32 internal constant SYS_PREIMAGE_SELECT = 9001;
    uint32 internal constant SYS_PREIMAGE_LENGTH = 9002;
    uint32 internal constant SYS_PREIMAGE_READ = 9003;

    uint32 internal constant FD_STDOUT = 1;
    uint32 internal constant FD_STDERR = 2;

    uint32 internal constant EBADF = 9;
    uint32 internal constant ENOMEM = 12;
    uint32 internal constant EINVAL = 22;
    uint32 internal constant EFBIG = 27;
    uint32 internal constant ENOSYS = 89;

    uint32 internal constant MMAP_BASE = 0x40000000;
    uint32 internal constant BRK_LIMIT = MMAP_BASE;
    uint32 internal constant MMAP_LIMIT = 0x70000000;
    uint32 internal constant MAP_SHARED = 0x1;
    uint32 internal constant MAP_PRIVATE = 0x2;
    uint32 internal constant MAP_TYPE = 0xf;
    uint32 internal constant MAP_FIXED = 0x10;
    uint32 internal constant MAP_ANONYMOUS = 0x800;

    uint256 internal constant REG_V0 = 2;
    uint256 internal constant REG_A0 = 4;
    uint256 internal constant REG_A1 = 5;
    uint256 internal constant REG_A2 = 6;
    uint256 internal constant REG_A3 = 7;

    /// @notice Executes `syscall` (spec §5). `exit`/`exit_group` stop the program without advancing
    ///         `pc` or changing a register; every other call advances `pc` like an ordinary instruction.
    ///         The preimage calls read the data proof from `p` and ask `oracle` (spec §5.5).
    function handleSyscall(
        MIPSState.State memory s,
        MIPSMemory.Proof memory p,
        IPreimageOracle oracle,
        bytes32 localContext
    )
        internal
        view
    {
        uint32[32] memory regs = s.registers;
        uint32 num = regs[REG_V0];
        uint32 a0 = regs[REG_A0];
        if (num == SYS_EXIT || num == SYS_EXIT_GROUP) {
            s.exited = true;
            s.exitCode = uint8(a0);
            return;
        }
        uint32 v0;
        uint32 err;
        if (num == SYS_WRITE) {
            if (a0 == FD_STDOUT || a0 == FD_STDERR) v0 = regs[REG_A2]; // the count is written in full
            else (v0, err) = (EBADF, 1);
        } else if (num == SYS_BRK) {
            // §5.3: any break in (0, BRK_LIMIT] is accepted; brk(0) queries it
            if (a0 != 0 && a0 <= BRK_LIMIT) s.brk = a0;
            v0 = s.brk;
        } else if (num == SYS_MMAP) {
            (v0, err) = handleMmap(s, regs[REG_A1], regs[REG_A3]);
        } else if (num == SYS_MUNMAP) {
            v0 = 0; // memory is kept
        } else if (num == SYS_PREIMAGE_SELECT) {
            // §5.5: a misaligned key address reads no data proof
            if (a0 & 31 != 0) (v0, err) = (EINVAL, 1);
            else s.preimageKey = MIPSMemory.readLeaf(p, a0);
        } else if (num == SYS_PREIMAGE_LENGTH) {
            if (!isKnownKeyType(s.preimageKey)) {
                (v0, err) = (EINVAL, 1);
            } else {
                uint256 len = oracle.preimageLength(effectiveKey(s.preimageKey, localContext));
                if (len >> 32 != 0) (v0, err) = (EFBIG, 1);
                else v0 = uint32(len);
            }
        } else if (num == SYS_PREIMAGE_READ) {
            (v0, err) = handlePreimageRead(s, p, oracle, localContext, a0, regs[REG_A1], regs[REG_A2]);
        } else {
            (v0, err) = (ENOSYS, 1);
        }
        regs[REG_V0] = v0;
        regs[REG_A3] = err;
        unchecked {
            s.pc = s.nextPC;
            s.nextPC = s.nextPC + 4;
        }
    }

    /// @notice `preimage_read(offset, buf, count)` (spec §5.5): copies
    ///         `n = min(count, 32 − offset % 32, 32 − buf % 32, len − offset)` bytes of the selected
    ///         preimage from `offset` to `buf` and returns `n`; returns 0 when `count == 0` (no data
    ///         proof) or `offset ≥ len` (memory unchanged, the data proof is still read), and `EINVAL`
    ///         (after the data proof, without asking the oracle) when no valid key is selected.
    /// @dev Order: the data proof for `buf`'s leaf, then the oracle. One `readPreimage` usually gives
    ///      both the part at `offset − offset % 32` and the length. Only when that part is not loaded
    ///      is the length asked for alone: `offset ≥ len` is the end of the data, and otherwise
    ///      `readPreimage` is asked again so that its `PartNotLoaded` bubbles up; without a length,
    ///      `PreimageNotLoaded` does. The outcome is that of asking for the length first and then, if
    ///      `offset < len`, for the part (spec §5.5, `offchain/opml/vm/syscalls.py`).
    function handlePreimageRead(
        MIPSState.State memory s,
        MIPSMemory.Proof memory p,
        IPreimageOracle oracle,
        bytes32 localContext,
        uint32 offset,
        uint32 buf,
        uint32 count
    )
        internal
        view
        returns (uint32, uint32)
    {
        if (count == 0) return (0, 0);
        bytes32 leaf = MIPSMemory.readLeaf(p, buf);
        if (!isKnownKeyType(s.preimageKey)) return (EINVAL, 1);
        bytes32 key = effectiveKey(s.preimageKey, localContext);
        uint256 partOffset = offset & ~uint256(31);
        bytes32 part;
        uint256 len;
        try oracle.readPreimage(key, partOffset) returns (bytes32 part_, uint256 len_) {
            (part, len) = (part_, len_);
        } catch {
            len = oracle.preimageLength(key); // reverts PreimageNotLoaded
            if (offset >= len) return (0, 0);
            (part, len) = oracle.readPreimage(key, partOffset); // reverts PartNotLoaded
        }
        if (offset >= len) return (0, 0);
        uint256 n;
        (leaf, n) = copyPart(leaf, part, offset, buf, count, len);
        s.memRoot = MIPSMemory.writeLeaf(p, leaf);
        return (uint32(n), 0);
    }

    /// @notice Whether `key` has a type the oracle knows (1 local, 2 keccak, 3 chunk-Merkle). A guest
    ///         that reads before selecting such a key gets `EINVAL`, so every step stays provable.
    function isKnownKeyType(bytes32 key) internal pure returns (bool) {
        uint256 keyType = uint256(key) >> 248;
        return keyType >= 1 && keyType <= 3;
    }

    /// @notice `leaf` (the leaf of `buf`) with `n = min(count, 32 − offset % 32, 32 − buf % 32,
    ///         len − offset)` bytes of `part` (the part holding `offset`) copied from `offset % 32` to
    ///         `buf % 32`, and `n`. Requires `count ≠ 0` and `offset < len`.
    function copyPart(bytes32 leaf, bytes32 part, uint256 offset, uint256 buf, uint256 count, uint256 len)
        internal
        pure
        returns (bytes32, uint256 n)
    {
        unchecked {
            uint256 o = offset & 31;
            uint256 b = buf & 31;
            n = count;
            if (n > 32 - o) n = 32 - o;
            if (n > 32 - b) n = 32 - b;
            if (n > len - offset) n = len - offset;
            // the top n bytes of a word; the part's bytes o…o+n−1 go to the leaf's bytes b…b+n−1
            uint256 top = ~(type(uint256).max >> (n << 3));
            uint256 moved = ((uint256(part) << (o << 3)) & top) >> (b << 3);
            return (bytes32((uint256(leaf) & ~(top >> (b << 3))) | moved), n);
        }
    }

    /// @notice The key the oracle is asked with (spec §5.5): a local key (type 1) localized with
    ///         `msg.sender` and `localContext`; any other key unchanged.
    function effectiveKey(bytes32 key, bytes32 localContext) internal view returns (bytes32) {
        if (PreimageKeyLib.keyType(key) != PreimageKeyLib.LOCAL) return key;
        return PreimageKeyLib.localize(key, msg.sender, localContext);
    }

    /// @notice Anonymous `mmap(addr, len, prot, flags)` from the bump allocator at `heap` (spec §5.4).
    function handleMmap(MIPSState.State memory s, uint32 len, uint32 flags) internal pure returns (uint32, uint32) {
        uint32 mapType = flags & MAP_TYPE;
        if (
            flags & MAP_ANONYMOUS == 0 || (mapType != MAP_SHARED && mapType != MAP_PRIVATE) || flags & MAP_FIXED != 0
                || len == 0
        ) return (EINVAL, 1);
        uint32 size;
        unchecked {
            size = (len + 4095) & ~uint32(4095); // modulo 2^32
        }
        uint32 heap = s.heap;
        if (size == 0 || uint256(heap) + size > MMAP_LIMIT) return (ENOMEM, 1); // no wrap-around
        s.heap = heap + size;
        return (heap, 0);
    }
}
