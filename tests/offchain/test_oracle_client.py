"""OracleClient uploads exactly the parts a step needs, and nothing that is already on-chain."""

import random

import _by_hand
import pytest

from opml.oracle import OracleClient, PreimageStore, SparseChunkTree
from opml.oracle.errors import PartNotLoadedError

CTX = bytes.fromhex("3d" * 32)


@pytest.fixture(scope="module")
def oracle(deployer, requester, server, project):
    return deployer.deploy(project.PreimageOracle)


@pytest.fixture
def client(oracle, tmp_path, server):
    return OracleClient(oracle, PreimageStore(tmp_path / "store"), server)


def test_keccak_part_once(client, oracle):
    data = random.Random(1).randbytes(300)
    key = client.store.put_keccak(data)
    assert key == _by_hand.keccak_key(data)
    assert client.ensure_part(key, 64) is not None
    assert client.ensure_part(key, 64) is None
    assert oracle.readPreimage(key, 64) == (data[64:96], 300)


def test_chunk_merkle_parts(client, oracle):
    data = random.Random(2).randbytes(5000)
    key = client.store.put_chunk_merkle(data)
    assert key == _by_hand.chunk_merkle_key(data)
    for offset in (0, 4096, 4992):
        assert client.ensure_part(key, offset) is not None
        assert oracle.readPreimage(key, offset) == (data[offset : offset + 32].ljust(32, b"\0"), 5000)
    assert client.ensure_part(key, 4096) is None


def test_sparse_gib(client, oracle):
    size = 1 << 30
    tree = SparseChunkTree(size, {123_456: b"\x77" * 32})
    key = client.store.put_chunk_merkle(tree)
    receipt = client.ensure_part(key, 32 * 123_456)
    assert receipt.gas_used < 300_000
    assert oracle.readPreimage(key, 32 * 123_456) == (b"\x77" * 32, size)


def test_length_and_read_past_end(client, oracle):
    data = b"\x01" * 40
    key = client.store.put_chunk_merkle(data)
    assert client.ensure_read(key, 100) is not None  # past the end: the length only (part 0)
    assert oracle.preimageLength(key) == 40
    assert client.ensure_length(key) is None
    assert client.ensure_read(key, 100) is None
    assert client.ensure_read(key, 33) is not None  # the part holding byte 33
    assert client.ensure_read(key, 63) is None


def test_load_local(client, oracle, server):
    key, receipt = client.load_local(1, CTX, b"\x42" * 32)
    assert key == _by_hand.local_key(1, bytes.fromhex(server.address[2:]), CTX) and receipt is not None
    assert client.load_local(1, CTX, b"\x42" * 32) == (key, None)
    key2, receipt = client.load_local(1, CTX, b"\x43" * 5)
    assert key2 == key and receipt is not None
    assert oracle.readPreimage(key, 0) == (b"\x43" * 5 + bytes(27), 5)
    assert client.ensure_part(key, 0) is None


def test_local_of_another_caller(client, requester):
    key = client.store.put_local(2, requester, CTX, b"\x01")
    with pytest.raises(PartNotLoadedError):
        client.ensure_part(key, 0)
