"""An attacker beside the agents of test_processes.py, as its own process: a registration whose ``uri``
is not UTF-8 (for the model it is given), a sock dispute on task 0 once it is answered, which the sock
then never plays, and 1-wei spam tasks while the disputes run. The sock challenges before it spams: a
challenge is only open while the task is answered, and under load 20 spam transactions outlast a
whole dispute.

    python tests/e2e/_attacker.py NETWORK ADDRESSES MODEL SPAM
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ape.exceptions import ContractLogicError
from eth_abi import encode
from eth_utils import keccak

from opml.chain.commands import connect
from opml.game.agents import TASK_ANSWERED, TASK_OPEN, registration_args
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
        deadline = time.monotonic() + 300
        while (status := int(game.task(0).status)) == TASK_OPEN:
            if time.monotonic() > deadline:
                raise SystemExit("task 0 was never answered")
            time.sleep(0.3)
        if status == TASK_ANSWERED and _challenge(game, me):
            print("sock dispute opened on task 0", flush=True)
        else:  # under load the honest dispute may end first: the rest of the attack still runs
            status = int(game.task(0).status)
            print(f"task 0 left the answered status ({status}) before the sock could dispute it", flush=True)
        window = int(game.minChallengeWindow())
        zeros = bytes(model.input.nbytes)
        for i in range(spam):
            game.createTask(poisoned if i == 0 else 0, zeros, window, True, sender=me, value=1)
        print(f"{spam} spam tasks", flush=True)


def _challenge(game, me) -> bool:
    """Challenge task 0; ``False`` when it left the answered status between the read and the move."""
    try:
        game.challenge(0, sender=me, value=int(game.challengerBond()))
    except ContractLogicError as exc:
        if type(exc).__name__ != "WrongTaskStatus":
            raise
        return False
    return True


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
