"""The seeded CI subset of bench/diff_volume.py: the same random single-step states (every instruction
form, oracle system calls included) through the reference VM and MIPS.sol in revm; the bench runs a
million of them."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

from opml.oracle import PreimageStore
from opml.vm.preimage import OracleView

BENCH = Path(__file__).resolve().parents[2] / "bench" / "diff_volume.py"
STATES_PER_FORM = 8


def _bench():
    spec = importlib.util.spec_from_file_location("diff_volume", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_random_states_of_every_form_agree(revm, tmp_path):
    bench = _bench()
    rng = random.Random(20261206)
    store = PreimageStore(tmp_path)
    keys = list(bench.load_preimages(rng, store, revm.oracle))
    oracle = OracleView(store, bench.CALLER, bench.CONTEXT)
    stepped = 0
    for name in sorted(bench.FORMS):
        for _ in range(STATES_PER_FORM):
            witness, want, got = bench.outcomes(bench.random_state(rng, name, keys), oracle, revm.mips)
            assert want is not None, f"{name}: the reference refused a generated state"
            assert got == want, f"{name}: {witness.state_data.hex()}"
            stepped += 1
    assert stepped == STATES_PER_FORM * len(bench.FORMS)
