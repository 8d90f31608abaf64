"""The node program's state update (ml-spec §5, §7.1): ``S_k`` from ``S_{k−1}`` in O(log k).

The program reads ``S_{k−1}``'s ``(root, size)`` and the inner nodes of its chunk-Merkle tree on the
path to the new leaf ``k + 1`` as 64-byte keccak-type preimages, and folds the new key up with the
left siblings it found and the zero subtrees. On a chain of 4096 reshapes (the format's largest
graph) it must give the native ``S_k`` at every kind of ``k``: 0 (a one-leaf tree), ``k + 1`` a power
of two (the tree grows a level), runs of ones and zeros in ``k + 1``, the last node. It reads exactly
the preimages :func:`~opml.ml.phase.state_path_preimages` lists (and ``node_program_setup`` stores),
at most ``⌈log2(k + 1)⌉ + 1`` of them, and exits 3 when one does not hold what its key says.
"""

from __future__ import annotations

import numpy as np
import pytest
from _toolchain import build_toolchain

from opml.ml.format import GraphBuilder, Model, int8
from opml.ml.phase import (
    EXIT_INVALID,
    EXIT_MALFORMED,
    EXIT_VALID,
    ProgramSetup,
    node_program_setup,
    run_program,
    state_path_preimages,
)
from opml.ml.runner import RunResult, run_model
from opml.oracle.chunk_tree import DenseChunkTree
from opml.oracle.errors import PreimageNotFoundError
from opml.oracle.keys import KeyType, keccak_key
from opml.oracle.store import PreimageStore
from opml.vm.preimage import OracleView

N = 4096
KS = [*range(18), 30, 31, 32, 33, 62, 63, 64, 65, 127, 128, 1000, 1023, 2046, 2047, 2048, 4094, 4095]


@pytest.fixture(scope="module", autouse=True)
def built():
    build_toolchain()


@pytest.fixture(scope="module")
def chain() -> tuple[Model, np.ndarray, RunResult]:
    """N reshapes of an int8[32] value: S_k's tree has k + 2 leaves, and every node is cheap."""
    g = GraphBuilder(int8(32))
    v = 0
    for _ in range(N):
        v = g.reshape(v, [32])
    model = g.build()
    x = np.arange(-16, 16, dtype=np.int8)
    return model, x, run_model(model, x)


class RecordingView(OracleView):
    """The oracle view of a setup that notes the keys asked (first ask first) and can answer some
    keys with other bytes or not at all (``None``): an oracle that does not check what it serves."""

    def __init__(self, oracle: OracleView, replace: dict[bytes, bytes | None] | None = None):
        super().__init__(oracle.store, oracle.caller, oracle.local_context)
        self.asked: list[bytes] = []
        self.replace = replace or {}

    def _data(self, key: bytes) -> np.ndarray:
        key = bytes(key)
        if key not in self.asked:
            self.asked.append(key)
        if key in self.replace:
            data = self.replace[key]
            if data is None:
                raise PreimageNotFoundError(f"no preimage for key {key.hex()}")
            return np.frombuffer(data, dtype=np.uint8)
        return super()._data(key)


def with_oracle(setup: ProgramSetup, oracle: OracleView) -> ProgramSetup:
    return ProgramSetup(setup.program, setup.state, setup.local_values, oracle)


def depth(n: int) -> int:
    """⌈log2 n⌉ for n ≥ 1."""
    return (n - 1).bit_length()


@pytest.mark.parametrize("k", KS)
def test_state_is_the_native_one_and_reads_log_k_nodes(k, chain, tmp_path):
    model, x, run = chain
    setup = node_program_setup(model, x, k, run.state(k), PreimageStore(tmp_path), run=run)
    view = RecordingView(setup.oracle)
    result = run_program(with_oracle(setup, view))
    assert result.exit_code == EXIT_VALID, result.stderr
    assert result.keys == [run.keys[k + 1]]
    expected = [keccak_key(p) for p in state_path_preimages(DenseChunkTree(run.state_preimage(k - 1)))]
    assert [key for key in view.asked if key[0] == KeyType.KECCAK] == expected  # read in this order
    assert expected[0] == bytes([KeyType.KECCAK]) + run.state(k - 1)[1:]  # (root, size): S_{k−1} typed 2
    assert len(expected) <= depth(k + 1) + 1
    if (k + 1) & k == 0:  # k + 1 a power of two: the tree grows, nothing below the root is read
        assert len(expected) == 1


@pytest.mark.parametrize("k", [0, 5, 64, 4095])
def test_a_wrong_claim_is_invalid(k, chain, tmp_path):
    """A claim one bit off, and the key of S_{k−1}'s keys followed by another key, exit 1."""
    model, x, run = chain
    other = DenseChunkTree(bytes(32)).key
    wrong_next = DenseChunkTree(run.state_preimage(k - 1) + other).key
    off_by_a_bit = run.state(k)[:31] + bytes([run.state(k)[31] ^ 1])
    for claim in (off_by_a_bit, wrong_next):
        store = PreimageStore(tmp_path / claim.hex()[:8])
        result = run_program(node_program_setup(model, x, k, claim, store, run=run))
        assert result.exit_code == EXIT_INVALID and result.keys == [run.keys[k + 1]]


def test_the_path_preimages_must_be_served(chain, tmp_path):
    """Without the keccak-type preimages of S_{k−1}'s tree the program cannot finish (on-chain, such a
    step cannot be proven until someone reveals the 64 bytes)."""
    model, x, run = chain
    k = 100
    setup = node_program_setup(model, x, k, run.state(k), PreimageStore(tmp_path), run=run)
    path = state_path_preimages(DenseChunkTree(run.state_preimage(k - 1)))
    for hidden in path:
        view = RecordingView(setup.oracle, {keccak_key(hidden): None})
        with pytest.raises(PreimageNotFoundError):
            run_program(with_oracle(setup, view))


def test_a_pair_of_another_size_exits_3(chain, tmp_path):
    """An oracle that answers S_{k−1}'s keccak key with (root, size + 32) makes the program exit 3:
    the pair's size must be 32·(k + 1)."""
    model, x, run = chain
    k = 6
    setup = node_program_setup(model, x, k, run.state(k), PreimageStore(tmp_path), run=run)
    tree = DenseChunkTree(run.state_preimage(k - 1))
    pair_key = keccak_key(tree.root + tree.size.to_bytes(32, "big"))
    forged = tree.root + (tree.size + 32).to_bytes(32, "big")
    result = run_program(with_oracle(setup, RecordingView(setup.oracle, {pair_key: forged})))
    assert result.exit_code == EXIT_MALFORMED
    assert result.stderr.startswith(b"ml: malformed: S_{k-1}'s preimage is not 32")


def test_a_node_preimage_of_another_size_exits_3(chain, tmp_path):
    model, x, run = chain
    k = 6  # p = 7: the walk reads the root and two nodes below it
    setup = node_program_setup(model, x, k, run.state(k), PreimageStore(tmp_path), run=run)
    path = state_path_preimages(DenseChunkTree(run.state_preimage(k - 1)))
    assert len(path) == 4
    last = keccak_key(path[-1])
    result = run_program(with_oracle(setup, RecordingView(setup.oracle, {last: path[-1] + bytes(32)})))
    assert result.exit_code == EXIT_MALFORMED
    assert b"not 64 bytes" in result.stderr
