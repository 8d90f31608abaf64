"""Shared fixtures: roles first, then deployed contracts, then defaults."""

import pytest

from opml.chain.pyevm import lift_code_size_limit

# ape's embedded provider is py-evm; anvil gets the same limit from tools/anvil-wrapper.sh.
lift_code_size_limit()


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
