"""The differential gate for steps that read the preimage oracle (vm-spec §5.5): keccak,
chunk-Merkle and local keys, with reads around part boundaries and past the end of the data."""

import pytest
from harness import assert_same_oracle_step
from hypothesis import given
from strategies import (
    PREIMAGE_KINDS,
    SYS_PREIMAGE_LENGTH,
    SYS_PREIMAGE_READ,
    SYS_PREIMAGE_SELECT,
    TEXT_BASE,
    UNKNOWN_KIND,
    OracleCase,
    oracle_states,
)

from opml.oracle.client import OracleClient
from opml.oracle.store import PreimageStore
from opml.vm.memory import Memory
from opml.vm.state import VMState

SYSCALL = 0x0000000C

SYSCALLS = {"select": SYS_PREIMAGE_SELECT, "length": SYS_PREIMAGE_LENGTH, "read": SYS_PREIMAGE_READ}


@pytest.mark.parametrize("kind", [*PREIMAGE_KINDS, UNKNOWN_KIND])
@pytest.mark.parametrize("syscall", sorted(SYSCALLS))
def test_oracle_step_matches_reference(syscall, kind, mips, oracle, deployer, tmp_path_factory):
    store = PreimageStore(tmp_path_factory.mktemp("preimages"))
    client = OracleClient(oracle, store, deployer)

    @given(oracle_states(SYSCALLS[syscall], kind))
    def check(case):
        assert_same_oracle_step(mips, deployer, case, store, client, f"{syscall}-{kind}")

    check()


# (length, offset, buf offset in its leaf, count, bytes read): reads that end at a part boundary, at a
# leaf boundary, at the end of the data, and reads at or past the end.
READ_EDGES = [
    (100, 30, 0, 10, 2),  # crosses the part boundary at 32: truncated
    (100, 40, 30, 8, 2),  # buf 2 bytes before its leaf's end: truncated
    (70, 64, 0, 32, 6),  # the last, partial part
    (70, 69, 5, 4, 1),  # the last byte
    (70, 70, 0, 4, 0),  # offset == length: end of data
    (70, 75, 0, 4, 0),  # offset past the end
    (32, 0, 0, 32, 32),  # one whole part
    (0, 0, 0, 1, 0),  # empty data
]
BUF_LEAF = 0x7FFF0000


# A local value has at most 32 bytes (oracle-spec §1.1): longer local reads can never occur.
READ_CASES = [
    pytest.param(kind, *edge, id=f"{kind}-{'-'.join(map(str, edge))}")
    for kind in PREIMAGE_KINDS
    for edge in READ_EDGES
    if not (kind == "local" and edge[0] > 32)
]


@pytest.mark.parametrize("kind,length,offset,buf_offset,count,n", READ_CASES)
def test_oracle_read_edges(
    kind, length, offset, buf_offset, count, n, mips, oracle, deployer, tmp_path_factory
):
    store = PreimageStore(tmp_path_factory.mktemp("preimages"))
    client = OracleClient(oracle, store, deployer)
    memory = Memory()
    memory.write_u32(TEXT_BASE, SYSCALL)
    memory.write_bytes(BUF_LEAF, bytes(range(32)))
    registers = [0] * 32
    registers[2], registers[4], registers[5], registers[6] = (
        SYS_PREIMAGE_READ,
        offset,
        BUF_LEAF + buf_offset,
        count,
    )
    state = VMState(
        memory=memory, pc=TEXT_BASE, next_pc=TEXT_BASE + 4, registers=registers, stdout=None, stderr=None
    )
    data = bytes((7 * i + 3) & 0xFF for i in range(length))
    case = OracleCase(state=state, syscall=SYS_PREIMAGE_READ, kind=kind, data=data, ident=2)
    post = assert_same_oracle_step(mips, deployer, case, store, client, f"read-edge-{kind}")
    assert post.registers[2] == n
    assert post.memory.read_bytes(BUF_LEAF + buf_offset, n) == data[offset : offset + n]
