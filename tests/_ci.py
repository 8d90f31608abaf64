"""What the suite may skip, in one place, the rule that CI has every tool, and the slow tier.

With ``CI`` set (``.ci/run``, or ``CI=true make test``) a missing tool is a failure, not a skip, and
``tests/conftest.py`` fails the run if any test is skipped for a reason not listed in
``ALLOWED_SKIPS``. Cases that can never apply are filtered out when collected, never skipped.
"""

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")

# The slow tier: `make test` (and a bare `ape test`) deselects tests marked slow (pyproject's pytest
# addopts), `make test-slow` runs only them, and `.ci/run` runs both. A slow case is a redundant point of
# a matrix whose every dimension keeps a fast representative, so `make test` covers each behaviour once.
SLOW = pytest.mark.slow


def slow_except(keep: set[int], cases, *, unpack: bool = False) -> list:
    """``cases`` for ``parametrize``, every one whose index is not in ``keep`` marked slow (``unpack``:
    each case is a tuple of several arguments)."""
    params = []
    for i, case in enumerate(cases):
        values = case if unpack else (case,)
        params.append(pytest.param(*values, marks=() if i in keep else SLOW))
    return params


# reason (exactly as passed to pytest.skip) -> why skipping it is acceptable even in CI
ALLOWED_SKIPS: dict[str, str] = {}


def missing_tool(message: str) -> None:
    """Skip the calling test because a tool is missing, or fail it in CI, where every tool must be."""
    if IN_CI:
        pytest.fail(f"{message} (CI must have every tool: `make -C mips-toolchain check-tools`)")
    pytest.skip(message)
