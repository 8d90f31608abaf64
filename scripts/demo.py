"""`ape run demo`: the opML flow on the embedded local network, narrated step by step."""

import click
from ape.cli import ConnectedProviderCommand

from opml.chain.deploy import default_account, deploy_contracts
from opml.chain.pyevm import lift_code_size_limit
from opml.demo import run_demo


@click.command(cls=ConnectedProviderCommand)
def cli():
    lift_code_size_limit()
    deployer = default_account(None)
    click.echo(f"Deploying opML contracts from {deployer.address} ...")
    deployment = deploy_contracts(deployer)
    for name, address in deployment.addresses().items():
        click.echo(f"  deployed {name} at {address}")
    run_demo(deployment, deployer)
