"""One error model (vm-spec §8, oracle-spec §3): opML's errors derive from ``OpmlError``, no two
error classes share a name, every class is raised somewhere, and the VM's and the oracle's errors
mirror their contracts' custom errors the same way (``contract_error``), one to one."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import opml
from opml.errors import OpmlError
from opml.oracle.errors import OracleError
from opml.vm.errors import VMError

ROOT = Path(__file__).resolve().parents[2]


def _error_classes() -> list[type[OpmlError]]:
    for module in pkgutil.walk_packages(opml.__path__, "opml."):
        importlib.import_module(module.name)
    found, pending = [], [OpmlError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [cls for cls in found if cls.__module__.startswith("opml.")]


def _source_text() -> str:
    """The code that raises errors: the package and the ``ape run`` scripts (not the tests)."""
    files = [*(ROOT / "offchain").rglob("*.py"), *(ROOT / "scripts").rglob("*.py")]
    return "\n".join(path.read_text() for path in files)


def test_no_two_error_classes_share_a_name():
    names = [cls.__name__ for cls in _error_classes()]
    assert sorted(n for n in names if names.count(n) > 1) == []


def test_every_error_class_is_used():
    """A class without subclasses is constructed by the package (``Name(``), unless it mirrors a
    contract error: those exist because the contract declares them (checked one to one below)."""
    source = _source_text()
    unused = [
        cls.__name__
        for cls in _error_classes()
        if not cls.__subclasses__()
        and not cls.contract_error
        and not re.search(rf"(?<!class )\b{cls.__name__}\(", source)
    ]
    assert unused == []


@pytest.mark.parametrize(
    "package_error, contract",
    [(VMError, "MIPS"), (OracleError, "PreimageOracle")],
    ids=["vm-MIPS", "oracle-PreimageOracle"],
)
def test_contract_errors_are_mirrored_one_to_one(project, package_error, contract):
    mirrored = {
        cls.contract_error: cls.__name__
        for cls in _error_classes()
        if issubclass(cls, package_error) and cls.contract_error
    }
    declared = {error.name for error in getattr(project, contract).contract_type.errors}
    assert set(mirrored) == declared
    mirrors = [
        cls.contract_error
        for cls in _error_classes()
        if issubclass(cls, package_error) and cls.contract_error
    ]
    assert len(mirrors) == len(set(mirrors)), "two classes mirror one contract error"


def test_only_proof_errors_mirror_a_contract_error():
    """The VM's and the oracle's off-chain conditions (a missing preimage, a store file, a limit) have
    no contract error; nothing outside those two packages claims one."""
    claims = {cls.__name__ for cls in _error_classes() if cls.contract_error}
    assert all(issubclass(cls, (VMError, OracleError)) for cls in _error_classes() if cls.__name__ in claims)
