"""Train, quantize and export the two digits models (seeded; about 20 s on 2 cores).

    .venv/bin/python models/train_digits.py        (from the repository root)

Data: scikit-learn's bundled ``load_digits`` (1797 8×8 images, pixels 0 … 16, no download), split by
``train_test_split(test_size=0.3, random_state=0, stratify=y)``: 1257 train, 540 test. The float
models see ``pixels / 16``; the quantized models take the pixels themselves as int8 (input scale
1/16, zero point 0, so input quantization is exact).

- ``digits_mlp.opml``: scikit-learn ``MLPClassifier`` 64 → 64 (ReLU) → 10.
- ``digits_cnn.opml``: a CNN trained here in numpy (Adam, cross-entropy):
  conv 3×3×16 (pad 1) → ReLU → maxpool 2 → conv 3×3×32 (pad 1) → ReLU → maxpool 2 → dense 128 → 10.

Both are quantized by :func:`opml.ml.quantize.export` (calibrated on the training split) and end in
``argmax``: the model's output value is the predicted digit. Writes, next to this script:
``digits_mlp.opml``, ``digits_cnn.opml``, ``digits_float.npz`` (the float weights, for the tests'
float accuracy), ``digit_test0.bin`` (the first test image, a raw input for ``opml model run``) and
``digits.json`` (split, accuracies, commitments).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from opml.ml.format import write_model
from opml.ml.quantize import Conv2D, Dense, Flatten, InputQuant, Layer, MaxPool, export, float_forward
from opml.ml.runner import run_batch

SEED = 20240601
HERE = Path(__file__).resolve().parent
INPUT_QUANT = InputQuant(scale=1 / 16, zero_point=0)
TEST_SIZE, SPLIT_STATE = 0.3, 0


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(pixels [1797, 8, 8] int, labels, train indices, test indices, all images)``: the fixed split."""
    digits = load_digits()
    pixels = digits.images.astype(np.int64)
    y = digits.target.astype(np.int64)
    idx = np.arange(len(y))
    train, test = train_test_split(idx, test_size=TEST_SIZE, random_state=SPLIT_STATE, stratify=y)
    return pixels, y, np.asarray(train), np.asarray(test), digits.images


# --- MLP (scikit-learn) ---------------------------------------------------------------------------


def train_mlp(x: np.ndarray, y: np.ndarray) -> list[Layer]:
    clf = MLPClassifier(hidden_layer_sizes=(64,), activation="relu", max_iter=600, random_state=SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x.reshape(len(x), -1), y)
    (w0, w1), (b0, b1) = clf.coefs_, clf.intercepts_
    return [Dense(w0.T.copy(), b0.copy(), relu=True), Dense(w1.T.copy(), b1.copy(), relu=False)]


# --- CNN (numpy) ----------------------------------------------------------------------------------


def _patches(x: np.ndarray, k: int, pad: int) -> np.ndarray:
    """im2col of ``x [B, H, W, C]`` for a k×k, stride-1 window with ``pad``: ``[B, H, W, k·k·C]``."""
    b, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    cols = [xp[:, i : i + h, j : j + w, :] for i in range(k) for j in range(k)]
    return np.stack(cols, axis=-2).reshape(b, h, w, k * k * c)


def _unpatches(d: np.ndarray, k: int, pad: int, c: int) -> np.ndarray:
    """The adjoint of :func:`_patches`: gradient ``[B, H, W, k·k·C]`` → ``[B, H, W, C]``."""
    b, h, w, _ = d.shape
    d = d.reshape(b, h, w, k * k, c)
    out = np.zeros((b, h + 2 * pad, w + 2 * pad, c))
    for n, (i, j) in enumerate((i, j) for i in range(k) for j in range(k)):
        out[:, i : i + h, j : j + w, :] += d[:, :, :, n, :]
    return out[:, pad : pad + h, pad : pad + w, :]


