"""The toolchain under the contracts: the solc shim compiles, and the node accepts large code."""

from pathlib import Path

import pytest
import yaml

EIP170_LIMIT = 24_576
APE_CONFIG = Path(__file__).resolve().parents[2] / "ape-config.yaml"


def _cbor(data: bytes, pos: int = 0):
    """Decode one CBOR item at ``pos`` (the subset solc's metadata uses); return (value, end)."""
    major, info = data[pos] >> 5, data[pos] & 31
    pos += 1
    if info < 24:
        arg = info
    elif info <= 27:
        size = 1 << (info - 24)
        arg, pos = int.from_bytes(data[pos : pos + size], "big"), pos + size
    else:
        raise ValueError(f"unsupported CBOR head {data[pos - 1]:#x}")
    if major == 0:
        return arg, pos
    if major in (2, 3):
        raw = data[pos : pos + arg]
        return (raw if major == 2 else raw.decode()), pos + arg
    if major == 5:
        out = {}
        for _ in range(arg):
            key, pos = _cbor(data, pos)
            out[key], pos = _cbor(data, pos)
        return out, pos
    if major == 7 and arg in (20, 21):
        return arg == 21, pos
    raise ValueError(f"unsupported CBOR major type {major}")


def solc_metadata(runtime: bytes) -> dict:
    """The CBOR map solc appends to runtime code; its length is the code's last 2 bytes."""
    length = int.from_bytes(runtime[-2:], "big")
    start = len(runtime) - 2 - length
    metadata, end = _cbor(runtime, start)
    assert end == len(runtime) - 2, "the CBOR map must fill the metadata exactly"
    return metadata


@pytest.mark.parametrize("name", ["CodeSizeProbe", "MIPS", "PreimageOracle"])
def test_compiled_with_pinned_solc(project, name):
    pinned = str(yaml.safe_load(APE_CONFIG.read_text())["solidity"]["version"])  # e.g. 0.8.37
    runtime = project[name].contract_type.runtime_bytecode
    assert runtime is not None
    code = bytes.fromhex(runtime.bytecode.removeprefix("0x"))
    metadata = solc_metadata(code)
    assert set(metadata) >= {"solc", "ipfs"}
    assert metadata["solc"] == bytes(int(part) for part in pinned.split("."))  # 0.8.37 -> 00 08 25


def test_deploys_and_runs(deployer, project):
    probe = deployer.deploy(project.CodeSizeProbe)
    receipt = probe.deploy(64, sender=deployer)
    assert not receipt.failed


@pytest.mark.parametrize("size", [EIP170_LIMIT + 1, 40_000])
def test_code_size_limit_is_lifted(deployer, project, chain, size):
    probe = deployer.deploy(project.CodeSizeProbe)
    created = probe.deploy.call(size, sender=deployer)
    probe.deploy(size, sender=deployer)
    assert len(chain.provider.get_code(created)) == size
