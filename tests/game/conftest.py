"""Fixtures of the game tests."""

import pytest
from ape.api import ReceiptAPI


@pytest.fixture(scope="module", autouse=True)
def _no_debug_logs():
    """ape replays every transaction to print its ``console.log`` lines (the contracts have none),
    about a quarter of each transaction's time; turned off while the game tests run."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ReceiptAPI, "show_debug_logs", lambda self: None)
        yield
