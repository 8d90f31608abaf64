"""Deployment of opML's contracts, shared by `ape run deploy`, the demo and the tests."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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

    MAX_CHALLENGE_WINDOW = 30 * 24 * 3600
    """``OpmlGame.MAX_CHALLENGE_WINDOW``."""

    def __post_init__(self) -> None:
        """The constructor's rules (``InvalidParameters``), checked before anything is sent."""
        if self.server_bond <= 0 or self.challenger_bond <= 0:
            raise DeploymentError("bonds must be positive (wei)")
        if not 0 < self.move_window <= self.min_challenge_window <= self.MAX_CHALLENGE_WINDOW:
            raise DeploymentError(
                "windows must satisfy 0 < move window <= min challenge window <= 30 days "
                f"(got {self.move_window} s and {self.min_challenge_window} s)"
            )


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

    def write(self, path: Path, network: str, params: GameParameters) -> None:
        """Write the addresses file the agents and the CLI read (see :func:`read_addresses`)."""
        record = {"network": network, "contracts": self.addresses(), "parameters": asdict(params)}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")


def read_addresses(path: Path) -> dict[str, Any]:
    """The record :meth:`Deployment.write` wrote: ``network``, ``contracts`` (name → address) and
    ``parameters``."""
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DeploymentError(f"no addresses file {path}: run `ape run deploy --network ...` first") from None
    except json.JSONDecodeError as e:
        raise DeploymentError(
            f"addresses file {path} is not JSON ({e}); deploy again to rewrite it"
        ) from None
    contracts = record.get("contracts") if isinstance(record, dict) else None
    if not isinstance(contracts, dict) or not {"PreimageOracle", "MIPS", "OpmlGame"} <= contracts.keys():
        raise DeploymentError(f"addresses file {path} names no PreimageOracle, MIPS and OpmlGame")
    return dict(record)


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
