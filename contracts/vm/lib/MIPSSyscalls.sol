// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import { MIPSState } from "./MIPSState.sol";

/// @title MIPSSyscalls
/// @notice The Linux o32 system calls of docs/vm-spec.md §5. The number is in `$v0`, the arguments
///         in `$a0`…`$a3`; the result goes to `$v0` with `$a3 = 0`, or a positive errno to `$v0`
///         with `$a3 = 1`. No other register changes.
library MIPSSyscalls {
    uint32 internal constant SYS_EXIT = 4001;
    uint32 internal constant SYS_WRITE = 4004;
    uint32 internal constant SYS_BRK = 4045;
    uint32 internal constant SYS_MMAP = 4090;
    uint32 internal constant SYS_MUNMAP = 4091;
    uint32 internal constant SYS_EXIT_GROUP = 4246;

    uint32 internal constant FD_STDOUT = 1;
    uint32 internal constant FD_STDERR = 2;

    uint32 internal constant EBADF = 9;
    uint32 internal constant ENOMEM = 12;
    uint32 internal constant EINVAL = 22;
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
    function handleSyscall(MIPSState.State memory s) internal pure {
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
