"""`ape run deploy --network ECOSYSTEM:NETWORK:PROVIDER [--account ALIAS] [options]`: deploy opML's
contracts (PreimageOracle, MIPS, OpmlGame) and write their addresses to a JSON file for the agents."""

from pathlib import Path

import click
from ape import networks
from ape.cli import ConnectedProviderCommand, account_option

from opml.chain.deploy import DeploymentError, GameParameters, default_account, deploy_contracts

DEFAULTS = GameParameters()


@click.command(cls=ConnectedProviderCommand)
@account_option(prompt=False)
@click.option("--server-bond", type=int, default=DEFAULTS.server_bond, show_default=True, help="wei")
@click.option("--challenger-bond", type=int, default=DEFAULTS.challenger_bond, show_default=True, help="wei")
@click.option("--move-window", type=int, default=DEFAULTS.move_window, show_default=True, help="seconds")
@click.option(
    "--min-window", type=int, default=DEFAULTS.min_challenge_window, show_default=True, help="seconds"
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="addresses file [default: deployments/<ecosystem>-<network>.json]",
)
def cli(account, server_bond, challenger_bond, move_window, min_window, out):
    try:
        params = GameParameters(server_bond, challenger_bond, move_window, min_window)
        deployer = default_account(account)
    except DeploymentError as e:
        raise click.UsageError(str(e)) from None
    deployment = deploy_contracts(deployer, params)
    network = networks.provider.network
    name = f"{network.ecosystem.name}:{network.name}:{networks.provider.name}"
    path = out or Path("deployments") / f"{network.ecosystem.name}-{network.name}.json"
    deployment.write(path, name, params)
    for contract, address in deployment.addresses().items():
        click.echo(f"{contract}: {address}")
    click.echo(f"addresses written to {path}")
