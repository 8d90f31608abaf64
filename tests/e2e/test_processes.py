"""The product as users run it, each command its own process, on an anvil node of its own:
`ape run deploy`, `opml model register`, `opml task submit`, the long-running `opml server` (told to
lie) and `opml challenger`, `opml task status` and `opml report`; and every CLI error as one line."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from _ci import SLOW
from _digits import digits_test_split
from _toolchain import build_toolchain
from click.testing import CliRunner

from opml.cli import main

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CNN = str(ROOT / "models" / "digits_cnn.opml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rpc(url: str, method: str, params: list) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["result"]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """An anvil of this module's own (chain id 1337, what ape's local network signs for)."""
    build_toolchain()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    anvil = subprocess.Popen(
        [str(BIN / "anvil"), "--port", str(port), "--chain-id", "1337", "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                _rpc(url, "eth_chainId", [])
                break
            except OSError:
                time.sleep(0.1)
        folder = tmp_path_factory.mktemp("processes")
        addresses = folder / "addresses.json"
        network = f"ethereum:local:{url}"
        deploy = [str(BIN / "ape"), "run", "deploy", "--network", network, "--account", "TEST::0"]
        deploy += ["--move-window", "600", "--min-window", "600", "--out", str(addresses)]
        done = subprocess.run(deploy, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        yield {"url": url, "network": network, "addresses": addresses, "folder": folder}
    finally:
        anvil.terminate()
        anvil.wait(timeout=30)


def opml_args(node, *args: str, account: str | None = None) -> list[str]:
    command = [str(BIN / "opml"), *args, "--network", node["network"], "--addresses", str(node["addresses"])]
    return command + (["--account", account] if account else [])


def opml(node, *args: str, account: str | None = None) -> subprocess.CompletedProcess[str]:
    command = opml_args(node, *args, account=account)
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single ``Error:`` line of a failed command (and no traceback)."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def dispute_lines(status: str) -> dict[str, str]:
    """``challenger address (lower case) → its dispute's line`` in ``opml task status``'s output."""
    lines = {}
    for line in status.splitlines():
        if line.strip().startswith("dispute ") and " by " in line:
            lines[line.split(" by ")[1].split(":")[0].lower()] = line.strip()
    return lines


def wait_for_the_win(node, agents: dict, logs: dict, task_id: str, honest: str, seconds: float) -> str:
    """Poll ``opml task status`` until ``honest``'s dispute is won, the agents still running; the status."""
    status = ""
    deadline = time.monotonic() + seconds
    while "challenger won" not in dispute_lines(status).get(honest, ""):
        assert time.monotonic() < deadline, status
        for role, process in agents.items():
            assert process.poll() is None, Path(logs[role].name).read_text()
        time.sleep(3)
        status = opml(node, "task", "status", task_id).stdout
    return status


def stop_agents(agents: dict, logs: dict) -> None:
    """Ctrl-C each agent process, wait for it and close its log."""
    for process in agents.values():
        process.send_signal(signal.SIGINT)
    for role, process in agents.items():
        process.wait(timeout=60)
        logs[role].close()


def test_deploy_then_separate_agents_play_a_dispute_to_the_end(node):
    """A lying server and an honest challenger, each its own long-running process, while an attacker
    process registers the model with a non-UTF-8 uri, posts 1-wei spam tasks and opens a sock dispute
    on the same answer: the honest challenger wins its dispute. The outcome is read from the chain
    (either party may send the final step)."""
    folder = node["folder"]
    image = folder / "image.npy"
    np.save(image, np.asarray(digits_test_split()[0][0], np.int8).reshape(8, 8, 1))
    registered = opml(node, "model", "register", CNN, "--uri", "file://models", account="TEST::0")
    assert registered.returncode == 0 and registered.stdout.startswith("model 0:"), registered.stderr
    honest = str(_rpc(node["url"], "eth_accounts", [])[3]).lower()  # TEST::3

    agents = {}
    logs = {}
    for role, account, extra in (("server", "TEST::2", ["--lie-node", "4"]), ("challenger", "TEST::3", [])):
        logs[role] = open(folder / f"{role}.log", "w")  # noqa: SIM115  # closed below
        command = opml_args(node, role, "--model", CNN, "--interval", "0.2", *extra, account=account)
        command += ["--store", str(folder / role)]
        agents[role] = subprocess.Popen(command, cwd=ROOT, stdout=logs[role], stderr=subprocess.STDOUT)
    logs["attacker"] = open(folder / "attacker.log", "w")  # noqa: SIM115  # closed below
    try:
        submitted = opml(node, "task", "submit", "0", str(image), "--model", CNN, account="TEST::1")
        assert submitted.returncode == 0 and submitted.stdout.startswith("task 0:"), submitted.stderr
        attack = [str(BIN / "python"), str(ROOT / "tests" / "e2e" / "_attacker.py")]
        attack += [node["network"], str(node["addresses"]), CNN, "20"]
        attacker = subprocess.Popen(attack, cwd=ROOT, stdout=logs["attacker"], stderr=subprocess.STDOUT)
        wait_for_the_win(node, agents, logs, "0", honest, 400)
        assert attacker.wait(timeout=60) == 0, (folder / "attacker.log").read_text()
        status = opml(node, "task", "status", "0").stdout
        assert status.startswith("task 0: rejected (model 0, multi-phase)"), status
        disputes = dispute_lines(status)
        # the sock's and the honest one; under load the honest dispute may end before the sock's opens
        sock = "sock dispute opened" in (folder / "attacker.log").read_text()
        assert len(disputes) == (2 if sock else 1) and ": resolved" in disputes[honest], status
    finally:
        stop_agents(agents, logs)
        logs["attacker"].close()
    server_log = (folder / "server.log").read_text()
    challenger_log = (folder / "challenger.log").read_text()
    attacker_log = (folder / "attacker.log").read_text()
    assert "poisoned registration" in attacker_log, attacker_log
    assert sock or "before the sock could dispute it" in attacker_log, attacker_log
    assert "submitResult" in server_log and "claimExecution dispute" in server_log
    assert "defend dispute" in server_log
    assert "challenge" in challenger_log
    assert "server stopped" in server_log and "challenger stopped" in challenger_log

    honest_dispute = int(disputes[honest].split()[1])
    reported = opml(node, "report", str(honest_dispute), "--out", str(folder / "report"))
    assert reported.returncode == 0, reported.stderr
    page = (folder / "report" / f"dispute-{honest_dispute}.html").read_text()
    assert "challenger wins" in page and "id=disassembly" in page


