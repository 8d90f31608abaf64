import pytest


@pytest.fixture(scope="module")
def mips(deployer, project):
    return deployer.deploy(project.MIPS)
