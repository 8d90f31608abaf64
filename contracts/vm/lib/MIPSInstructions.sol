// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import { IPreimageOracle } from "../../interfaces/IPreimageOracle.sol";
import { MIPSState } from "./MIPSState.sol";
import { MIPSMemory } from "./MIPSMemory.sol";
import { MIPSSyscalls } from "./MIPSSyscalls.sol";

/// @title MIPSInstructions
/// @notice Execution of one MIPS32 (Release 1, little-endian) instruction, docs/vm-spec.md §4.
/// @dev Mirrors `offchain/opml/vm/instructions.py`: same names, same arguments, same order of checks.
///      All `u32` arithmetic wraps, hence the `unchecked` blocks.
library MIPSInstructions {
    /// @notice Signals of a panic (spec §4.6); the exit code is `PANIC_EXIT_BASE + signal`.
    uint8 internal constant SIGILL = 4;
    uint8 internal constant SIGTRAP = 5;
    uint8 internal constant SIGBUS = 7;
    uint8 internal constant SIGFPE = 8;
    uint8 internal constant PANIC_EXIT_BASE = 128;

    /// @notice Executes the instruction word `insn` at `s.pc` (spec §4.1 step 6). Loads, stores and
    ///         the preimage system calls read the data proof from `p` here; the preimage system calls
    ///         ask `oracle`, localizing local keys with `msg.sender` and `localContext` (spec §5.5).
    function execMipsCoreStepLogic(
        MIPSState.State memory s,
        MIPSMemory.Proof memory p,
        uint32 insn,
        IPreimageOracle oracle,
        bytes32 localContext
    )
        internal
        view
    {
        uint32 opcode = insn >> 26;
        uint32 rs = s.registers[(insn >> 21) & 31];
        uint32 rt = s.registers[(insn >> 16) & 31];

        if (opcode == 0) {
            // SPECIAL
            uint32 fun = insn & 0x3f;
            if (fun == 8 || fun == 9) return handleJump(s, insn, rs); // jr, jalr
            if (fun == 12) return MIPSSyscalls.handleSyscall(s, p, oracle, localContext); // syscall
            if (fun == 13) return panic(s, SIGTRAP); // break
            if ((fun >= 16 && fun <= 19) || (fun >= 24 && fun <= 27)) return handleHiLo(s, insn, rs, rt);
            if (fun >= 48 && fun <= 54 && fun != 53) return handleTrap(s, insn, rs, rt);
            if (fun == 10 || fun == 11) {
                // movz, movn
                if ((rt == 0) == (fun == 10)) setRegister(s, (insn >> 11) & 31, rs);
                return advance(s);
            }
            if (fun == 15) return advance(s); // sync
            (uint32 res, uint8 sig) = executeSpecial(insn, rs, rt);
            if (sig != 0) return panic(s, sig);
            setRegister(s, (insn >> 11) & 31, res);
            return advance(s);
        }
        if (opcode == 2 || opcode == 3) return handleJump(s, insn, rs); // j, jal
        if (opcode == 1 || (opcode >= 4 && opcode <= 7)) return handleBranch(s, insn, rs, rt);
        if (opcode >= 8 && opcode <= 15) {
            (uint32 res, uint8 sig) = executeImmediate(insn, rs);
            if (sig != 0) return panic(s, sig);
            setRegister(s, (insn >> 16) & 31, res);
            return advance(s);
        }
        if (opcode == 28) {
            // SPECIAL2
            uint32 fun = insn & 0x3f;
            if (fun == 0 || fun == 1 || fun == 4 || fun == 5) return handleHiLo(s, insn, rs, rt);
            uint32 res;
            if (fun == 2) {
                unchecked {
                    res = rs * rt; // mul: the low 32 bits are the same signed or unsigned
                }
            } else if (fun == 32) {
                res = countLeadingZeros(rs); // clz
            } else if (fun == 33) {
                res = countLeadingZeros(~rs); // clo
            } else {
                return panic(s, SIGILL);
            }
            setRegister(s, (insn >> 11) & 31, res);
            return advance(s);
        }
        if (opcode == 51) return advance(s); // pref
        if (opcode >= 32) return execLoadStore(s, p, insn, rs, rt);
        return panic(s, SIGILL);
    }

    /// @notice Result of a SPECIAL ALU function, or a panic signal (`SIGFPE` on `add`/`sub`
    ///         overflow, `SIGILL` for an unknown function).
    function executeSpecial(uint32 insn, uint32 rs, uint32 rt) internal pure returns (uint32 res, uint8 sig) {
        uint32 fun = insn & 0x3f;
        uint32 sa = (insn >> 6) & 31;
        unchecked {
            if (fun == 0) return (rt << sa, 0); // sll
            if (fun == 2) return (rt >> sa, 0); // srl
            if (fun == 3) return (uint32(int32(rt) >> sa), 0); // sra
            if (fun == 4) return (rt << (rs & 31), 0); // sllv
            if (fun == 6) return (rt >> (rs & 31), 0); // srlv
            if (fun == 7) return (uint32(int32(rt) >> (rs & 31)), 0); // srav
            if (fun == 32 || fun == 34) {
                // add, sub
                int256 r = fun == 32
                    ? int256(int32(rs)) + int256(int32(rt))
                    : int256(int32(rs)) - int256(int32(rt));
                if (r < type(int32).min || r > type(int32).max) return (0, SIGFPE);
                return (uint32(int32(r)), 0);
            }
            if (fun == 33) return (rs + rt, 0); // addu
            if (fun == 35) return (rs - rt, 0); // subu
            if (fun == 36) return (rs & rt, 0); // and
            if (fun == 37) return (rs | rt, 0); // or
            if (fun == 38) return (rs ^ rt, 0); // xor
            if (fun == 39) return (~(rs | rt), 0); // nor
            if (fun == 42) return (int32(rs) < int32(rt) ? 1 : 0, 0); // slt
            if (fun == 43) return (rs < rt ? 1 : 0, 0); // sltu
        }
        return (0, SIGILL);
    }

    /// @notice Result of an I-type ALU instruction (opcodes 8…15), or `SIGFPE` on `addi` overflow.
    function executeImmediate(uint32 insn, uint32 rs) internal pure returns (uint32 res, uint8 sig) {
        uint32 opcode = insn >> 26;
        uint32 imm = insn & 0xffff;
        uint32 simm = signExtend16(imm);
        unchecked {
            if (opcode == 8) {
                // addi
                int256 r = int256(int32(rs)) + int256(int32(simm));
                if (r < type(int32).min || r > type(int32).max) return (0, SIGFPE);
                return (uint32(int32(r)), 0);
            }
            if (opcode == 9) return (rs + simm, 0); // addiu
            if (opcode == 10) return (int32(rs) < int32(simm) ? 1 : 0, 0); // slti
            if (opcode == 11) return (rs < simm ? 1 : 0, 0); // sltiu
            if (opcode == 12) return (rs & imm, 0); // andi
            if (opcode == 13) return (rs | imm, 0); // ori
            if (opcode == 14) return (rs ^ imm, 0); // xori
            return (imm << 16, 0); // lui (opcode 15)
        }
    }

    /// @notice Conditional branches: `beq`, `bne`, `blez`, `bgtz` and REGIMM `bltz`, `bgez`,
    ///         `bltzal`, `bgezal` (spec §4.2). Other REGIMM forms and a branch in a delay slot are
    ///         `SIGILL`.
    function handleBranch(MIPSState.State memory s, uint32 insn, uint32 rs, uint32 rt) internal pure {
        uint32 opcode = insn >> 26;
        bool taken;
        bool link;
        if (opcode == 1) {
            uint32 cond = (insn >> 16) & 31;
            if (cond != 0 && cond != 1 && cond != 16 && cond != 17) return panic(s, SIGILL);
            taken = (cond & 1 == 0) ? int32(rs) < 0 : int32(rs) >= 0;
            link = cond >= 16;
        } else if (opcode == 4) {
            taken = rs == rt; // beq
        } else if (opcode == 5) {
            taken = rs != rt; // bne
        } else if (opcode == 6) {
            taken = int32(rs) <= 0; // blez
        } else {
            taken = int32(rs) > 0; // bgtz
        }
        unchecked {
            uint32 pc = s.pc;
            if (s.nextPC != pc + 4) return panic(s, SIGILL); // in a delay slot
            if (link) setRegister(s, 31, pc + 8);
            s.pc = s.nextPC;
            s.nextPC = taken ? pc + 4 + (signExtend16(insn & 0xffff) << 2) : s.nextPC + 4;
        }
    }

    /// @notice Jumps: `j`, `jal`, `jr`, `jalr` (spec §4.2). A jump in a delay slot is `SIGILL`.
    function handleJump(MIPSState.State memory s, uint32 insn, uint32 rs) internal pure {
        unchecked {
            uint32 pc = s.pc;
            if (s.nextPC != pc + 4) return panic(s, SIGILL); // in a delay slot
            uint32 target;
            if (insn >> 26 == 0) {
                target = rs; // jr, jalr (rs was read before the link is written)
                if (insn & 0x3f == 9) setRegister(s, (insn >> 11) & 31, pc + 8);
            } else {
                target = ((pc + 4) & 0xF0000000) | ((insn & 0x03ffffff) << 2);
                if (insn >> 26 == 3) setRegister(s, 31, pc + 8); // jal
            }
            s.pc = s.nextPC;
            s.nextPC = target;
        }
    }

    /// @notice `mfhi`, `mthi`, `mflo`, `mtlo`, `mult(u)`, `div(u)` and SPECIAL2 `madd(u)`,
    ///         `msub(u)` (spec §4.3).
    function handleHiLo(MIPSState.State memory s, uint32 insn, uint32 rs, uint32 rt) internal pure {
        uint32 fun = insn & 0x3f;
        unchecked {
            if (insn >> 26 == 28) {
                // madd, maddu, msub, msubu
                uint64 acc = (uint64(s.hi) << 32) | s.lo;
                uint64 prod = (fun & 1 == 0)
                    ? uint64(uint256(int256(int32(rs)) * int256(int32(rt))))
                    : uint64(rs) * uint64(rt);
                acc = fun < 4 ? acc + prod : acc - prod;
                s.hi = uint32(acc >> 32);
                s.lo = uint32(acc);
            } else if (fun == 16) {
                setRegister(s, (insn >> 11) & 31, s.hi); // mfhi
            } else if (fun == 17) {
                s.hi = rs; // mthi
            } else if (fun == 18) {
                setRegister(s, (insn >> 11) & 31, s.lo); // mflo
            } else if (fun == 19) {
                s.lo = rs; // mtlo
            } else if (fun == 24 || fun == 25) {
                // mult, multu
                uint64 prod = fun == 24
                    ? uint64(uint256(int256(int32(rs)) * int256(int32(rt))))
                    : uint64(rs) * uint64(rt);
                s.hi = uint32(prod >> 32);
                s.lo = uint32(prod);
            } else if (fun == 26) {
                // div: a zero divisor and 0x80000000 / -1 divide by 1 instead
                if (rt == 0 || (rs == 0x80000000 && rt == 0xffffffff)) {
                    s.lo = rs;
                    s.hi = 0;
                } else {
                    int256 a = int32(rs);
                    int256 b = int32(rt);
                    s.lo = uint32(uint256(a / b));
                    s.hi = uint32(uint256(a % b));
                }
            } else {
                // divu
                if (rt == 0) {
                    s.lo = rs;
                    s.hi = 0;
                } else {
                    s.lo = rs / rt;
                    s.hi = rs % rt;
                }
            }
        }
        advance(s);
    }

    /// @notice `tge`, `tgeu`, `tlt`, `tltu`, `teq`, `tne` (spec §4.5): a panic when the condition holds.
    function handleTrap(MIPSState.State memory s, uint32 insn, uint32 rs, uint32 rt) internal pure {
        uint32 fun = insn & 0x3f;
        bool cond;
        if (fun == 48) cond = int32(rs) >= int32(rt); // tge
        else if (fun == 49) cond = rs >= rt; // tgeu
        else if (fun == 50) cond = int32(rs) < int32(rt); // tlt
        else if (fun == 51) cond = rs < rt; // tltu
        else if (fun == 52) cond = rs == rt; // teq
        else cond = rs != rt; // tne (54)
        if (cond) return panic(s, SIGTRAP);
        advance(s);
    }

    /// @notice Loads and stores (spec §4.4). A misaligned access is `SIGBUS` and reads no data proof;
    ///         an unknown opcode is `SIGILL`.
    function execLoadStore(
        MIPSState.State memory s,
        MIPSMemory.Proof memory p,
        uint32 insn,
        uint32 rs,
        uint32 rt
    )
        internal
        pure
    {
        uint32 opcode = insn >> 26;
        // lb lh lwl lw lbu lhu lwr (32-38), sb sh swl sw (40-43), swr (46), ll (48), sc (56)
        if (opcode == 39 || opcode == 44 || opcode == 45 || opcode == 47 || (opcode > 48 && opcode != 56)) {
            return panic(s, SIGILL);
        }
        uint32 addr;
        unchecked {
            addr = rs + signExtend16(insn & 0xffff);
        }
        if (opcode == 33 || opcode == 37 || opcode == 41) {
            if (addr & 1 != 0) return panic(s, SIGBUS); // lh, lhu, sh
        } else if (opcode == 35 || opcode == 43 || opcode == 48 || opcode == 56) {
            if (addr & 3 != 0) return panic(s, SIGBUS); // lw, sw, ll, sc
        }
        uint32 w = MIPSMemory.readWord(p, addr);
        uint32 sh = (addr & 3) << 3; // 8·b
        uint32 rtReg = (insn >> 16) & 31;
        uint32 val;
        if (opcode < 40 || opcode == 48) {
            if (opcode == 32) val = signExtend8((w >> sh) & 0xff); // lb
            else if (opcode == 33) val = signExtend16((w >> sh) & 0xffff); // lh
            else if (opcode == 34) val = (w << (24 - sh)) | (rt & (uint32(0xffffffff) >> (sh + 8))); // lwl
            else if (opcode == 36) val = (w >> sh) & 0xff; // lbu
            else if (opcode == 37) val = (w >> sh) & 0xffff; // lhu
            else if (opcode == 38) val = (w >> sh) | (rt & ~(uint32(0xffffffff) >> sh)); // lwr
            else val = w; // lw, ll
            setRegister(s, rtReg, val);
        } else {
            if (opcode == 40) val = (w & ~(uint32(0xff) << sh)) | ((rt & 0xff) << sh); // sb
            else if (opcode == 41) val = (w & ~(uint32(0xffff) << sh)) | ((rt & 0xffff) << sh); // sh
            else if (opcode == 42) val = (rt >> (24 - sh)) | (w & ~(uint32(0xffffffff) >> (24 - sh))); // swl
            else if (opcode == 46) val = (rt << sh) | (w & ((uint32(1) << sh) - 1)); // swr
            else val = rt; // sw, sc
            s.memRoot = MIPSMemory.writeWord(p, addr, val);
            if (opcode == 56) setRegister(s, rtReg, 1); // sc always succeeds
        }
        advance(s);
    }

    /// @notice Ends the program as if killed by `signal` (spec §4.6): only `exited`, `exitCode`
    ///         (and the already incremented `step`) change.
    function panic(MIPSState.State memory s, uint8 signal) internal pure {
        s.exited = true;
        s.exitCode = PANIC_EXIT_BASE + signal;
    }

    /// @notice The ordinary update `pc = nextPC; nextPC += 4` (spec §4.2).
    function advance(MIPSState.State memory s) internal pure {
        unchecked {
            s.pc = s.nextPC;
            s.nextPC = s.nextPC + 4;
        }
    }

    /// @notice Writes register `r`; writes to `$0` are discarded.
    function setRegister(MIPSState.State memory s, uint32 r, uint32 value) internal pure {
        if (r != 0) s.registers[r] = value;
    }

    /// @notice Number of leading zero bits of `x` (32 when `x` is 0).
    function countLeadingZeros(uint32 x) internal pure returns (uint32 n) {
        if (x == 0) return 32;
        if (x >> 16 == 0) { n += 16; x <<= 16; }
        if (x >> 24 == 0) { n += 8; x <<= 8; }
        if (x >> 28 == 0) { n += 4; x <<= 4; }
        if (x >> 30 == 0) { n += 2; x <<= 2; }
        if (x >> 31 == 0) { n += 1; }
    }

    /// @notice Sign-extends the low 16 bits of `x`.
    function signExtend16(uint32 x) internal pure returns (uint32) {
        return uint32(int32(int16(uint16(x))));
    }

    /// @notice Sign-extends the low 8 bits of `x`.
    function signExtend8(uint32 x) internal pure returns (uint32) {
        return uint32(int32(int8(uint8(x))));
    }
}
