"""`ape run demo` end to end on the embedded network: both stories, the summary, and the dispute report.

What the demo claims is checked against the chain: the dispute's winner and node, where the step was,
and the money each party got out of the game (protocol §5), which must add up to zero.
"""

from __future__ import annotations

import html
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _ci import SLOW
from _toolchain import build_toolchain
from rich.console import Console

from opml.chain.deploy import deploy_contracts
from opml.demo import REWARD, DemoOptions, run_demo
from opml.game.solver import Party

ROOT = Path(__file__).resolve().parents[2]


def _run(deployer, options: DemoOptions) -> tuple[object, str, object]:
    build_toolchain()
    deployment = deploy_contracts(deployer)
    buffer = io.StringIO()
    console = Console(file=buffer, width=240)  # wide enough for a tmp path in one cell
    result = run_demo(deployment, deployer, options, console)
    return result, buffer.getvalue(), deployment.game


@SLOW
def test_demo_tells_the_llm_story(deployer, tmp_path):
    """`ape run demo --model smollm2`: the question, the honest and the lying answers, and the node phase 1
    finds (layer 17's attention at the prompt's last token) named by layer, operator and token, in the
    summary and in the report."""
    result, out, game = _run(deployer, DemoOptions("smollm2", report_dir=tmp_path))
    assert result.winner == Party.CHALLENGER == Party(int(game.dispute(result.dispute_id).winner))
    rows = dict(result.context)
    assert rows["prompt"] == "What is the capital of France?"
    assert rows["honest answer"] == "'The capital of France is Paris.'"
    assert rows["lying answer"] != rows["honest answer"]
    assert rows["phase 1 found"] == rows["the lie"]
    assert "attention in layer 17 at token 36" in rows["the lie"]
    page = result.report.read_text()
    for text in rows.values():
        assert html.escape(text) in page
    assert "Story 2: a server lies at node" in out and "challenger wins" in out


@pytest.mark.parametrize(
    "options",
    # The single-phase story repeats the flow on the other model: the slow tier (tests/_ci.py).
    [DemoOptions(), pytest.param(DemoOptions("digits_mlp", lie_node=1, multi_phase=False), marks=SLOW)],
    ids=["cnn-multi-phase", "mlp-single-phase"],
)
def test_demo_tells_both_stories(deployer, chain, tmp_path, options):
    options = DemoOptions(options.model, options.lie_node, options.multi_phase, report_dir=tmp_path)
    result, out, game = _run(deployer, options)

    d = game.dispute(result.dispute_id)
    assert result.winner == Party.CHALLENGER == Party(int(d.winner))
    if options.multi_phase:
        assert result.node == int(d.node) == 4  # the middle of the CNN's 9 nodes
        assert result.rounds["graph"] == 3
    else:
        assert result.node is None and result.rounds["graph"] == 0
    [claimed] = [
        e for e in game.ExecutionClaimed.range(0, chain.blocks.height + 1) if e.disputeId == result.dispute_id
    ]
    assert result.step_position == int(claimed.steps) - 1  # the liar's run leaves the truth at its exit
    assert 2 ** (result.rounds["vm"] - 1) < int(claimed.steps) <= 2 ** (result.rounds["vm"] + 1)

    bond, stake = int(game.serverBond()), int(game.challengerBond())
    assert result.nets == {  # protocol §5: the winner takes both stakes and the challengers' half
        "requester": -REWARD + bond // 2,
        "honest server": REWARD,
        "lying server": -bond - stake,
        "challenger": stake + bond - bond // 2,
    }
    assert sum(result.nets.values()) == 0 and int(game.balance) == 0  # nothing left in the game

    for text in ("Story 1: an honest answer", "Story 2: a server lies", "challenger wins", "Summary"):
        assert text in out
    assert f"{result.total_gas:,}" in out and str(result.report) in out

    page = result.report.read_text()
    assert result.report == tmp_path / f"dispute-{result.dispute_id}.html"
    assert (tmp_path / f"dispute-{result.dispute_id}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<script" not in page and "id=disassembly" in page and "data:image/png;base64," in page
    assert page.count("<td>respond</td>") == result.rounds["graph"] + result.rounds["vm"]
    if options.multi_phase:  # one browser check is enough (it takes a demo run to make a report)
        check_report_in_headless_chromium(result.report, tmp_path)


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed: `make test` installs it (apt-get install chromium)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([chromium, *flags, *args], capture_output=True, text=True, timeout=120)


def check_report_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    """The report opens in Chromium with no console error, and the screenshot shows the plot
    (matplotlib's line colour) and the disassembled step (its highlighted block, with text in it)."""
    from PIL import Image

    url = report.resolve().as_uri()
    dom = _chromium("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr
    assert "CONSOLE" not in dom.stderr and "Uncaught" not in dom.stderr, dom.stderr
    assert 'id="disassembly"' in dom.stdout and "syscall" in dom.stdout

    shot = tmp_path / "screenshot.png"
    done = _chromium(f"--screenshot={shot}", "--window-size=1280,1800", "--hide-scrollbars", url)
    assert done.returncode == 0 and shot.exists(), done.stderr
    pixels = Image.open(shot).convert("RGB")
    width = pixels.size[0]
    data = list(pixels.get_flattened_data())
    plot_line = sum(1 for p in data if abs(p[0] - 0x1F) + abs(p[1] - 0x77) + abs(p[2] - 0xB4) < 40)
    assert plot_line > 500, plot_line  # the two step plots, drawn in matplotlib's first colour
    block = [(i % width, i // width) for i, p in enumerate(data) if p == (0xE8, 0xF0, 0xFE)]
    assert len(block) > 5000, len(block)  # the disassembly's background
    x0, x1 = min(x for x, _ in block), max(x for x, _ in block)
    y0, y1 = min(y for _, y in block), max(y for _, y in block)
    text = sum(1 for x in range(x0, x1) for y in range(y0, y1) if sum(pixels.getpixel((x, y))) < 200)
    assert text > 100, text  # dark glyphs inside it: the instruction was rendered


def test_demo_refuses_a_lie_outside_the_graph():
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ape")), "run", "demo", "--lie-node", "99"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "Traceback" not in done.stdout + done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert "--lie-node must be in 0 … 8" in error
