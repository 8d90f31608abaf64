"""`opml model run | inspect | commit`: outputs checked against the runner and the files; malformed
models and inputs give a one-line error and exit status 1, never a traceback."""

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _ml_fixtures import all_ops_model
from click.testing import CliRunner
from test_format import chunk_merkle_key

from opml.cli import main
from opml.ml.format import encode_model_file, read_model
from opml.ml.runner import run_model

MODELS = Path(__file__).resolve().parents[2] / "models"
CNN = MODELS / "digits_cnn.opml"
SAMPLE = MODELS / "digit_test0.bin"


def invoke(*args):
    return CliRunner(mix_stderr=False).invoke(main, ["model", *map(str, args)])


def test_commit_prints_the_manifest_key():
    result = invoke("commit", CNN)
    assert result.exit_code == 0, result.stderr
    data = CNN.read_bytes()
    (msize,) = struct.unpack_from("<I", data, 12)
    assert result.stdout == "0x" + chunk_merkle_key(data[20 : 20 + msize]).hex() + "\n"


def test_run_prints_prediction_keys_and_state():
    result = invoke("run", CNN, SAMPLE)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "prediction  1"  # the first test image is a 1 (models/digits.json "sample")
    model = read_model(CNN)
    run = run_model(model, np.frombuffer(SAMPLE.read_bytes(), np.int8).reshape(8, 8, 1))
    for v, key in enumerate(run.keys):
        assert ("0x" + key.hex()) in lines[5 + v], lines[5 + v]
    assert f"0x{run.state(len(model.nodes) - 1).hex()}" in result.stdout
    assert f"0x{model.commitment.hex()}" in result.stdout


def test_run_json_and_input_formats(tmp_path):
    pixels = np.frombuffer(SAMPLE.read_bytes(), np.int8).reshape(8, 8, 1)
    npy = tmp_path / "x.npy"
    np.save(npy, pixels.astype(np.int64))
    js = tmp_path / "x.json"
    js.write_text(json.dumps(pixels.tolist()))
    outs = []
    for path in (SAMPLE, npy, js):
        result = invoke("run", CNN, path, "--json")
        assert result.exit_code == 0, result.stderr
        outs.append(json.loads(result.stdout))
    assert outs[0] == outs[1] == outs[2]
    report = outs[0]
    assert report["prediction"] == 1 and report["output"] == [1]
    assert len(report["values"]) == 10 and len(report["states"]) == 10
    assert report["values"][0]["key"] == "0x" + chunk_merkle_key(SAMPLE.read_bytes()).hex()
    assert report["states"][0] == "0x" + chunk_merkle_key(chunk_merkle_key(SAMPLE.read_bytes())).hex()


def test_inspect_table():
    result = invoke("inspect", CNN)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    model = read_model(CNN)
    assert f"0x{model.commitment.hex()}" in lines[1]
    assert "6090 parameters" in result.stdout  # 16·9+16 + 32·144+32 + 10·128+10
    rows = lines[6:]
    assert len(rows) == len(model.nodes)
    assert rows[0].split()[:4] == ["0", "conv2d", "0", "int32[8,"]
    assert "k=3x3" in rows[0] and "pad=1,1,1,1" in rows[0] and " 160 " in rows[0]
    assert "0x" + model.nodes[0].tensor_keys[0].hex() in rows[0]
    assert rows[-1].split()[:2] == ["8", "argmax"]


def test_inspect_every_op(tmp_path):
    path = tmp_path / "all.opml"
    path.write_bytes(encode_model_file(all_ops_model()))
    result = invoke("inspect", path)
    assert result.exit_code == 0, result.stderr
    for op in (
        "conv2d",
        "relu",
        "requantize",
        "maxpool",
        "avgpool",
        "add",
        "lut",
        "reshape",
        "dense",
        "softmax",
    ):
        assert f" {op} " in result.stdout


def _bad_models(tmp_path):
    data = CNN.read_bytes()
    cases = {
        "magic": b"XXXXXXXX" + data[8:],
        "version": data[:8] + struct.pack("<I", 9) + data[12:],
        "truncated": data[:-3],
        "op": data[: 20 + 64] + struct.pack("<I", 99) + data[20 + 68 :],
        "tensor": data[:-1] + bytes([data[-1] ^ 1]),
        "empty": b"",
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.opml"
        path.write_bytes(content)
        yield name, path


def test_malformed_models_fail_with_one_line(tmp_path):
    for name, path in _bad_models(tmp_path):
        for args in (("commit", path), ("inspect", path), ("run", path, SAMPLE)):
            result = invoke(*args)
            assert result.exit_code == 1, (name, args, result.output)
            assert result.stdout == ""
            err = result.stderr.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("Error: "), (name, result.stderr)
            assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped error


@pytest.mark.parametrize(
    "name,content",
    [
        ("short.bin", bytes(63)),
        ("long.bin", bytes(65)),
        ("float.json", json.dumps([[[0.5]] * 8] * 8)),
        ("shape.json", json.dumps([[0] * 8] * 8)),
        ("range.json", json.dumps([[[200]] * 8] * 8)),
        ("ragged.json", "[[1, 2], [3]]"),
        ("broken.json", "[1, 2"),
        ("broken.npy", b"\x93NUMPY garbage"),
    ],
)
def test_malformed_inputs_fail_with_one_line(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = invoke("run", CNN, path)
    assert result.exit_code == 1, result.output
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: "), result.stderr


def test_real_entry_point_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.opml"
    bad.write_bytes(CNN.read_bytes()[:100])
    proc = subprocess.run(
        [sys.executable, "-m", "opml.cli", "model", "run", str(bad), str(SAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("Error: ")


def test_tiny_llama_is_written_inspected_and_run(tmp_path):
    """``opml model tiny-llama`` writes the generation graph; ``inspect`` lists its version-2 ops and
    ``run`` gives its records, whose ids are the pinned tokens of tests/ml/test_llama.py."""
    from test_llama import PINNED

    from opml.ml.format import DType
    from opml.ml.llama import tokens_of

    path = tmp_path / "tiny.opml"
    out = CliRunner().invoke(main, ["model", "tiny-llama", str(path)])
    assert out.exit_code == 0, out.output
    model = read_model(path)
    assert f"{len(model.nodes)} nodes" in out.output
    shown = CliRunner().invoke(main, ["model", "inspect", str(path)])
    assert shown.exit_code == 0 and "qdense_argmax" in shown.output and "attention" in shown.output
    prompt = tmp_path / "prompt.json"
    prompt.write_text("[1, 2, 3, 4]")
    ran = CliRunner().invoke(main, ["model", "run", str(path), str(prompt), "--json"])
    assert ran.exit_code == 0, ran.output
    records = np.array(json.loads(ran.output)["output"], dtype=np.int32)
    assert tokens_of(records) == PINNED[DType.Q4_1]
    bad = CliRunner().invoke(main, ["model", "tiny-llama", str(path), "--prompt-len", "0"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
