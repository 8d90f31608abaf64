"""The committed digits models (models/): accuracy on the fixed test split, each quantized model within
1 point of its float model, the CNN ≥ 95 %, and the single-input, batch and reference paths in 100 %
agreement. Nothing is trained here: the tests load the committed files."""

import _ml_reference as ref
import numpy as np
import pytest
from _digits import DIGITS_REPORT as REPORT
from _digits import DIGITS_SHAPES as SHAPES
from _digits import MODELS, digits_test_split

from opml.ml.format import Op, read_model
from opml.ml.runner import run_batch, run_model


@pytest.fixture(scope="module")
def split():
    return digits_test_split()


@pytest.fixture(scope="module")
def floats():
    with np.load(MODELS / "digits_float.npz") as data:
        return {k: data[k] for k in data.files}


def _conv_same3(x, w, b):
    """3×3 cross-correlation with one pixel of zero padding: x [B, H, W, C], w [OC, 3, 3, C]."""
    n, h, wd, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, wd, w.shape[0]))
    for i in range(3):
        for j in range(3):
            out += np.einsum("bhwc,oc->bhwo", xp[:, i : i + h, j : j + wd, :], w[:, i, j, :])
    return out + b


def _pool2(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def float_predict(name, f, pixels):
    """The float model, written out here from its weights (x = pixels / 16)."""
    x = pixels / 16.0
    if name == "digits_mlp":
        h = np.maximum(x.reshape(len(x), -1) @ f["digits_mlp/0/w"].T + f["digits_mlp/0/b"], 0)
        logits = h @ f["digits_mlp/1/w"].T + f["digits_mlp/1/b"]
    else:
        a = x.reshape(len(x), 8, 8, 1)
        a = _pool2(np.maximum(_conv_same3(a, f["digits_cnn/0/w"], f["digits_cnn/0/b"]), 0))
        a = _pool2(np.maximum(_conv_same3(a, f["digits_cnn/2/w"], f["digits_cnn/2/b"]), 0))
        logits = a.reshape(len(a), -1) @ f["digits_cnn/5/w"].T + f["digits_cnn/5/b"]
    return np.argmax(logits, axis=1)


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_accuracy_float_vs_quantized(name, split, floats):
    pixels, y = split
    assert len(y) == REPORT["split"]["n_test"] == 540
    model = read_model(MODELS / f"{name}.opml")
    figures = REPORT["models"][name]
    assert "0x" + model.commitment.hex() == figures["commitment"]
    assert model.nodes[-1].op is Op.ARGMAX

    float_acc = float(np.mean(float_predict(name, floats, pixels) == y))
    pred = run_batch(model, pixels.reshape(len(y), *SHAPES[name])).reshape(-1)
    quant_acc = float(np.mean(pred == y))
    assert float_acc == pytest.approx(figures["float_accuracy"], abs=1e-12)
    assert quant_acc == pytest.approx(figures["quantized_accuracy"], abs=1e-12)
    assert abs(quant_acc - float_acc) <= 0.01, (quant_acc, float_acc)
    assert quant_acc >= 0.95  # the bar for the CNN; the MLP meets it too


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_single_batch_and_reference_paths_agree(name, split):
    pixels, _ = split
    model = read_model(MODELS / f"{name}.opml")
    xs = pixels.reshape(len(pixels), *SHAPES[name]).astype(np.int8)
    batch = run_batch(model, xs, keep=True)
    assert isinstance(batch, list)
    for n, x in enumerate(xs):
        single = run_model(model, x)
        assert int(single.output[0]) == int(batch[-1][n, 0])
        if n % 54 == 0:  # every value, on 10 of the 540 images
            assert all(np.array_equal(batch[v][n], single.values[v]) for v in range(len(single.values)))
        if n < 3:  # the pure-Python interpreter, byte for byte
            want = ref.run_manifest(model.manifest, dict(model.tensors), x.tobytes())
            assert [v.tobytes() for v in single.values] == want


# Regression pins for the first test image (digit 1): the output key (key of int32 [1] = 1, the same for
# both models) and S_{N−1}. A change of the committed files or of the runner shows up here, and the
# MIPS programs can be compared against the same numbers.
PINNED = {
    "digits_mlp": (
        "037ed0194d8e46fdb9c66f21295b4d787c59e7175ffad8418baebe39bd06d6a4",
        "03ce312bd2fc016a9cff37477032a27afc8d99a086c090191d5e06b4492c5756",
    ),
    "digits_cnn": (
        "037ed0194d8e46fdb9c66f21295b4d787c59e7175ffad8418baebe39bd06d6a4",
        "03a6673603b076932697b922039c41e513a03093c3ad43b84b3a2c9b9273bbff",
    ),
}


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_pinned_first_output(name, split):
    pixels, y = split
    model = read_model(MODELS / f"{name}.opml")
    result = run_model(model, pixels[0].reshape(SHAPES[name]))
    assert int(result.output[0]) == int(y[0])
    assert result.output.tobytes() == bytes([1, 0, 0, 0])
    assert (result.output_key.hex(), result.state(len(model.nodes) - 1).hex()) == PINNED[name]
