"""Numba kernel of the fast executor (see ``fast.py`` for the public API).

The kernel implements ``docs/vm-spec.md`` §4–§5 exactly, for many steps per call.

Data layout (all arrays are owned by :class:`opml.vm.fast.FastVM`):

* ``regs``  ``int64[32]``: general-purpose registers, each in ``[0, 2**32)``; ``regs[0] == 0``.
* ``st``    ``int64[ST_SIZE]``: scalar state and bookkeeping, indexed by the ``ST_*`` constants.
* ``pt``    ``int32[2**20]``: page table, guest page number (``addr >> 12``) → index of the page in the
  pool, or ``-1`` when the page is absent (absent pages read as zero).
* ``mem8``, ``mem16``, ``mem32``: three views (``uint8``/``uint16``/``uint32``) of one pool buffer of
  ``npages * 4096`` bytes.  Pool page ``k`` holds bytes ``[k*4096, k*4096+4096)``.  The host is
  little-endian (asserted in ``fast.py``), so an aligned ``uint32`` view element is exactly the
  guest's little-endian word (spec §3.2).
* ``dirty`` ``uint8[2**20]``: every store ORs ``DIRTY_ALL`` into the entry of the guest page it
  writes.  Bit 0 (``DIRTY_SYNC``) means "differs from the reference ``Memory`` mirror", bit 1
  (``DIRTY_CKPT``) means "written since the last checkpoint"; Python clears them separately.
* ``out1``, ``out2`` ``uint8[cap]``: buffers for bytes written to fd 1 / fd 2; their fill levels are
  ``st[ST_OUT1]``, ``st[ST_OUT2]``.
* ``pre`` ``uint8[len]`` (read-only): the whole preimage of the selected key (spec §5.5), valid iff
  ``st[ST_PRE_OK] == 1``; ``st[ST_PRE_LEN]`` is its length. Python sets them (and clears
  ``ST_PRE_OK`` whenever ``preimageKey`` or the oracle changes); the kernel only reads them.

Invariants of a call to :func:`run_core`:

* A step is either executed completely (and ``st[ST_STEP]`` incremented) or not at all.  When the
  kernel cannot finish a step on its own it returns *before* changing anything for that step:
  ``STATUS_NEED_PAGE`` (a store hits an absent page and the pool is full: grow the pool and call
  again) or ``STATUS_NEED_OUT`` (a ``write`` does not fit into the output buffer; ``st[ST_REQ]`` holds
  its byte count: flush / grow the buffer, or execute that ``write`` in Python, and call again).
  ``STATUS_SYSCALL``: a ``syscall`` that the kernel does not execute itself: a number it does not
  implement, ``preimage_select`` and ``preimage_length`` (rare), and a ``preimage_read`` with
  ``count != 0`` while ``st[ST_PRE_OK] == 0``. Python executes that step (``FastVM._py_syscall``), or
  provides ``pre``, and calls again.
* ``STATUS_UNTIL``: ``st[ST_STEP] == until`` (or already ``>= until`` on entry).
  ``STATUS_EXITED``: the state has ``exited == 1`` (possibly already on entry; nothing changes then,
  like spec §4.1 item 2).
"""

import numpy as np
from numba import njit

# numba freezes these module globals into the compiled kernel as constants.
from opml.vm.constants import (
    BRK_LIMIT,
    EBADF,
    EINVAL,
    ENOMEM,
    MMAP_LIMIT,
    PAGE_SHIFT,
    SIGBUS,
    SIGFPE,
    SIGILL,
    SIGTRAP,
    SYS_BRK,
    SYS_EXIT,
    SYS_EXIT_GROUP,
    SYS_MMAP,
    SYS_MUNMAP,
    SYS_PREIMAGE_READ,
    SYS_WRITE,
)
from opml.vm.syscalls import preimage_read_count

