"""The root of opML's exception tree.

Every package (vm, oracle, ml, game) derives its errors from :class:`OpmlError`, so a caller can
catch everything opML raises with one ``except`` clause and nothing else.
"""


class OpmlError(Exception):
    """Base class of every error opML raises on purpose."""
