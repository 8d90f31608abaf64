"""`ape run demo`: the opML flow on the embedded local network, narrated step by step."""

import click
from ape.cli import ConnectedProviderCommand

from opml.chain.deploy import default_account, deploy_contracts


@click.command(cls=ConnectedProviderCommand)
def cli():
    deployer = default_account(None)
    click.echo(f"Deploying opML contracts from {deployer.address} ...")
    deployment = deploy_contracts(deployer)
    for name, address in deployment.addresses().items():
        click.echo(f"  deployed {name} at {address}")
