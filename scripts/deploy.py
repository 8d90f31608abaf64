"""`ape run deploy --network ECOSYSTEM:NETWORK:PROVIDER [--account ALIAS]`: deploy opML's contracts."""

import click
from ape.cli import ConnectedProviderCommand, account_option

from opml.chain.deploy import default_account, deploy_contracts


@click.command(cls=ConnectedProviderCommand)
@account_option(prompt=False)
def cli(account):
    deployer = default_account(account)
    deployment = deploy_contracts(deployer)
    for name, address in deployment.addresses().items():
        click.echo(f"{name}: {address}")
