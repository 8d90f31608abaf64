"""Gas to reveal one 32-byte part of a preimage, per key type and size; prints one JSON object.

    .venv/bin/python bench/oracle_gas.py        (from the repository root)

Runs ape's embedded py-evm chain (``ethereum:local:test``). For every case: the gas of the whole
transaction that reveals the first part of a fresh key (4 fresh storage slots: part, partOk, length,
lengthOk) and of a second part of the same key (length already stored), and the calldata bytes.
Chunk-Merkle data of 1 KiB and 1 MiB is random and hashed densely; 1 GiB is sparse (a few random
chunks in zeros), so no 1 GiB is hashed. Also: seconds to hash 64 MiB densely and to build the 1 GiB
sparse tree, and the gas of `readPreimage` as MIPS.step would call it (an eth_call estimate).
"""

import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.chdir(ROOT)  # ape's `project` is the project in the working directory

from ape import accounts, networks, project  # noqa: E402
from ape.logging import logger  # noqa: E402

from opml.chain.pyevm import lift_code_size_limit  # noqa: E402
from opml.oracle import MAX_KECCAK_PREIMAGE, DenseChunkTree, SparseChunkTree, keccak_key  # noqa: E402

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


def chunk_merkle_case(oracle, sender, tree, offsets):
    first, second = (tree.proof(o) for o in offsets)
    r1 = oracle.loadChunkMerklePart(*first.args(), sender=sender)
    r2 = oracle.loadChunkMerklePart(*second.args(), sender=sender)
    return {
        "depth": tree.depth,
        "gas_first_part": r1.gas_used,
        "gas_next_part": r2.gas_used,
        "calldata_bytes": len(r1.transaction.data),
        "read_call_gas_incl_21000_base": oracle.readPreimage.estimate_gas_cost(tree.key, offsets[0]),
    }


def keccak_case(oracle, sender, size):
    if size > MAX_KECCAK_PREIMAGE:
        return {
            "gas_first_part": None,
            "reason": f"keccak keys reveal only preimages of at most MAX_KECCAK_PREIMAGE = "
            f"{MAX_KECCAK_PREIMAGE} bytes: the whole preimage travels in calldata and is hashed "
            f"on-chain; 1 MiB of random calldata alone costs about 42M gas under the EIP-7623 "
            f"floor (prague: 40 gas per non-zero byte), above the block gas limit",
        }
    data = random.Random(size).randbytes(size)
    r1 = oracle.loadKeccak256PreimagePart(0, data, sender=sender)
    r2 = oracle.loadKeccak256PreimagePart(32, data, sender=sender)
    return {
        "gas_first_part": r1.gas_used,
        "gas_next_part": r2.gas_used,
        "calldata_bytes": len(r1.transaction.data),
        "read_call_gas_incl_21000_base": oracle.readPreimage.estimate_gas_cost(keccak_key(data), 0),
    }


def main():
    lift_code_size_limit()
    logger.set_level("ERROR")  # ape logs transactions to stdout; the JSON must be alone there
    rng = random.Random(7)
    out = {"chain": "ape ethereum:local:test (py-evm)", "chunk_merkle": {}, "keccak": {}}

    data64 = os.urandom(64 * MIB)
    t = time.perf_counter()
    DenseChunkTree(data64)
    out["hash_64mib_dense_s"] = round(time.perf_counter() - t, 2)
    del data64

    t = time.perf_counter()
    gib = SparseChunkTree(GIB, {rng.randrange(GIB // 32): rng.randbytes(32) for _ in range(16)})
    out["build_1gib_sparse_16_chunks_s"] = round(time.perf_counter() - t, 4)

    with networks.parse_network_choice("ethereum:local:test"):
        sender = accounts.test_accounts[0]
        oracle = sender.deploy(project.PreimageOracle)

        trees = {
            "1KiB": DenseChunkTree(rng.randbytes(KIB)),
            "1MiB": DenseChunkTree(rng.randbytes(MIB)),
            "1GiB": gib,
        }
        for name, tree in trees.items():
            nz = sorted(getattr(tree, "nonzero_chunks", {0: None, 1: None}))
            out["chunk_merkle"][name] = chunk_merkle_case(oracle, sender, tree, (32 * nz[-1], 32 * nz[0]))

        for name, size in (("1KiB", KIB), ("64KiB", MAX_KECCAK_PREIMAGE), ("1MiB", MIB), ("1GiB", GIB)):
            out["keccak"][name] = keccak_case(oracle, sender, size)

        r = oracle.loadLocalData(1, bytes(32), b"\x11" * 32, 32, sender=sender)
        out["local"] = {"gas": r.gas_used, "calldata_bytes": len(r.transaction.data)}

    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
