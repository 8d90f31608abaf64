"""The cross-compiled programs of mips-toolchain/, shared by the offchain tests."""

import shutil
import subprocess
from pathlib import Path

import pytest
from _ci import SLOW, missing_tool

TOOLCHAIN = Path(__file__).resolve().parents[1] / "mips-toolchain"
BUILD = TOOLCHAIN / "build"
# Programs that read the preimage oracle (vm-spec §5.5): qemu-mipsel has no such system calls
# (ENOSYS), so they are run with an oracle in test_oracle_vm.py / test_oracle_c.py instead.
ORACLE_PROGRAMS = {"stream_checksum", "ml_node", "ml_model"}
# The longest plain programs (millions of steps, the same instruction mix as keccak_vectors plus
# libgcc's 64-bit division): their per-step checks run in the slow tier (tests/_ci.py), the other
# programs cover every instruction form in `make test`.
SLOW_PROGRAMS = {"div64", "recursion", "ml_kernels_v2"}


def program_params(names) -> list:
    """pytest params of program names, the ones in ``SLOW_PROGRAMS`` marked slow."""
    return [pytest.param(n, id=n, marks=SLOW if n in SLOW_PROGRAMS else ()) for n in names]


def build_toolchain() -> Path:
    """Run ``make -C mips-toolchain`` (a no-op when up to date) and return the build folder."""
    if shutil.which("make") is None:
        missing_tool("make is not installed")
    proc = subprocess.run(["make", "-C", str(TOOLCHAIN)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"make -C mips-toolchain failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return BUILD


def plain_program_params() -> list:
    """pytest params of every built ELF that runs without an oracle (a skip if none is built)."""
    elfs = sorted(
        p
        for p in BUILD.glob("*")
        if p.is_file() and p.read_bytes()[:4] == b"\x7fELF" and p.name not in ORACLE_PROGRAMS
    )
    if not elfs:
        reason = f"no ELF in {BUILD}: run `make -C mips-toolchain`"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(p, id=p.name, marks=SLOW if p.name in SLOW_PROGRAMS else ()) for p in elfs]


def qemu_lines(program: Path, timeout: int = 120) -> list[str]:
    """The lines an oracle-free program prints under ``qemu-mipsel`` (it must exit 0)."""
    qemu = shutil.which("qemu-mipsel")
    if qemu is None:
        missing_tool("qemu-mipsel is not installed: run `make -C mips-toolchain check-tools`")
    proc = subprocess.run([str(qemu), str(program)], capture_output=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().splitlines()


def vm_lines(program: Path) -> list[str]:
    """The lines an oracle-free program prints in the fast executor (it must exit 0, silent on stderr)."""
    from opml.vm.elf import load_elf
    from opml.vm.fast import FastVM

    vm = FastVM.from_state(load_elf(program))
    vm.run()
    assert vm.exited and vm.exit_code == 0
    out, err = vm.take_output()
    assert err == b""
    return out.decode().splitlines()
