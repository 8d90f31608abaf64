"""`ape run demo` end to end on the embedded network: both disputes end with the honest claim upheld.

Who won is read back from the chain: each step transaction's calldata and its ``StepExecuted`` event
(vm-spec §8), with the state hashes recomputed by hand (§2.2).
"""

import eth_abi
import sha3

from opml.chain.deploy import deploy_contracts
from opml.demo import run_demo

V0, A3 = 2, 7
SYS_PREIMAGE_READ = 9003


def _keccak(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()


def _running_hash(state_data: bytes) -> bytes:
    """§2.2 for a state with exited = 0: status 3 (UNFINISHED) in the top byte."""
    assert state_data[89] == 0
    return b"\x03" + _keccak(state_data)[1:]


def _register(state_data: bytes, reg: int) -> int:
    return int.from_bytes(state_data[98 + 4 * reg : 102 + 4 * reg], "big")


def test_demo_settles_both_disputes(deployer, chain, capsys):
    deployment = deploy_contracts(deployer)
    result = run_demo(deployment, deployer)
    out = capsys.readouterr().out
    mips = deployment.mips
    selector = _keccak(b"step(bytes,bytes,bytes32)")[:4]

    assert len(result.disputes) == 2
    for dispute, local_context in zip(result.disputes, (bytes(32), bytes.fromhex("0a" * 32)), strict=True):
        # The transaction as the chain holds it: MIPS.step with this dispute's witness.
        receipt = chain.provider.get_receipt(dispute.txn_hash)
        assert not receipt.failed and receipt.receiver == mips.address
        data = bytes(receipt.transaction.data)
        assert data[:4] == selector
        sent = eth_abi.decode(["bytes", "bytes", "bytes32"], data[4:])
        assert sent == (dispute.state_data, dispute.proof, local_context)

        [log] = receipt.decode_logs(mips.StepExecuted)
        pre, post = dispute.state_data, bytes(log.postState)
        assert bytes(log.preStateHash) == _running_hash(pre)
        assert bytes(log.postStateHash) == _running_hash(post)  # the program is still running
        assert int.from_bytes(post[90:98], "big") == int.from_bytes(pre[90:98], "big") + 1
        assert post[64:68] == pre[68:72]  # pc = the old nextPC: an ordinary step, no panic

        # The honest party claimed exactly the on-chain post-state; the liar claimed it with $v0 ^ 1.
        honest, dishonest = dispute.claims["honest"], dispute.claims["dishonest"]
        assert honest == bytes(log.postStateHash)
        lie = bytearray(post)
        lie[98 + 4 * V0 + 3] ^= 1
        assert dishonest == _running_hash(bytes(lie)) != honest
        assert dispute.upheld == ("honest",)

    # The second dispute is a preimage_read of the tensor that succeeded on-chain (a3 = 0, bytes read).
    second = result.disputes[1]
    assert _register(second.state_data, V0) == SYS_PREIMAGE_READ
    post = bytes(chain.provider.get_receipt(second.txn_hash).decode_logs(mips.StepExecuted)[0].postState)
    assert _register(post, A3) == 0 and 1 <= _register(post, V0) <= 32

    # The guest's checksum over the streamed tensor equals numpy's.
    want = f"checksum 0x{result.tensor_checksum:08x} bytes {result.tensor_bytes}\n"
    assert result.stream_stdout == want.encode()

    # The narration says the same.
    assert out.count("honest     claimed") == 2 and out.count("-> upheld") == 2
    assert out.count("dishonest  claimed") == 2 and out.count("-> refuted") == 2
    assert f"numpy computes checksum 0x{result.tensor_checksum:08x} " in out
