"""The root of opML's exception tree.

Every package (vm, oracle, ml, game) derives its errors from :class:`OpmlError`, so a caller can
catch everything opML raises with one ``except`` clause and nothing else.
"""

from typing import ClassVar


class OpmlError(Exception):
    """Base class of every error opML raises on purpose."""

    contract_error: ClassVar[str | None] = None
    """The custom error of a contract that this error mirrors (the VM's and the oracle's proof
    errors), so that a Python rejection is compared with a contract revert by that name."""
