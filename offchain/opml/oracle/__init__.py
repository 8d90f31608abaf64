"""The preimage oracle, off-chain side (docs/oracle-spec.md): keys, chunk trees, a store, a client."""

from opml.oracle.chunk_tree import (
    ChunkTree,
    DenseChunkTree,
    PartProof,
    SparseChunkTree,
    merkle_root,
    tree_depth,
    verify_part_proof,
)
from opml.oracle.client import OracleClient
from opml.oracle.keys import (
    MAX_KECCAK_PREIMAGE,
    KeyType,
    chunk_merkle_key,
    keccak_key,
    key_type,
    local_ident_key,
    localize,
    localize_ident,
    with_type,
)
from opml.oracle.store import LocalValue, PreimageStore

__all__ = [
    "MAX_KECCAK_PREIMAGE",
    "ChunkTree",
    "DenseChunkTree",
    "KeyType",
    "LocalValue",
    "OracleClient",
    "PartProof",
    "PreimageStore",
    "SparseChunkTree",
    "chunk_merkle_key",
    "keccak_key",
    "key_type",
    "local_ident_key",
    "localize",
    "localize_ident",
    "merkle_root",
    "tree_depth",
    "verify_part_proof",
    "with_type",
]
