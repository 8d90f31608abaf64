"""A content-addressed preimage store on disk (docs/oracle-spec.md §4).

One file per key, named by the key in hex, in a folder per key type::

    <root>/keccak/<key hex>            the preimage
    <root>/chunk-merkle/<key hex>      the preimage (a sparse file when it was put as a sparse tree)
    <root>/chunk-merkle/<key hex>.sparse   the non-zero chunks of a sparse tree (see below)
    <root>/local/<key hex>             the local value (≤ 32 bytes), under its localized key
    <root>/local/<key hex>.json        ``{"ident", "caller", "local_context"}`` that localize it

A ``.sparse`` file lets a cold store rebuild a huge, mostly-zero tree without hashing its zeros:
``u64 count`` then ``count`` times ``(u64 chunk index, 32 bytes)``, little-endian. Files are written
to a temporary name and renamed, so a crash never leaves a partial preimage under its key.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opml.oracle.chunk_tree import (
    ChunkTree,
    DenseChunkTree,
    PartProof,
    SparseChunkTree,
    as_byte_view,
    check_part_offset,
)
from opml.oracle.errors import (
    InvalidKeyTypeError,
    LocalDataTooLargeError,
    PreimageNotFoundError,
    PreimageTooLargeError,
    StoreIntegrityError,
)
from opml.oracle.keys import (
    MAX_KECCAK_PREIMAGE,
    PART_SIZE,
    KeyType,
    address_bytes,
    check_local_ident,
    keccak_key,
    key_type,
    localize_ident,
)

_FOLDERS = {KeyType.LOCAL: "local", KeyType.KECCAK: "keccak", KeyType.CHUNK_MERKLE: "chunk-merkle"}


@dataclass(frozen=True)
class LocalValue:
    """A local value and what localizes it (spec §1.1)."""

    ident: int
    caller: bytes
    local_context: bytes
    value: bytes

    @property
    def size(self) -> int:
        return len(self.value)

    @property
    def word(self) -> bytes:
        """The value as the ``bytes32`` that ``loadLocalData`` takes (zero-padded on the right)."""
        return self.value + bytes(PART_SIZE - len(self.value))


class PreimageStore:
    """Preimages on disk, addressed by their oracle keys."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        for folder in _FOLDERS.values():
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self._trees: dict[bytes, ChunkTree] = {}
        self._checked: set[bytes] = set()

    # --- paths and writes ---------------------------------------------------------------------

    def path(self, key: bytes) -> Path:
        """The file that holds the preimage of ``key``."""
        return self.root / _FOLDERS[key_type(key)] / bytes(key).hex()

    def _write(self, path: Path, write) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    # --- put ----------------------------------------------------------------------------------

    def put_keccak(self, data) -> bytes:
        """Store ``data`` (at most ``MAX_KECCAK_PREIMAGE`` bytes) under its keccak key."""
        data = bytes(as_byte_view(data))
        if len(data) > MAX_KECCAK_PREIMAGE:
            raise PreimageTooLargeError(f"{len(data)} bytes > {MAX_KECCAK_PREIMAGE}; use a chunk-Merkle key")
        key = keccak_key(data)
        path = self.path(key)
        if not path.exists():
            self._write(path, lambda f: f.write(data))
            self._checked.add(key)
        return key

    def put_chunk_merkle(self, data) -> bytes:
        """Store ``data`` under its chunk-Merkle key. ``data`` is bytes-like, a numpy array or a
        :class:`ChunkTree` (a :class:`SparseChunkTree` is written as a sparse file)."""
        tree = data if isinstance(data, ChunkTree) else DenseChunkTree(data)
        key = tree.key
        path = self.path(key)
        if not path.exists():
            if isinstance(tree, SparseChunkTree):
                chunks = tree.nonzero_chunks

                def write_sparse(f):
                    f.write(struct.pack("<Q", len(chunks)))
                    for index in sorted(chunks):
                        f.write(struct.pack("<Q", index) + chunks[index])

                self._write(path.with_name(path.name + ".sparse"), write_sparse)
                self._write(path, tree.write_to)
            elif isinstance(tree, DenseChunkTree):
                dense = tree
                self._write(path, lambda f: f.write(dense.data))
            else:
                raise TypeError(
                    f"cannot store a {type(tree).__name__}: pass bytes or a Dense/SparseChunkTree"
                )
            self._trees[key] = tree
            self._checked.add(key)  # written here from the data: it holds the preimage
        return key

    def put_local(self, ident: int, caller, local_context: bytes, value: bytes) -> bytes:
        """Store a local value (≤ 32 bytes) under the key localized with ``caller``; return that key."""
        value = bytes(value)
        if len(value) > PART_SIZE:
            raise LocalDataTooLargeError(f"a local value has at most 32 bytes, got {len(value)}")
        check_local_ident(ident)
        key = localize_ident(ident, caller, local_context)
        path = self.path(key)
        meta = {
            "ident": ident,
            "caller": "0x" + address_bytes(caller).hex(),
            "local_context": bytes(local_context).hex(),
        }
        self._write(path.with_name(path.name + ".json"), lambda f: f.write(json.dumps(meta).encode()))
        self._write(path, lambda f: f.write(value))
        self._checked.add(key)
        return key

    # --- get ----------------------------------------------------------------------------------

    def __contains__(self, key: bytes) -> bool:
        try:
            return self.path(key).exists()
        except InvalidKeyTypeError:
            return False

    def checked_path(self, key: bytes) -> Path:
        """The file of ``key``, checked against the key the first time this store opens it.

        Raises :class:`PreimageNotFoundError` when there is none and :class:`StoreIntegrityError` when
        its content is not the key's preimage (for a local value: when its record names another key;
        the value itself is whatever its caller stored)."""
        key = bytes(key)
        path = self.path(key)
        if not path.exists():
            raise PreimageNotFoundError(f"no preimage for key {key.hex()}")
        if key not in self._checked:
            if not self._holds_preimage(key, path):
                raise StoreIntegrityError(
                    f"store file {path} does not hold the preimage of key 0x{key.hex()} (flipped, "
                    "truncated or another key's file): delete it and put the preimage again"
                )
            self._checked.add(key)
        return path

    def _holds_preimage(self, key: bytes, path: Path) -> bool:
        kind = key_type(key)
        if kind == KeyType.KECCAK:
            return keccak_key(path.read_bytes()) == key
        if kind == KeyType.LOCAL:
            meta = json.loads(path.with_name(path.name + ".json").read_text())
            value_ok = path.stat().st_size <= PART_SIZE
            return (
                value_ok
                and localize_ident(meta["ident"], meta["caller"], bytes.fromhex(meta["local_context"])) == key
            )
        sparse = path.with_name(path.name + ".sparse")
        tree = self._sparse_tree(path, sparse) if sparse.exists() else DenseChunkTree.from_file(path)
        if tree is None or tree.key != key:
            return False
        self._trees[key] = tree
        return True

    @staticmethod
    def _sparse_tree(path: Path, sparse: Path) -> ChunkTree | None:
        """The tree the sidecar describes, if the main file holds exactly its chunks (else None)."""
        raw = sparse.read_bytes()
        (count,) = struct.unpack_from("<Q", raw)
        chunks = {}
        for i in range(count):
            (index,) = struct.unpack_from("<Q", raw, 8 + 40 * i)
            chunks[index] = raw[16 + 40 * i : 48 + 40 * i]
        size = path.stat().st_size
        tree = SparseChunkTree(size, chunks)
        data = np.memmap(path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        block = 1 << 20  # a multiple of the chunk size: the file is scanned without loading it whole
        for start in range(0, size, block):
            piece = np.asarray(data[start : start + block])
            if not piece.any():
                continue
            rows = np.concatenate([piece, np.zeros(-len(piece) % PART_SIZE, np.uint8)]).reshape(-1, PART_SIZE)
            for row in np.flatnonzero(rows.any(axis=1)).tolist():
                if chunks.get(start // PART_SIZE + row) != rows[row].tobytes():
                    return None
        for index, value in chunks.items():
            chunk = np.asarray(data[index * PART_SIZE : (index + 1) * PART_SIZE]).tobytes()
            if chunk + bytes(PART_SIZE - len(chunk)) != value:
                return None
        return tree

    def get(self, key: bytes) -> bytes:
        """The whole preimage of ``key``."""
        return self.checked_path(key).read_bytes()

    def length(self, key: bytes) -> int:
        """The preimage length of ``key``."""
        return self.checked_path(key).stat().st_size

    def read_part(self, key: bytes, part_offset: int) -> bytes:
        """The 32-byte part at ``part_offset``, zero-padded past the end (spec §2)."""
        path = self.checked_path(key)
        check_part_offset(part_offset, path.stat().st_size)
        with open(path, "rb") as f:
            f.seek(part_offset)
            raw = f.read(PART_SIZE)
        return raw + bytes(PART_SIZE - len(raw))

    def local_value(self, key: bytes) -> LocalValue:
        """The local value stored under the localized ``key`` and what localizes it."""
        if key_type(key) != KeyType.LOCAL:
            raise InvalidKeyTypeError("not a local key")
        path = self.checked_path(key)
        meta = json.loads(path.with_name(path.name + ".json").read_text())
        return LocalValue(
            ident=meta["ident"],
            caller=address_bytes(meta["caller"]),
            local_context=bytes.fromhex(meta["local_context"]),
            value=path.read_bytes(),
        )

    def tree(self, key: bytes) -> ChunkTree:
        """The chunk tree of a chunk-Merkle ``key`` (cached; rebuilt from disk on first use)."""
        if key_type(key) != KeyType.CHUNK_MERKLE:
            raise InvalidKeyTypeError("not a chunk-Merkle key")
        self.checked_path(key)  # checks the file once, which also builds its tree
        return self._trees[key]

    def proof(self, key: bytes, part_offset: int) -> PartProof:
        """The ``loadChunkMerklePart`` arguments for the part of ``key`` at ``part_offset``."""
        return self.tree(key).proof(part_offset)
