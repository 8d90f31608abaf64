"""The root of opML's exception tree.

Every package (vm, oracle, ml, game, chain) derives its errors from :class:`OpmlError`: whatever
comes from data (a state, a proof, a store, a model, an input, the chain) is one of them, so a caller
catches it with one ``except`` clause. A Python call with an argument of the wrong kind or range (a
programming error, e.g. a 31-byte ``local_context``) raises the built-in ``ValueError``/``TypeError``.
"""

from typing import ClassVar


class OpmlError(Exception):
    """Base class of every error opML raises on purpose."""

    contract_error: ClassVar[str | None] = None
    """The custom error of a contract that this error mirrors (the VM's and the oracle's proof
    errors), so that a Python rejection is compared with a contract revert by that name."""
