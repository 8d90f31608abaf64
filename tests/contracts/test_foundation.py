"""The toolchain under the contracts: the solc shim compiles, and the node accepts large code."""

import pytest

EIP170_LIMIT = 24_576


def test_compiled_with_pinned_solc(project):
    compiler = project.CodeSizeProbe.contract_type
    assert compiler.runtime_bytecode is not None
    assert len(compiler.runtime_bytecode.bytecode) > 2


def test_deploys_and_runs(deployer, project):
    probe = deployer.deploy(project.CodeSizeProbe)
    receipt = probe.deploy(64, sender=deployer)
    assert not receipt.failed


@pytest.mark.parametrize("size", [EIP170_LIMIT + 1, 40_000])
def test_code_size_limit_is_lifted(deployer, project, chain, size):
    probe = deployer.deploy(project.CodeSizeProbe)
    created = probe.deploy.call(size, sender=deployer)
    probe.deploy(size, sender=deployer)
    assert len(chain.provider.get_code(created)) == size
