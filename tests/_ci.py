"""What the suite may skip, in one place, and the rule that CI has every tool.

With ``CI`` set (``.ci/run``, or ``CI=true make test``) a missing tool is a failure, not a skip, and
``tests/conftest.py`` fails the run if any test is skipped for a reason not listed in
``ALLOWED_SKIPS``. Cases that can never apply are filtered out when collected, never skipped.
"""

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")

# reason (exactly as passed to pytest.skip) -> why skipping it is acceptable even in CI
ALLOWED_SKIPS: dict[str, str] = {}


def missing_tool(message: str) -> None:
    """Skip the calling test because a tool is missing, or fail it in CI, where every tool must be."""
    if IN_CI:
        pytest.fail(f"{message} (CI must have every tool: `make -C mips-toolchain check-tools`)")
    pytest.skip(message)
