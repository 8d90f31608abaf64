"""An attacker beside the agents of test_processes.py, as its own process: a registration whose ``uri``
is not UTF-8 (for the model it is given), 1-wei spam tasks, and a sock dispute on task 0 once it is
answered, which the sock then never plays.

    python tests/e2e/_attacker.py NETWORK ADDRESSES MODEL SPAM
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from eth_abi import encode
from eth_utils import keccak

from opml.chain.commands import connect
from opml.game.agents import TASK_ANSWERED, registration_args
from opml.ml.format import read_model

ACCOUNT = "TEST::4"


def main(network: str, addresses: str, model_path: str, spam: int) -> None:
    model = read_model(model_path)
    with connect(network, ACCOUNT, Path(addresses)) as c:
        game, me = c.game, c.account
        signature = "registerModel(bytes32,uint32,uint32,uint64,bytes32,bytes32,string)"
        types = ["bytes32", "uint32", "uint32", "uint64", "bytes32", "bytes32", "bytes"]
        args = [*registration_args(model)[:-1], b"\xff\xfe not utf-8"]
        me.transfer(game.address, 0, data=keccak(text=signature)[:4] + encode(types, args))
        poisoned = int(game.modelCount()) - 1
        print(f"poisoned registration: model {poisoned}", flush=True)
        window = int(game.minChallengeWindow())
        zeros = bytes(model.input.nbytes)
        for i in range(spam):
            game.createTask(poisoned if i == 0 else 0, zeros, window, True, sender=me, value=1)
        print(f"{spam} spam tasks", flush=True)
        deadline = time.monotonic() + 300
        while int(game.task(0).status) != TASK_ANSWERED:
            if time.monotonic() > deadline:
                raise SystemExit("task 0 was never answered")
            time.sleep(0.3)
        game.challenge(0, sender=me, value=int(game.challengerBond()))
        print("sock dispute opened on task 0", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
