"""Synthetic models (docs/ml-spec.md §10.7, issue 20): the streamed file is the file of the same weights
built in memory, byte for byte; a seed always gives the same model; the file's tensors are where its
source says; both agents' stores point into it; the card has no tokenizer; a one-byte change is caught.

The 1B shape itself runs in ``bench/scale.py`` and its hidden-256 version in the slow tier
(``tests/game/test_scale_dispute.py``); here a two-layer model of the same head size stands in.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from _toolchain import build_toolchain

from opml.ml import llama, synth
from opml.ml.errors import TensorKeyMismatchError
from opml.ml.float_llama import dequantize
from opml.ml.format import DType, TensorRef, read_model, write_model
from opml.ml.llama import BlockMatrix, LlamaWeights, lm_head_rows, lm_head_shards, task_graph
from opml.ml.llm import LlmModel
from opml.ml.phase import EXIT_VALID, node_program_setup, put_model, run_program
from opml.ml.runner import run_model
from opml.oracle.store import PreimageStore

SMALL = dataclasses.replace(
    synth.LLAMA_3_2_1B, layers=2, hidden=128, heads=2, kv_heads=1, ffn=256, vocab=512, context=64
)
H256_SEED0 = "0x038bdae7eee7e2fcfd3478303f62e8b49d665540590179d4e549cc94270bde20"
"""The commitment of ``opml model synth --shape llama-3.2-1b-h256 --seed 0`` (8-token prompts, 4 new
tokens): pinned, so that a change of the generator (or of numpy's PCG64 stream) cannot pass unseen."""


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of 4 KiB: every matrix of SMALL takes several, so their seeding by piece is exercised."""
    monkeypatch.setattr(synth, "PIECE_BYTES", 1 << 12)


def in_memory(weights: LlamaWeights, specs: dict[bytes, synth.MatrixSpec], seed: int) -> LlamaWeights:
    """``weights`` with every matrix's bytes generated whole, as an importer holds them."""

    def whole(m: BlockMatrix) -> BlockMatrix:
        assert isinstance(m.data, TensorRef)
        data = b"".join(specs[m.data.key].pieces(seed))
        return dataclasses.replace(m, data=data)

    layers = tuple(
        dataclasses.replace(
            layer, **{f: whole(getattr(layer, f)) for f in ("wq", "wk", "wv", "wo", "gate", "up", "down")}
        )
        for layer in weights.layers
    )
    return dataclasses.replace(weights, embedding=whole(weights.embedding), layers=layers)


def test_the_streamed_file_is_the_file_of_the_same_weights_built_in_memory(small_pieces, tmp_path):
    out = synth.write_synth(tmp_path / "s.opml", SMALL, 3, 4, 2)
    weights, specs = synth.synth_weights(SMALL, 3)
    built = task_graph(in_memory(weights, specs, 3), 4, 2)
    write_model(built.model, tmp_path / "m.opml")
    assert (tmp_path / "s.opml").read_bytes() == (tmp_path / "m.opml").read_bytes()
    assert out.commitment == built.model.commitment
    assert out.labels == built.labels
    assert out.params == sum(s.rows * s.cols for s in specs.values()) + 5 * SMALL.hidden


def test_a_seed_gives_one_model_and_another_seed_another(small_pieces, tmp_path):
    a = synth.write_synth(tmp_path / "a.opml", SMALL, 7, 4, 2)
    b = synth.write_synth(tmp_path / "b.opml", SMALL, 7, 4, 2)
    c = synth.write_synth(tmp_path / "c.opml", SMALL, 8, 4, 2)
    assert (tmp_path / "a.opml").read_bytes() == (tmp_path / "b.opml").read_bytes()
    assert a.commitment == b.commitment != c.commitment


def test_the_pinned_h256_commitment_from_the_command_line(tmp_path):
    out = tmp_path / "h256.opml"
    cli = [sys.executable, "-m", "opml.cli", "model", "synth", "--shape", "llama-3.2-1b-h256"]
    done = subprocess.run(
        [*cli, "--seed", "0", "--out", str(out)], capture_output=True, text=True, check=True
    )
    assert f"commitment  {H256_SEED0}" in done.stdout
    assert "48,046,336 parameters" in done.stdout
    assert "synth" in subprocess.run([*cli[:4], "--help"], capture_output=True, text=True).stdout


def test_a_piece_made_alone_is_the_file_slice_the_source_names(small_pieces, tmp_path):
    synth.write_synth(tmp_path / "s.opml", SMALL, 1, 4, 2)
    model = read_model(tmp_path / "s.opml", verify=True)
    weights, specs = synth.synth_weights(SMALL, 1)
    down = weights.layers[1].down
    assert isinstance(down.data, TensorRef)
    spec = specs[down.data.key]
    assert spec.name == "blk.1.ffn_down.weight" and spec.rows * spec.row_bytes == down.data.nbytes
    pieces = -(-spec.rows // spec.piece_rows)
    assert pieces > 2
    start = model.source.offsets[down.data.key] + (pieces - 1) * spec.piece_rows * spec.row_bytes
    raw = (tmp_path / "s.opml").read_bytes()
    last = spec.piece(1, pieces - 1)
    assert raw[start : start + len(last)] == last
    assert bytes(model.tensor(down.data.key)) == b"".join(spec.pieces(1))


def test_the_scales_are_exact_and_the_deviation_is_as_specified(small_pieces):
    for spec in synth.matrix_specs(SMALL)[:9]:
        data = b"".join(spec.pieces(0))
        w = dequantize(BlockMatrix(data, spec.wtype, spec.f, spec.rows, spec.cols))
        assert abs(w.mean()) < 0.05 * spec.deviation
        assert 0.6 * spec.deviation < w.std() < 2.2 * spec.deviation  # (4 + k)/4 ∈ [1, 1.75] times 2^−e


def test_one_flipped_weight_byte_is_rejected_when_read(small_pieces, tmp_path):
    path = tmp_path / "s.opml"
    synth.write_synth(path, SMALL, 2, 4, 2)
    model = read_model(path, verify=True)
    key = max(model.tensors, key=lambda k: len(model.tensor(k)))
    raw = bytearray(path.read_bytes())
    raw[model.source.offsets[key] + 1000] ^= 0x10
    bad = tmp_path / "bad.opml"
    bad.write_bytes(raw)
    with pytest.raises(TensorKeyMismatchError):
        read_model(bad, verify=True)


def test_the_card_takes_ids_and_says_there_is_no_tokenizer(small_pieces, tmp_path):
    synth.write_synth(tmp_path / "s.opml", SMALL, 0, 4, 2)
    llm = LlmModel.load(tmp_path / "s.opml")
    assert llm.tokenizer is None and llm.vocab == SMALL.vocab and llm.card.stop_id == synth.STOP_ID
    with pytest.raises(ValueError, match="no tokenizer"):
        llm.prompt_ids("hello")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        llm.task([SMALL.vocab], 2)
    answer = llm.answer(run_model(llm.model, llm.task([5, 6, 7], 2)).output)
    assert len(answer) == 2 and llm.decode(answer) == "".join(f"⟨{t}⟩" for t in answer)
    cli = [
        sys.executable,
        "-m",
        "opml.cli",
        "generate",
        str(tmp_path / "s.opml"),
        "5,6,7",
        "--ids",
        "--tokens",
        "2",
    ]
    done = subprocess.run(cli, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == llm.decode(answer)


def test_the_stores_point_into_the_model_file_and_the_vm_reads_through_them(small_pieces, tmp_path):
    build_toolchain()
    synth.write_synth(tmp_path / "s.opml", SMALL, 0, 4, 2)
    model = read_model(tmp_path / "s.opml")
    store = PreimageStore(tmp_path / "store")
    put_model(store, model)
    copied = [p for p in (tmp_path / "store" / "chunk-merkle").iterdir() if p.suffix != ".range"]
    assert len(copied) == 1  # the manifest; every tensor is a range of the model file
    x = np.array([4, 2, 9, 8, 7, 0, 0, 0], np.int32)
    run = run_model(model, x)
    k = next(i for i, n in enumerate(model.nodes) if n.op.name == "QDENSE")
    result = run_program(node_program_setup(model, x, k, run.state(k), store, run=run))
    assert result.exit_code == EXIT_VALID and result.keys == [run.keys[k + 1]]


def test_the_output_projection_is_split_by_rows_only_past_smollm2s_size(monkeypatch, tmp_path):
    def head(rows: int, cols: int) -> BlockMatrix:
        return BlockMatrix(TensorRef(b"\x03" * 32, rows * cols // 32 * 34), DType.Q8_0, 0, rows, cols)

    assert lm_head_shards(head(49_152, 576)) == 1  # SmolLM2: its graph and commitment are unchanged
    assert lm_head_shards(head(128_256, 2048)) == 2 and lm_head_rows(head(128_256, 2048)) == 65_536
    assert lm_head_rows(head(466_033, 576)) * 576 <= llama.LM_HEAD_SHARD_MACS  # K not a power of two
    # three shards of 171, 171 and 170 rows merged: the same tokens, and each node the same in the VM
    weights, specs = synth.synth_weights(SMALL, 0)
    whole = in_memory(weights, specs, 0)
    x = llama.task_input([3, 1, 4], 2, 4, 2)
    one = task_graph(whole, 4, 2).model
    monkeypatch.setattr(llama, "LM_HEAD_SHARD_MACS", 171 * SMALL.hidden + 127)
    three = task_graph(whole, 4, 2).model
    ops = [n.op.name for n in three.nodes]
    assert ops.count("QDENSE_ARGMAX") == 3 * ops.count("EMIT") and ops.count("ARGMAX_MERGE") == 2 * ops.count(
        "EMIT"
    )
    run = run_model(three, x)
    assert np.array_equal(run.output, run_model(one, x).output)
    build_toolchain()
    store = PreimageStore(tmp_path / "store")
    last_step = [k for k, n in enumerate(three.nodes) if n.op.name in ("QDENSE_ARGMAX", "ARGMAX_MERGE")][-5:]
    for k in last_step:
        result = run_program(node_program_setup(three, x, k, run.state(k), store, run=run))
        assert result.exit_code == EXIT_VALID and result.keys == [run.keys[k + 1]]


def test_a_seed_is_below_2_to_the_32_so_that_no_two_pieces_share_a_stream(tmp_path):
    spec = synth.matrix_specs(SMALL)[1]
    with pytest.raises(ValueError, match="2\\^32"):
        spec.piece(1 << 32, 0)
    # numpy would pad [s, i] to [s, i, 0] and split 2^32·7 into [0, 7]: four fixed words rule both out
    assert spec.piece(0, 0) != synth.matrix_specs(SMALL)[2].piece(0, 0)[: len(spec.piece(0, 0))]
    cli = [
        sys.executable,
        "-m",
        "opml.cli",
        "model",
        "synth",
        "--seed",
        str(1 << 32),
        "--out",
        str(tmp_path / "x"),
    ]
    assert subprocess.run(cli, capture_output=True, text=True).returncode == 2


def test_an_agent_holding_a_model_whose_file_was_replaced_copies_its_old_bytes(small_pieces, tmp_path):
    path = tmp_path / "m.opml"
    synth.write_synth(path, SMALL, 1, 4, 2)
    model = read_model(path)
    synth.write_synth(path, SMALL, 2, 4, 2)  # renamed over: the held model keeps seed 1's bytes
    assert not model.source.unchanged()
    store = PreimageStore(tmp_path / "store")
    put_model(store, model)
    for key in model.tensors:
        assert store.get(key) == bytes(model.tensor(key))
    assert not list((tmp_path / "store").rglob("*.range"))