# --- layout of ``st`` ---------------------------------------------------------------------------
ST_PC = 0
ST_NPC = 1
ST_LO = 2
ST_HI = 3
ST_BRK = 4
ST_HEAP = 5
ST_EXIT_CODE = 6
ST_EXITED = 7
ST_STEP = 8
ST_NUSED = 9  # pool pages in use (pool pages [0, nused) are allocated, the rest are zero)
ST_OUT1 = 10  # bytes in out1
ST_OUT2 = 11  # bytes in out2
ST_REQ = 12  # byte count of the write that returned STATUS_NEED_OUT
ST_PRE_OK = 13  # 1: ``pre`` holds the selected preimage (spec §5.5); 0: preimage_read goes to Python
ST_PRE_LEN = 14  # its length
ST_SIZE = 16

# --- return codes ---------------------------------------------------------------------------------
STATUS_UNTIL = 0
STATUS_EXITED = 1
STATUS_NEED_PAGE = 2
STATUS_NEED_OUT = 3
STATUS_SYSCALL = 4

DIRTY_SYNC = 1
DIRTY_CKPT = 2
DIRTY_ALL = 3

N_PAGES = 1 << 20  # 4 KiB pages in the 4 GiB address space


# The one definition of the read count (opml.vm.syscalls), compiled for the kernel.
_preimage_read_count = njit(cache=True, inline="always")(preimage_read_count)


@njit(cache=True, inline="always")
def _s32(x):
    """u32 in [0, 2**32) -> signed int64 value of the same 32 bits."""
    return x - ((x & 0x80000000) << 1)


