"""The loader: the initial state of a static MIPS ELF executable (vm-spec §6)."""

import io
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from opml.vm.constants import MMAP_BASE, PAGE_SIZE, REG_SP, STACK_TOP
from opml.vm.errors import ElfLoadError
from opml.vm.state import VMState

_HINT = "build it with mips-toolchain (mipsel-linux-gnu-gcc -static -nostdlib -march=mips32)"


def load_elf(path_or_bytes: str | Path | bytes) -> VMState:
    """Return the initial state for a static ELF32 little-endian MIPS executable (a path or its bytes).

    Raises :class:`ElfLoadError` for anything else, or for segments at or above ``MMAP_BASE``.
    """
    if isinstance(path_or_bytes, bytes):
        data, name = path_or_bytes, "<bytes>"
    else:
        try:
            data, name = Path(path_or_bytes).read_bytes(), str(path_or_bytes)
        except OSError as exc:
            raise ElfLoadError(f"cannot read {path_or_bytes}: {exc.strerror}") from exc
    try:
        elf = ELFFile(io.BytesIO(data))
        _check_header(elf, name)
        segments = [seg for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD"]
        state = VMState(pc=elf["e_entry"], next_pc=(elf["e_entry"] + 4) & 0xFFFFFFFF)
        end = 0
        for seg in segments:
            vaddr, filesz, memsz = seg["p_vaddr"], seg["p_filesz"], seg["p_memsz"]
            if filesz > memsz or vaddr + memsz > MMAP_BASE:
                raise ElfLoadError(
                    f"{name}: PT_LOAD at {vaddr:#x} (filesz {filesz:#x}, memsz {memsz:#x}) must lie "
                    f"below MMAP_BASE {MMAP_BASE:#x}; link the program lower"
                )
            state.memory.write_bytes(vaddr, seg.data())  # the rest up to memsz stays zero (.bss)
            end = max(end, vaddr + memsz)
    except ELFError as exc:
        raise ElfLoadError(f"{name}: not a valid ELF file ({exc}); {_HINT}") from exc
    if not segments:
        raise ElfLoadError(f"{name}: has no PT_LOAD segment; {_HINT}")
    state.registers[REG_SP] = STACK_TOP
    state.brk = (end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    state.heap = MMAP_BASE
    return state


def _check_header(elf: ELFFile, name: str) -> None:
    """Reject anything but a 32-bit little-endian MIPS executable."""
    checks = [
        (elf.elfclass == 32, f"ELFCLASS{elf.elfclass}", "ELFCLASS32"),
        (elf.little_endian, "big-endian", "little-endian (mipsel)"),
        (elf["e_machine"] == "EM_MIPS", elf["e_machine"], "EM_MIPS"),
        (elf["e_type"] == "ET_EXEC", elf["e_type"], "ET_EXEC (static, not PIE)"),
    ]
    for ok, got, want in checks:
        if not ok:
            raise ElfLoadError(f"{name}: is {got}, expected {want}; {_HINT}")
