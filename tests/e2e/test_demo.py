"""`ape run demo` end to end on the embedded network: both disputes end with the honest claim upheld."""

from opml.chain.deploy import deploy_contracts
from opml.demo import run_demo


def test_demo_settles_both_disputes(deployer, capsys):
    run_demo(deploy_contracts(deployer), deployer)
    out = capsys.readouterr().out
    assert out.count("honest     claimed") == 2
    assert out.count("-> upheld") == 2
    assert out.count("dishonest  claimed") == 2
    assert out.count("-> refuted") == 2
    assert "numpy computes checksum" in out
    printed = out.split("output: checksum ")[1].split()[0]
    assert f"numpy computes checksum {printed} " in out