@njit(cache=True)
def run_core(regs, st, pt, mem8, mem16, mem32, dirty, out1, out2, pre, until):
    """Execute steps until ``st[ST_STEP] == until``, exit, or a status that needs Python."""
    M = 0xFFFFFFFF
    pc = st[ST_PC]
    npc = st[ST_NPC]
    lo = st[ST_LO]
    hi = st[ST_HI]
    brk = st[ST_BRK]
    heap = st[ST_HEAP]
    step = st[ST_STEP]
    nused = st[ST_NUSED]
    npool = mem8.shape[0] >> PAGE_SHIFT
    if st[ST_EXITED] != 0:
        return STATUS_EXITED
    status = STATUS_UNTIL
    sig = 0  # panic signal of the current step (0: none)
    exit_now = False
    while step < until:
        if pc & 3:
            sig = SIGBUS
            step += 1
            break
        pg = pt[pc >> PAGE_SHIFT]
        if pg < 0:
            insn = np.int64(0)
        else:
            insn = np.int64(mem32[(np.int64(pg) << 10) | ((pc & 0xFFF) >> 2)])
        op = insn >> 26
        rs = (insn >> 21) & 31
        rt = (insn >> 16) & 31
        new_pc = npc
        new_npc = (npc + 4) & M
        if op == 0:
            funct = insn & 63
            rd = (insn >> 11) & 31
            a = regs[rs]
            b = regs[rt]
            if funct == 33:  # addu
                regs[rd] = (a + b) & M
            elif funct == 0:  # sll
                regs[rd] = (b << ((insn >> 6) & 31)) & M
            elif funct == 37:  # or
                regs[rd] = a | b
            elif funct == 35:  # subu
                regs[rd] = (a - b) & M
            elif funct == 43:  # sltu
                regs[rd] = 1 if a < b else 0
            elif funct == 42:  # slt
                regs[rd] = 1 if _s32(a) < _s32(b) else 0
            elif funct == 36:  # and
                regs[rd] = a & b
            elif funct == 2:  # srl
                regs[rd] = b >> ((insn >> 6) & 31)
            elif funct == 3:  # sra
                regs[rd] = (_s32(b) >> ((insn >> 6) & 31)) & M
            elif funct == 38:  # xor
                regs[rd] = a ^ b
            elif funct == 39:  # nor
                regs[rd] = (~(a | b)) & M
            elif funct == 4:  # sllv
                regs[rd] = (b << (a & 31)) & M
            elif funct == 6:  # srlv
                regs[rd] = b >> (a & 31)
            elif funct == 7:  # srav
                regs[rd] = (_s32(b) >> (a & 31)) & M
            elif funct == 8 or funct == 9:  # jr / jalr
                if npc != ((pc + 4) & M):
                    sig = SIGILL
                    step += 1
                    break
                new_npc = a
                if funct == 9:
                    regs[rd] = (pc + 8) & M
            elif funct == 10:  # movz
                if b == 0:
                    regs[rd] = a
            elif funct == 11:  # movn
                if b != 0:
                    regs[rd] = a
            elif funct == 16:  # mfhi
                regs[rd] = hi
            elif funct == 18:  # mflo
                regs[rd] = lo
            elif funct == 17:  # mthi
                hi = a
            elif funct == 19:  # mtlo
                lo = a
            elif funct == 24:  # mult
                p = _s32(a) * _s32(b)
                lo = p & M
                hi = (p >> 32) & M
            elif funct == 25:  # multu
                pu = np.uint64(a) * np.uint64(b)
                lo = np.int64(pu & np.uint64(M))
                hi = np.int64(pu >> np.uint64(32))
            elif funct == 26:  # div
                sa_ = _s32(a)
                sb_ = _s32(b)
                if b == 0 or (a == 0x80000000 and b == M):
                    sb_ = 1
                q = abs(sa_) // abs(sb_)
                if (sa_ < 0) != (sb_ < 0):
                    q = -q
                r = sa_ - q * sb_
                lo = q & M
                hi = r & M
            elif funct == 27:  # divu
                if b == 0:
                    lo = a
                    hi = 0
                else:
                    lo = a // b
                    hi = a % b
            elif funct == 32:  # add
                r = _s32(a) + _s32(b)
                if r > 0x7FFFFFFF or r < -0x80000000:
                    sig = SIGFPE
                    step += 1
                    break
                regs[rd] = r & M
            elif funct == 34:  # sub
                r = _s32(a) - _s32(b)
                if r > 0x7FFFFFFF or r < -0x80000000:
                    sig = SIGFPE
                    step += 1
                    break
                regs[rd] = r & M
            elif funct == 12:  # syscall
                num = regs[2]
                if num == SYS_WRITE:
                    fd = regs[4]
                    if fd == 1 or fd == 2:
                        cnt = regs[6]
                        buf = regs[5]
                        if fd == 1:
                            out = out1
                            olen = st[ST_OUT1]
                        else:
                            out = out2
                            olen = st[ST_OUT2]
                        if olen + cnt > out.shape[0]:
                            st[ST_REQ] = cnt
                            status = STATUS_NEED_OUT
                            break
                        for i in range(cnt):
                            ad = (buf + i) & M
                            pgw = pt[ad >> PAGE_SHIFT]
                            if pgw < 0:
                                out[olen + i] = 0
                            else:
                                out[olen + i] = mem8[(np.int64(pgw) << PAGE_SHIFT) | (ad & 0xFFF)]
                        if fd == 1:
                            st[ST_OUT1] = olen + cnt
                        else:
                            st[ST_OUT2] = olen + cnt
                        regs[2] = cnt
                        regs[7] = 0
                    else:
                        regs[2] = EBADF
                        regs[7] = 1
                elif num == SYS_EXIT_GROUP or num == SYS_EXIT:
                    st[ST_EXIT_CODE] = regs[4] & 0xFF
                    exit_now = True
                    step += 1
                    break
                elif num == SYS_BRK:
                    x = regs[4]
                    if x > 0 and x <= BRK_LIMIT:  # may grow or shrink; brk(0) queries
                        brk = x
                    regs[2] = brk
                    regs[7] = 0
                elif num == SYS_MMAP:
                    ln = regs[5]
                    flags = regs[7]
                    mtype = flags & 0xF  # MAP_TYPE must be MAP_SHARED or MAP_PRIVATE
                    if (flags & 0x800) == 0 or (mtype != 1 and mtype != 2) or (flags & 0x10) != 0 or ln == 0:
                        regs[2] = EINVAL
                        regs[7] = 1
                    else:
                        size = (ln + 4095) & 0xFFFFF000
                        if size == 0 or heap + size > MMAP_LIMIT:
                            regs[2] = ENOMEM
                            regs[7] = 1
                        else:
                            regs[2] = heap
                            regs[7] = 0
                            heap = heap + size
                elif num == SYS_MUNMAP:
                    regs[2] = 0
                    regs[7] = 0
                elif num == SYS_PREIMAGE_READ:  # spec §5.5
                    cnt = regs[6]
                    if cnt == 0:
                        regs[2] = 0
                        regs[7] = 0
                    elif st[ST_PRE_OK] == 0:
                        status = STATUS_SYSCALL
                        break
                    else:
                        off = regs[4]
                        buf = regs[5]
                        plen = st[ST_PRE_LEN]
                        if off >= plen:
                            regs[2] = 0  # end of data; memory unchanged
                        else:
                            n = _preimage_read_count(off, buf, cnt, plen)
                            pn = buf >> PAGE_SHIFT
                            pgd = pt[pn]
                            if pgd < 0:
                                if nused >= npool:
                                    status = STATUS_NEED_PAGE
                                    break
                                pgd = nused
                                pt[pn] = nused
                                nused += 1
                            base = (np.int64(pgd) << PAGE_SHIFT) | (buf & 0xFFF)
                            for i in range(n):
                                mem8[base + i] = pre[off + i]
                            dirty[pn] = DIRTY_ALL
                            regs[2] = n
                        regs[7] = 0
                else:
                    # Not one of spec §5's table: let Python execute it (ENOSYS, or a handler
                    # installed for newer system calls, e.g. the oracle's).
                    status = STATUS_SYSCALL
                    break
            elif funct == 13:  # break: SIGTRAP whatever the code (spec §4.5, as qemu-mipsel)
                sig = SIGTRAP
                step += 1
                break
            elif funct == 15:  # sync
                pass
            elif funct >= 48 and funct <= 54 and funct != 53:  # traps
                if funct == 52:
                    cond = a == b
                elif funct == 54:
                    cond = a != b
                elif funct == 48:
                    cond = _s32(a) >= _s32(b)
                elif funct == 49:
                    cond = a >= b
                elif funct == 50:
                    cond = _s32(a) < _s32(b)
                else:
                    cond = a < b
                if cond:
                    sig = SIGTRAP  # whatever the trap code (spec §4.5)
                    step += 1
                    break
            else:
                sig = SIGILL
                step += 1
                break
            regs[0] = 0
        elif op == 9:  # addiu
            regs[rt] = (regs[rs] + (insn & 0xFFFF) - ((insn & 0x8000) << 1)) & M
            regs[0] = 0
        elif op == 35 or op == 48:  # lw, ll
            ad = (regs[rs] + (insn & 0xFFFF) - ((insn & 0x8000) << 1)) & M
            if ad & 3:
                sig = SIGBUS
                step += 1
                break
            pgd = pt[ad >> PAGE_SHIFT]
            if pgd < 0:
                regs[rt] = 0
            else:
                regs[rt] = np.int64(mem32[(np.int64(pgd) << 10) | ((ad & 0xFFF) >> 2)])
            regs[0] = 0
        elif op == 43 or op == 56 or op == 40 or op == 41 or op == 42 or op == 46:  # stores
            ad = (regs[rs] + (insn & 0xFFFF) - ((insn & 0x8000) << 1)) & M
            if (op == 43 or op == 56) and (ad & 3) != 0:
                sig = SIGBUS
                step += 1
                break
            if op == 41 and (ad & 1) != 0:
                sig = SIGBUS
                step += 1
                break
            pn = ad >> PAGE_SHIFT
            pgd = pt[pn]
            if pgd < 0:
                if nused >= npool:
                    status = STATUS_NEED_PAGE
                    break
                pgd = nused
                pt[pn] = nused
                nused += 1
            base = np.int64(pgd) << PAGE_SHIFT
            off = ad & 0xFFF
            dirty[pn] = DIRTY_ALL
            v = regs[rt]
            if op == 43:  # sw
                mem32[(base | off) >> 2] = v
            elif op == 56:  # sc
                mem32[(base | off) >> 2] = v
                regs[rt] = 1
            elif op == 40:  # sb
                mem8[base | off] = v & 0xFF
            elif op == 41:  # sh
                mem16[(base | off) >> 1] = v & 0xFFFF
            else:
                wi = (base | off) >> 2
                w = np.int64(mem32[wi])
                bb = ad & 3
                if op == 42:  # swl
                    sh = 8 * (3 - bb)
                    w = (v >> sh) | (w & (~(M >> sh) & M))
                else:  # swr
                    sh = 8 * bb
                    w = ((v << sh) & M) | (w & ((1 << sh) - 1))
                mem32[wi] = w
            regs[0] = 0
        elif op == 15:  # lui
            regs[rt] = (insn & 0xFFFF) << 16
            regs[0] = 0
        elif op == 4 or op == 5 or op == 6 or op == 7:  # beq bne blez bgtz
            if npc != ((pc + 4) & M):
                sig = SIGILL
                step += 1
                break
            a = regs[rs]
            if op == 4:
                taken = a == regs[rt]
            elif op == 5:
                taken = a != regs[rt]
            elif op == 6:
                taken = _s32(a) <= 0
            else:
                taken = _s32(a) > 0
            if taken:
                new_npc = (pc + 4 + (((insn & 0xFFFF) - ((insn & 0x8000) << 1)) << 2)) & M
        elif op == 32 or op == 33 or op == 36 or op == 37 or op == 34 or op == 38:  # loads
            ad = (regs[rs] + (insn & 0xFFFF) - ((insn & 0x8000) << 1)) & M
            if (op == 33 or op == 37) and (ad & 1) != 0:
                sig = SIGBUS
                step += 1
                break
            pgd = pt[ad >> PAGE_SHIFT]
            if op == 32 or op == 36:
                if pgd < 0:
                    v = np.int64(0)
                else:
                    v = np.int64(mem8[(np.int64(pgd) << PAGE_SHIFT) | (ad & 0xFFF)])
                if op == 32:
                    v = (v - ((v & 0x80) << 1)) & M
                regs[rt] = v
            elif op == 33 or op == 37:
                if pgd < 0:
                    v = np.int64(0)
                else:
                    v = np.int64(mem16[((np.int64(pgd) << PAGE_SHIFT) | (ad & 0xFFF)) >> 1])
                if op == 33:
                    v = (v - ((v & 0x8000) << 1)) & M
                regs[rt] = v
            else:
                if pgd < 0:
                    w = np.int64(0)
                else:
                    w = np.int64(mem32[((np.int64(pgd) << PAGE_SHIFT) | (ad & 0xFFF)) >> 2])
                bb = ad & 3
                old = regs[rt]
                if op == 34:  # lwl
                    sh = 8 * (3 - bb)
                    regs[rt] = ((w << sh) & M) | (old & (M >> (8 * (bb + 1))))
                else:  # lwr
                    sh = 8 * bb
                    regs[rt] = (w >> sh) | (old & (~(M >> sh) & M))
            regs[0] = 0
        elif op == 12:  # andi
            regs[rt] = regs[rs] & (insn & 0xFFFF)
            regs[0] = 0
        elif op == 13:  # ori
            regs[rt] = regs[rs] | (insn & 0xFFFF)
            regs[0] = 0
        elif op == 14:  # xori
            regs[rt] = regs[rs] ^ (insn & 0xFFFF)
            regs[0] = 0
        elif op == 10:  # slti
            regs[rt] = 1 if _s32(regs[rs]) < (insn & 0xFFFF) - ((insn & 0x8000) << 1) else 0
            regs[0] = 0
        elif op == 11:  # sltiu
            regs[rt] = 1 if regs[rs] < (((insn & 0xFFFF) - ((insn & 0x8000) << 1)) & M) else 0
            regs[0] = 0
        elif op == 2 or op == 3:  # j, jal
            if npc != ((pc + 4) & M):
                sig = SIGILL
                step += 1
                break
            new_npc = ((pc + 4) & 0xF0000000) | ((insn & 0x3FFFFFF) << 2)
            if op == 3:
                regs[31] = (pc + 8) & M
        elif op == 1:  # REGIMM
            if rt == 0 or rt == 1 or rt == 16 or rt == 17:
                if npc != ((pc + 4) & M):
                    sig = SIGILL
                    step += 1
                    break
                a = regs[rs]
                if rt & 1:
                    taken = _s32(a) >= 0
                else:
                    taken = _s32(a) < 0
                if rt >= 16:
                    regs[31] = (pc + 8) & M
                    regs[0] = 0
                if taken:
                    new_npc = (pc + 4 + (((insn & 0xFFFF) - ((insn & 0x8000) << 1)) << 2)) & M
            else:
                sig = SIGILL
                step += 1
                break
        elif op == 8:  # addi
            r = _s32(regs[rs]) + (insn & 0xFFFF) - ((insn & 0x8000) << 1)
            if r > 0x7FFFFFFF or r < -0x80000000:
                sig = SIGFPE
                step += 1
                break
            regs[rt] = r & M
            regs[0] = 0
        elif op == 28:  # SPECIAL2
            funct = insn & 63
            a = regs[rs]
            b = regs[rt]
            if funct == 2:  # mul
                regs[(insn >> 11) & 31] = (_s32(a) * _s32(b)) & M
                regs[0] = 0
            elif funct == 0 or funct == 1 or funct == 4 or funct == 5:
                if funct == 0 or funct == 4:
                    p = _s32(a) * _s32(b)
                    plo = p & M
                    phi = (p >> 32) & M
                else:
                    pu = np.uint64(a) * np.uint64(b)
                    plo = np.int64(pu & np.uint64(M))
                    phi = np.int64(pu >> np.uint64(32))
                if funct <= 1:  # madd, maddu
                    s_lo = lo + plo
                    hi = (hi + phi + (s_lo >> 32)) & M
                    lo = s_lo & M
                else:  # msub, msubu
                    s_lo = lo - plo
                    borrow = 1 if s_lo < 0 else 0
                    hi = (hi - phi - borrow) & M
                    lo = s_lo & M
            elif funct == 32 or funct == 33:  # clz, clo
                x = a if funct == 32 else (a ^ M)
                n = 0
                while n < 32 and (x & 0x80000000) == 0:
                    x = x << 1
                    n += 1
                regs[(insn >> 11) & 31] = n
                regs[0] = 0
            else:
                sig = SIGILL
                step += 1
                break
        elif op == 51:  # pref
            pass
        else:
            sig = SIGILL
            step += 1
            break
        pc = new_pc
        npc = new_npc
        step += 1

    if sig != 0:
        st[ST_EXIT_CODE] = 128 + sig
        exit_now = True
    if exit_now:
        st[ST_EXITED] = 1
        status = STATUS_EXITED
    st[ST_PC] = pc
    st[ST_NPC] = npc
    st[ST_LO] = lo
    st[ST_HI] = hi
    st[ST_BRK] = brk
    st[ST_HEAP] = heap
    st[ST_STEP] = step
    st[ST_NUSED] = nused
    return status