@SLOW
def test_llm_agents_as_processes(node, smollm2):
    """SmolLM2 served and disputed as the digits models are: `opml model register` of the registration,
    `opml task submit --ids`, a lying `opml server` (layer 17's attention at the last prompt token) and
    an honest `opml challenger`, each its own process: the challenger wins."""
    folder = node["folder"]
    model = str(smollm2.path)
    registered = opml(node, "model", "register", model, account="TEST::0")
    assert registered.returncode == 0, registered.stderr
    model_id = registered.stdout.split()[1].rstrip(":")
    labels = smollm2.card.labels
    lie = max(k for k, lb in enumerate(labels) if (lb.role, lb.step, lb.layer) == ("attention", 15, 17))
    honest = str(_rpc(node["url"], "eth_accounts", [])[5]).lower()  # TEST::5
    agents, logs = {}, {}
    for role, account, extra in (
        ("server", "TEST::4", ["--lie-node", str(lie)]),
        ("challenger", "TEST::5", []),
    ):
        logs[role] = open(folder / f"llm-{role}.log", "w")  # noqa: SIM115  # closed below
        command = opml_args(node, role, "--model", model, "--interval", "0.5", *extra, account=account)
        command += ["--store", str(folder / f"llm-{role}")]
        agents[role] = subprocess.Popen(command, cwd=ROOT, stdout=logs[role], stderr=subprocess.STDOUT)
    try:
        ids = ",".join(map(str, smollm2.prompt_ids("The capital of France", chat=False)))
        submitted = opml(
            node,
            "task",
            "submit",
            model_id,
            "--model",
            model,
            "--ids",
            ids,
            "--tokens",
            "4",
            account="TEST::1",
        )
        assert submitted.returncode == 0, submitted.stderr
        task_id = submitted.stdout.split()[1].rstrip(":")
        status = wait_for_the_win(node, agents, logs, task_id, honest, 1200)
        assert f"task {task_id}: rejected (model {model_id}, multi-phase)" in status, status
    finally:
        stop_agents(agents, logs)


def test_every_command_has_help():
    runner = CliRunner()
    commands = [
        ["model", "register"],
        ["task"],
        ["task", "submit"],
        ["task", "status"],
        ["server"],
        ["challenger"],
        ["report"],
    ]
    for command in commands:
        result = runner.invoke(main, [*command, "--help"])
        assert result.exit_code == 0 and "Usage: " in result.output, (command, result.output)
        assert "--network" in result.output or command == ["task"]


@pytest.mark.parametrize(
    "case",
    [
        "missing-account",
        "missing-test-account",
        "wrong-network",
        "unreachable-network",
        "missing-addresses",
        "unfunded-bond",
        "malformed-model",
        "malformed-input",
    ],
)
def test_bad_input_gives_one_line(node, case, tmp_path):
    garbage = tmp_path / "garbage.opml"
    garbage.write_bytes(b"not a model at all")
    short = tmp_path / "short.bin"
    short.write_bytes(b"\x01\x02\x03")
    status = ("task", "status", "0")
    if case == "missing-account":
        done = opml(node, "model", "register", CNN, account="no-such-alias")
        expect = "no account 'no-such-alias'"
    elif case == "missing-test-account":
        done = opml(node, "model", "register", CNN, account="TEST::99")
        expect = "no test account TEST::99"
    elif case == "wrong-network":
        command = opml_args(node, *status)
        command[command.index("--network") + 1] = "ethereum:no-such-network:node"
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        expect = "cannot connect to network 'ethereum:no-such-network:node'"
    elif case == "unreachable-network":
        command = opml_args(node, *status)
        command[command.index("--network") + 1] = f"ethereum:local:http://127.0.0.1:{_free_port()}"
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        expect = "network 'ethereum:local:http://127.0.0.1:"
    elif case == "missing-addresses":
        command = opml_args(node, *status)
        command[command.index("--addresses") + 1] = str(tmp_path / "none.json")
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        expect = "run `ape run deploy"
    elif case == "unfunded-bond":
        last = _rpc(node["url"], "eth_accounts", [])[9]  # TEST::9: ape's test accounts are anvil's
        _rpc(node["url"], "anvil_setBalance", [last, "0x0"])
        done = opml(node, "challenger", "--model", CNN, account="TEST::9")
        expect = "less than the gas of one dispute"
    elif case == "malformed-model":
        done = opml(node, "model", "register", str(garbage), account="TEST::0")
        expect = "garbage.opml"
    else:
        done = opml(node, "task", "submit", "0", str(short), "--model", CNN, account="TEST::1")
        expect = "short.bin"
    assert expect in one_line_error(done)
