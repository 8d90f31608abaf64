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


def test_a_mismatch_writes_a_replay_fixture(revm, tmp_path, monkeypatch):
    """The long run's mismatch (faked here: a wrong contract hash) is written as the gate's fixture,
    with the local value the step reads, so tests/diff/test_replay.py can replay it."""
    import harness

    run = volume_run(revm, tmp_path / "store", seed=5)
    local_key = next(key for key, case in run.keys_to_cases.items() if case.kind == "local" and case.data)
    state = run.bench.random_state(run.rng, "syscall", [local_key])
    state.registers[2] = 9002  # preimage_length of the selected local value
    state.preimage_key, state.exited = local_key, False
    witness, want, _ = run.bench.outcomes(state, run.oracle, revm.mips)
    monkeypatch.setattr(harness, "FAILURES", tmp_path / "failures")
    path = run.bench.write_mismatch_fixture(
        "volume-test", state, witness, want, bytes(32), run.keys_to_cases, run.oracle
    )
    case = harness.load_fixture(path)
    named = run.keys_to_cases[local_key]
    assert (case.syscall, case.kind, case.data, case.ident) == (9002, "local", named.data, named.ident)
    assert harness.encode_state(case.state) == witness.state_data
