"""The seeded CI subset of bench/diff_volume.py: the same random single-step states (every instruction
form, oracle system calls included) through the reference VM and MIPS.sol in revm; the bench runs a
million of them."""

from __future__ import annotations

from harness import volume_run

STATES_PER_FORM = 8


def test_random_states_of_every_form_agree(revm, tmp_path):
    run = volume_run(revm, tmp_path, seed=20261206)
    bench, rng, keys, oracle = run.bench, run.rng, run.keys, run.oracle
    stepped = 0
    for name in sorted(bench.FORMS):
        for _ in range(STATES_PER_FORM):
            witness, want, got = bench.outcomes(bench.random_state(rng, name, keys), oracle, revm.mips)
            assert want is not None, f"{name}: the reference refused a generated state"
            assert got == want, f"{name}: {witness.state_data.hex()}"
            stepped += 1
    assert stepped == STATES_PER_FORM * len(bench.FORMS)