def _pool(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b, h, w, c = x.shape
    blocks = x.reshape(b, h // 2, 2, w // 2, 2, c)
    out = blocks.max(axis=(2, 4))
    mask = blocks == out[:, :, None, :, None, :]
    mask = mask / mask.sum(axis=(2, 4), keepdims=True)
    return out, mask


def _unpool(d: np.ndarray, mask: np.ndarray) -> np.ndarray:
    b, h2, _, w2, _, c = mask.shape
    return (mask * d[:, :, None, :, None, :]).reshape(b, h2 * 2, w2 * 2, c)


def train_cnn(x: np.ndarray, y: np.ndarray, epochs: int = 40, batch: int = 32) -> list[Layer]:
    """Train the CNN on float images ``x [B, 8, 8, 1]``; returns its layers."""
    rng = np.random.default_rng(SEED)

    def he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)

    params = {
        "w1": he((16, 9), 9),
        "b1": np.zeros(16),
        "w2": he((32, 144), 144),
        "b2": np.zeros(32),
        "w3": he((10, 128), 128),
        "b3": np.zeros(10),
    }
    m = {k: np.zeros_like(v) for k, v in params.items()}
    s = {k: np.zeros_like(v) for k, v in params.items()}
    step, lr, beta1, beta2, decay = 0, 2e-3, 0.9, 0.999, 1e-4
    onehot = np.eye(10)[y]
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        rate = lr * (0.5 if epoch >= epochs * 3 // 4 else 1.0)
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            xb, tb = x[idx], onehot[idx]
            p = params
            p1 = _patches(xb, 3, 1)
            z1 = p1 @ p["w1"].T + p["b1"]
            a1 = np.maximum(z1, 0)
            q1, m1 = _pool(a1)
            p2 = _patches(q1, 3, 1)
            z2 = p2 @ p["w2"].T + p["b2"]
            a2 = np.maximum(z2, 0)
            q2, m2 = _pool(a2)
            f = q2.reshape(len(idx), -1)
            logits = f @ p["w3"].T + p["b3"]
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            prob = e / e.sum(axis=1, keepdims=True)
            dl = (prob - tb) / len(idx)
            grads = {"w3": dl.T @ f, "b3": dl.sum(0)}
            dq2 = (dl @ p["w3"]).reshape(q2.shape)
            dz2 = _unpool(dq2, m2) * (z2 > 0)
            grads["w2"] = dz2.reshape(-1, 32).T @ p2.reshape(-1, 144)
            grads["b2"] = dz2.sum((0, 1, 2))
            dq1 = _unpatches(dz2 @ p["w2"], 3, 1, 16)
            dz1 = _unpool(dq1, m1) * (z1 > 0)
            grads["w1"] = dz1.reshape(-1, 16).T @ p1.reshape(-1, 9)
            grads["b1"] = dz1.sum((0, 1, 2))
            step += 1
            for k, g in grads.items():
                if k.startswith("w"):
                    g = g + decay * p[k]
                m[k] = beta1 * m[k] + (1 - beta1) * g
                s[k] = beta2 * s[k] + (1 - beta2) * g * g
                mh = m[k] / (1 - beta1**step)
                sh = s[k] / (1 - beta2**step)
                p[k] = p[k] - rate * mh / (np.sqrt(sh) + 1e-8)
    p = params
    return [
        Conv2D(p["w1"].reshape(16, 3, 3, 1), p["b1"], pads=(1, 1, 1, 1)),
        MaxPool((2, 2), (2, 2)),
        Conv2D(p["w2"].reshape(32, 3, 3, 16), p["b2"], pads=(1, 1, 1, 1)),
        MaxPool((2, 2), (2, 2)),
        Flatten(),
        Dense(p["w3"], p["b3"], relu=False),
    ]


# --- export ---------------------------------------------------------------------------------------


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y))


def main() -> None:
    started = time.perf_counter()
    pixels, y, train, test, _ = digits_split()
    x_float = pixels.astype(np.float64) / 16
    report: dict[str, Any] = {
        "seed": SEED,
        "split": {
            "dataset": "sklearn.datasets.load_digits",
            "how": f"train_test_split(test_size={TEST_SIZE}, random_state={SPLIT_STATE}, stratify=y)",
            "n_train": len(train),
            "n_test": len(test),
            "test_indices_sha256": hashlib.sha256(np.asarray(test, "<i8").tobytes()).hexdigest(),
        },
        "input": {"dtype": "int8", "values": "pixels 0 … 16", "scale": INPUT_QUANT.scale, "zero_point": 0},
        "models": {},
    }
    weights: dict[str, np.ndarray] = {}
    trained = {
        "digits_mlp": (train_mlp, (64,)),
        "digits_cnn": (train_cnn, (8, 8, 1)),
    }
    for name, (trainer, shape) in trained.items():
        t0 = time.perf_counter()
        xs = x_float.reshape(len(y), *shape)
        layers = trainer(xs[train], y[train])
        seconds = time.perf_counter() - t0
        model = export(layers, shape, INPUT_QUANT, xs[train])
        write_model(model, HERE / f"{name}.opml")
        float_pred = np.argmax(float_forward(layers, xs[test])[-1], axis=1)
        quant_pred = run_batch(model, pixels.reshape(len(y), *shape)[test]).reshape(-1)
        report["models"][name] = {
            "float_accuracy": _accuracy(float_pred, y[test]),
            "quantized_accuracy": _accuracy(quant_pred, y[test]),
            "float_quantized_agreement": _accuracy(quant_pred, float_pred),
            "commitment": "0x" + model.commitment.hex(),
            "nodes": len(model.nodes),
            "file_bytes": len(model.file_bytes()),
            "train_seconds": round(seconds, 2),
        }
        for n, layer in enumerate(layers):
            for attr in ("w", "b"):
                if hasattr(layer, attr):
                    weights[f"{name}/{n}/{attr}"] = getattr(layer, attr)
    np.savez(HERE / "digits_float.npz", **weights)
    # The first test image as a raw int8 input for `opml model run` (both models take these 64 bytes).
    (HERE / "digit_test0.bin").write_bytes(pixels[test[0]].astype(np.int8).tobytes())
    report["sample"] = {"file": "digit_test0.bin", "test_index": 0, "label": int(y[test[0]])}
    report["total_seconds"] = round(time.perf_counter() - started, 2)
    (HERE / "digits.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
