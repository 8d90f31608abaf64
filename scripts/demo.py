"""`ape run demo [--model M] [--lie-node K] [--single-phase] [--network ...]`: the opML story (an
honest task, then a lying server caught by a challenger's dispute) on the connected network."""

import click
from ape.cli import ConnectedProviderCommand
from ape.logging import logger

from opml.chain.deploy import default_account, deploy_contracts
from opml.chain.pyevm import lift_code_size_limit
from opml.demo import MODEL_NAMES, DemoOptions, run_demo


@click.command(cls=ConnectedProviderCommand)
@click.option("--model", type=click.Choice(MODEL_NAMES), default="digits_cnn", show_default=True)
@click.option(
    "--lie-node", type=int, default=None, help="the graph node the server lies at [default: the middle one]"
)
@click.option("--single-phase", is_flag=True, help="play the single-phase game (the whole model in the VM)")
@click.option("--image", type=int, default=0, show_default=True, help="index into the digits test split")
def cli(model, lie_node, single_phase, image):
    logger.set_level("WARNING")  # the story, not ape's line per transaction
    lift_code_size_limit()
    deployer = default_account(None)
    click.echo(f"Deploying opML contracts from {deployer.address} ...")
    deployment = deploy_contracts(deployer)
    for name, address in deployment.addresses().items():
        click.echo(f"  deployed {name} at {address}")
    try:
        run_demo(deployment, deployer, DemoOptions(model, lie_node, not single_phase, image))
    except ValueError as e:
        raise click.UsageError(str(e)) from None
