import pytest


@pytest.fixture(scope="module")
def oracle(deployer, project):
    return deployer.deploy(project.PreimageOracle)


@pytest.fixture(scope="module")
def mips(deployer, project, oracle):
    return deployer.deploy(project.MIPS, oracle.address)
