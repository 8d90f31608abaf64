"""Deployment of opML's contracts, shared by `ape run deploy`, the demo and the tests."""

from dataclasses import dataclass

from ape import accounts, networks, project
from ape.api import AccountAPI
from ape.contracts import ContractInstance

from opml.errors import OpmlError


class DeploymentError(OpmlError):
    """Raised when opML's contracts cannot be deployed with the given account or network."""


@dataclass(frozen=True)
class GameParameters:
    """``OpmlGame``'s constructor arguments (docs/protocol.md §2, §5): bonds in wei, windows in seconds.

    The defaults suit a local node or a testnet; size the bonds for a real network by protocol §5."""

    server_bond: int = 10**17
    challenger_bond: int = 10**17
    move_window: int = 3600
    min_challenge_window: int = 7200


@dataclass(frozen=True)
class Deployment:
    """The deployed opML contracts on one network."""

    oracle: ContractInstance
    mips: ContractInstance
    game: ContractInstance

    def addresses(self) -> dict[str, str]:
        return {
            "PreimageOracle": self.oracle.address,
            "MIPS": self.mips.address,
            "OpmlGame": self.game.address,
        }


def default_account(account: AccountAPI | None) -> AccountAPI:
    """The account to deploy with: the given one, or the first test account on a local network."""
    if account is not None:
        return account
    if networks.provider.network.is_local:
        return accounts.test_accounts[0]
    raise DeploymentError(
        f"no account given for network '{networks.provider.network.name}': "
        "pass --account ALIAS (see `ape accounts list`)"
    )


def deploy_contracts(deployer: AccountAPI, params: GameParameters | None = None) -> Deployment:
    """Deploy every opML contract in dependency order."""
    p = GameParameters() if params is None else params
    oracle = deployer.deploy(project.PreimageOracle)
    mips = deployer.deploy(project.MIPS, oracle.address)
    bonds = (p.server_bond, p.challenger_bond)
    game = deployer.deploy(project.OpmlGame, mips.address, *bonds, p.move_window, p.min_challenge_window)
    return Deployment(oracle=oracle, mips=mips, game=game)
