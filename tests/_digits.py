"""The committed digits models and the fixed test split of models/train_digits.py."""

import hashlib
import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

MODELS = Path(__file__).resolve().parents[1] / "models"
DIGITS_REPORT = json.loads((MODELS / "digits.json").read_text())
DIGITS_SHAPES = {"digits_mlp": (64,), "digits_cnn": (8, 8, 1)}


def digits_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The test split of models/train_digits.py, derived again: pixels [540, 8, 8] (0 … 16) and labels;
    checked against the indices' hash that the training script recorded."""
    digits = load_digits()
    y = digits.target
    _, test = train_test_split(np.arange(len(y)), test_size=0.3, random_state=0, stratify=y)
    sha = hashlib.sha256(np.asarray(test, "<i8").tobytes()).hexdigest()
    assert sha == DIGITS_REPORT["split"]["test_indices_sha256"]
    return digits.images[test].astype(np.int64), y[test]
