"""The npm-solc shim answers py-solc-x exactly like a native solc would."""

import json
import os
import subprocess
from pathlib import Path

import solcx
from packaging.version import Version

SOLC = Path(os.environ["SOLCX_BINARY_PATH"]) / "solc-v0.8.37"


def run_shim(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([str(SOLC), *args], input=stdin, capture_output=True, text=True)


def test_version_is_parsed_by_solcx():
    assert solcx.wrapper.get_solc_version(SOLC) == Version("0.8.37")
    assert Version("0.8.37") in solcx.get_installed_solc_versions()


def test_combined_json_inline_compile():
    source = "pragma solidity ^0.8.0; contract A { function f() external pure returns (uint) { return 7; } }"
    out = solcx.compile_source(source, output_values=["abi", "bin"], solc_binary=SOLC)
    ((name, contract),) = out.items()
    assert name.endswith(":A")
    assert contract["abi"][0]["name"] == "f"
    assert contract["bin"].startswith("60")


def test_standard_json_reads_imports_from_base_path(tmp_path):
    (tmp_path / "Base.sol").write_text("pragma solidity ^0.8.0; contract Base { uint x; }")
    request = {
        "language": "Solidity",
        "sources": {"A.sol": {"content": 'pragma solidity ^0.8.0; import "Base.sol"; contract A is Base {}'}},
        "settings": {"outputSelection": {"*": {"*": ["abi"]}}},
    }
    proc = run_shim(
        "--standard-json",
        "--base-path",
        str(tmp_path),
        "--allow-paths",
        str(tmp_path),
        stdin=json.dumps(request),
    )
    assert proc.returncode == 0, proc.stderr
    output = json.loads(proc.stdout)  # stdout holds exactly one JSON document, no notices
    assert set(output["contracts"]) == {"A.sol", "Base.sol"}


def test_large_output_is_not_truncated():
    # Many functions make the JSON output far larger than a 64 KiB pipe buffer.
    functions = "".join(f"function f{i}() external pure returns (uint) {{ return {i}; }}" for i in range(400))
    request = {
        "language": "Solidity",
        "sources": {"Big.sol": {"content": f"pragma solidity ^0.8.0; contract Big {{ {functions} }}"}},
        "settings": {"outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode"]}}},
    }
    proc = run_shim("--standard-json", stdin=json.dumps(request))
    assert len(proc.stdout) > 200_000
    assert len(json.loads(proc.stdout)["contracts"]["Big.sol"]["Big"]["abi"]) == 400


def test_help_lists_combined_json_outputs():
    assert "abi" in solcx.main._get_combined_json_outputs(SOLC).split(",")


def test_unknown_arguments_fail_clearly():
    proc = run_shim("--no-such-flag")
    assert proc.returncode == 1
    assert "unsupported arguments" in proc.stderr


def test_combined_json_ast_for_slither(tmp_path):
    """slither's crytic-compile asks for `--combined-json abi,ast,…`: every source (imports included)
    comes with its id and AST, in the order of `sourceList`, as native solc prints them."""
    (tmp_path / "Lib.sol").write_text("pragma solidity ^0.8.0; library Lib { function f() internal {} }")
    (tmp_path / "Main.sol").write_text('pragma solidity ^0.8.0; import "./Lib.sol"; contract Main {}')
    done = subprocess.run(
        [str(SOLC), "--combined-json", "abi,ast,bin", "Main.sol"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert sorted(out["sourceList"]) == ["Lib.sol", "Main.sol"]
    for name in out["sourceList"]:
        ast = out["sources"][name]["AST"]
        assert ast["nodeType"] == "SourceUnit" and ast["absolutePath"] == name
        assert out["sources"][name]["id"] == out["sourceList"].index(name)
    assert "abi" in out["contracts"]["Main.sol:Main"] and "bin" in out["contracts"]["Main.sol:Main"]
