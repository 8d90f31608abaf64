"""An in-process EVM (revm, through pyrevm) for work that needs thousands of contract calls.

ape's embedded provider (py-evm) executes about 2 Mgas/s on this machine, about 13 ms per ``MIPS.step``;
revm runs the same bytecode two orders of magnitude faster. The suite uses it where a test makes
thousands of calls (the every-bit tamper sweeps) and keeps py-evm and anvil for everything else. It runs
the bytecode that ape compiled, at the same EVM version (Prague), with the contract-size limit lifted as
on the other two nodes.
"""

from dataclasses import dataclass

import eth_abi
from pyrevm import EVM, CfgEnv, Env

from opml.errors import OpmlError
from opml.hashing import keccak256

DEFAULT_CALLER = "0x" + "c0" * 20
_SPEC = "PRAGUE"  # ape-config.yaml's evm_version
_NO_CODE_SIZE_LIMIT = 1 << 32


class RevmCallError(OpmlError):
    """Thrown when a call to the in-process EVM reverts or halts; ``data`` is the revert data."""

    def __init__(self, message: str, data: bytes = b"") -> None:
        super().__init__(message)
        self.data = data


@dataclass(frozen=True)
class Deployed:
    """A contract deployed in an :class:`InProcessEVM`."""

    evm: "InProcessEVM"
    address: str

    def call(self, signature: str, types: list[str], args: list, caller: str = DEFAULT_CALLER) -> bytes:
        """Call ``signature`` (e.g. ``"step(bytes,bytes)"``) with ABI-encoded ``args``; return the output."""
        calldata = keccak256(signature.encode())[:4] + eth_abi.encode(types, args)
        return self.evm.call(self.address, calldata, caller)


class InProcessEVM:
    """One revm instance with a funded default caller. Calls commit their state changes."""

    def __init__(self) -> None:
        self._evm = EVM(env=Env(cfg=CfgEnv(limit_contract_code_size=_NO_CODE_SIZE_LIMIT)), spec_id=_SPEC)
        self._evm.set_balance(DEFAULT_CALLER, 10**24)

    def deploy(self, contract_type, *args, caller: str = DEFAULT_CALLER) -> Deployed:
        """Deploy an ape ``ContractType`` (e.g. ``project.MIPS.contract_type``) with constructor ``args``."""
        code = bytes.fromhex(contract_type.deployment_bytecode.bytecode.removeprefix("0x"))
        constructor = contract_type.constructor
        if constructor.inputs:
            code += eth_abi.encode([str(i.canonical_type) for i in constructor.inputs], list(args))
        return Deployed(self, self._evm.deploy(caller, code))

    def call(self, to: str, calldata: bytes, caller: str = DEFAULT_CALLER) -> bytes:
        """Execute a call and return its output; raises :class:`RevmCallError` on a revert or halt."""
        try:
            return bytes(self._evm.message_call(caller, to, calldata))
        except RuntimeError as err:
            message = str(err)
            data = b""
            if "output: 0x" in message:
                data = bytes.fromhex(message.split("output: 0x", 1)[1].split()[0].rstrip("},"))
            raise RevmCallError(f"call to {to} failed: {message}", data) from None