ROW_SIZE = 9 + 32  # pc, nextPC, lo, hi, brk, heap, exitCode, exited, step, registers[32]


@njit(cache=True)
def run_record(regs, st, pt, mem8, mem16, mem32, dirty, out1, out2, pre, until, rows):
    """Like :func:`run_core`, one step at a time, writing the state after each step to ``rows``.

    Row layout: ``st[0:9]`` (pc, nextPC, lo, hi, brk, heap, exitCode, exited, step) then the 32
    registers.  Stops after ``rows.shape[0]`` steps at most; returns ``(status, rows written)``.
    Used by the lockstep tests (much cheaper than one kernel call per step from Python).
    """
    n = 0
    status = STATUS_UNTIL
    if st[ST_EXITED] != 0:
        return STATUS_EXITED, n
    while n < rows.shape[0] and st[ST_STEP] < until:
        status = run_core(regs, st, pt, mem8, mem16, mem32, dirty, out1, out2, pre, st[ST_STEP] + 1)
        if status == STATUS_NEED_PAGE or status == STATUS_NEED_OUT or status == STATUS_SYSCALL:
            return status, n
        for i in range(9):
            rows[n, i] = st[i]
        for i in range(32):
            rows[n, 9 + i] = regs[i]
        n += 1
        if status == STATUS_EXITED:
            break
    if n == rows.shape[0] or st[ST_STEP] >= until:
        status = STATUS_UNTIL if st[ST_EXITED] == 0 else STATUS_EXITED
    return status, n
