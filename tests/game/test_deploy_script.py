"""`ape run deploy` (scripts/deploy.py): configurable bonds and windows, the addresses file the agents
read, and one-line errors for parameters the contract would refuse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from opml.chain.deploy import DeploymentError, GameParameters, read_addresses

ROOT = Path(__file__).resolve().parents[2]
APE = str(Path(sys.executable).with_name("ape"))


def ape_run_deploy(*args: str) -> subprocess.CompletedProcess[str]:
    command = [APE, "run", "deploy", "--network", "ethereum:local:test", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_deploy_writes_the_addresses_file(tmp_path):
    out = tmp_path / "addresses.json"
    done = ape_run_deploy(
        "--server-bond", "5", "--challenger-bond", "7", "--move-window", "600", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    record = read_addresses(out)
    assert record["network"] == "ethereum:local:test"
    assert record["parameters"] == {
        "server_bond": 5,
        "challenger_bond": 7,
        "move_window": 600,
        "min_challenge_window": GameParameters().min_challenge_window,
    }
    for name, address in record["contracts"].items():
        assert f"{name}: {address}" in done.stdout


@pytest.mark.parametrize(
    "args",
    [("--move-window", "0"), ("--move-window", "9000", "--min-window", "3600"), ("--server-bond", "0")],
    ids=["zero-move-window", "move-window-above-min", "zero-bond"],
)
def test_refused_parameters_give_one_line(args, tmp_path):
    done = ape_run_deploy(*args, "--out", str(tmp_path / "a.json"))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and ("window" in errors[0] or "bond" in errors[0])
    assert not (tmp_path / "a.json").exists()


def test_addresses_file_errors_say_what_to_do(tmp_path):
    with pytest.raises(DeploymentError, match="run `ape run deploy"):
        read_addresses(tmp_path / "missing.json")
    garbled = tmp_path / "garbled.json"
    garbled.write_text("{not json")
    with pytest.raises(DeploymentError, match="not JSON"):
        read_addresses(garbled)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"contracts": {"MIPS": "0x00"}}))
    with pytest.raises(DeploymentError, match="OpmlGame"):
        read_addresses(partial)
