"""A content-addressed preimage store on disk (docs/oracle-spec.md §4).

One file per key, named by the key in hex, in a folder per key type::

    <root>/keccak/<key hex>            the preimage
    <root>/chunk-merkle/<key hex>      the preimage (a sparse file when it was put as a sparse tree)
    <root>/chunk-merkle/<key hex>.sparse   the non-zero chunks of a sparse tree (see below)
    <root>/chunk-merkle/<key hex>.range    instead of the preimage: where it lies in another file
    <root>/local/<key hex>             the local value (≤ 32 bytes), under its localized key
    <root>/local/<key hex>.json        ``{"ident", "caller", "local_context"}`` that localize it

A ``.sparse`` file lets a cold store rebuild a huge, mostly-zero tree without hashing its zeros:
``u64 count`` then ``count`` times ``(u64 chunk index, 32 bytes)``, little-endian; checking that the
main file holds exactly those chunks reads only its data extents (``SEEK_DATA``: holes are zeros).
Files are written to a temporary name and renamed, so a crash never leaves a partial preimage under
its key.

A ``.range`` file, ``{"file": absolute path, "offset": int, "size": int}`` in JSON, says that the
preimage is bytes ``offset … offset + size − 1`` of ``file`` (a tensor of a model file), so a model is
never copied into the store. It is read only when there is no data file for the key (a copy wins). A
store memory-maps each such file once, on first use, and serves slices of that map.

Every preimage is checked against its key the first time a store instance reads it (a range: hashed
from the map it is then served from), and :class:`StoreIntegrityError` says when it does not match.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import mmap
import operator
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

_EMPTY = np.zeros(0, dtype=np.uint8)
_EMPTY.setflags(write=False)


def _map_file(path: Path) -> np.ndarray:
    """A read-only ``uint8`` memory map of the whole file at ``path`` (an empty file: an empty array)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return _EMPTY  # mmap refuses an empty file
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mapped, dtype=np.uint8)  # read-only, since the map is; keeps the map alive


def _data_ranges(path: Path, size: int) -> list[tuple[int, int]]:
    """The byte ranges of the file that may hold non-zero bytes: its data extents, by ``SEEK_DATA`` and
    ``SEEK_HOLE`` (a hole reads as zeros, so a sparse 1 GiB preimage is scanned in milliseconds, not
    by faulting in 262,144 zero pages), or the whole file where the file system cannot tell."""
    ranges = []
    try:
        with open(path, "rb") as f:
            pos = 0
            while pos < size:
                try:
                    first = os.lseek(f.fileno(), pos, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # no data after pos
                        break
                    raise
                end = os.lseek(f.fileno(), first, os.SEEK_HOLE)
                ranges.append((first, min(end, size)))
                pos = end
    except (OSError, AttributeError):  # no SEEK_DATA here (or on this file system): all of it
        return [(0, size)]
    return ranges


def _file_identity(path: Path) -> tuple[int, int, int, int]:
    """What changes when the file at ``path`` is replaced or rewritten."""
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class _Range:
    """Bytes ``offset … offset + size − 1`` of ``file``, which had ``identity`` when they were put: the
    content of a ``.range`` record."""

    file: Path
    offset: int
    size: int
    identity: tuple[int, int, int, int]

    def record(self) -> bytes:
        fields = {"file": str(self.file), "offset": self.offset, "size": self.size, "identity": self.identity}
        return json.dumps(fields).encode()

    @classmethod
    def read(cls, sidecar: Path) -> _Range:
        try:
            meta = json.loads(sidecar.read_text())
            dev, ino, size, mtime = (int(v) for v in meta["identity"])
            return cls(Path(meta["file"]), int(meta["offset"]), int(meta["size"]), (dev, ino, size, mtime))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreIntegrityError(
                f"{sidecar} is not a range record ({exc}): delete it and put the model again"
            ) from None

    def unchanged(self) -> bool:
        """Whether the file is still there with the identity it had when the range was put."""
        try:
            return _file_identity(self.file) == self.identity
        except OSError:
            return False


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
        """Keys whose data file this store has checked (or written) against the key."""
        self._ranges: dict[bytes, tuple[np.ndarray, _Range]] = {}
        """Keys held as a range: its bytes, checked against the key (a slice of a map below), and the
        range with the file's identity when they were checked."""
        self._maps: dict[Path, tuple[tuple[int, int, int, int], np.ndarray]] = {}
        """The one memory map of each file that ranges point into, with the file's identity then."""

    # --- paths and writes ---------------------------------------------------------------------

    def path(self, key: bytes) -> Path:
        """The file that holds the preimage of ``key``."""
        return self.root / _FOLDERS[key_type(key)] / bytes(key).hex()

    def _range_path(self, key: bytes) -> Path:
        path = self.path(key)
        return path.with_name(path.name + ".range")

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

    def put_chunk_merkle_range(self, key: bytes, path: str | Path, offset: int, size: int) -> bytes:
        """Record that the preimage of the chunk-Merkle ``key`` is bytes ``offset … offset + size − 1`` of the
        file at ``path`` (no copy, not hashed now). Return ``key``.

        The caller vouches for the bytes; the store hashes them when it first reads ``key``. A data file
        already held for ``key`` stays (a copy wins), and so does a ``.range`` record whose file is
        unchanged since it was put (two model files that share a tensor do not take turns); a record
        whose file moved or changed is rewritten. Raises :class:`InvalidKeyTypeError` for another key type,
        ``ValueError`` for a negative offset or size or a range past the end of the file and
        ``FileNotFoundError`` when there is no file at ``path``."""
        key = bytes(key)
        if key_type(key) != KeyType.CHUNK_MERKLE:
            raise InvalidKeyTypeError(f"a range is stored under a chunk-Merkle key, not 0x{key.hex()}")
        offset, size = operator.index(offset), operator.index(size)  # numpy integers too; JSON needs int
        if offset < 0 or size < 0:
            raise ValueError(f"a range has a non-negative offset and size, got {offset} and {size}")
        file = Path(path).resolve(strict=True)
        if file.stat().st_size < offset + size:
            raise ValueError(f"the {size} bytes at offset {offset} end past the end of {file}")
        if self.path(key).exists():
            return key
        sidecar = self._range_path(key)
        if sidecar.exists():
            try:
                if _Range.read(sidecar).unchanged():
                    return key
            except StoreIntegrityError:
                pass  # a malformed record: replaced below
        record = _Range(file, offset, size, _file_identity(file)).record()
        if not sidecar.exists() or sidecar.read_bytes() != record:
            self._write(sidecar, lambda f: f.write(record))
            # The key now names another place: check that one when the key is next read.
            self._ranges.pop(key, None)
            self._trees.pop(key, None)
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
        """Whether the store has a data file or a ``.range`` record for ``key`` (not checked here)."""
        try:
            if self.path(key).exists():
                return True
            return key_type(key) == KeyType.CHUNK_MERKLE and self._range_path(key).exists()
        except InvalidKeyTypeError:
            return False

    def _open(self, key: bytes) -> Path | np.ndarray:
        """The data file of ``key``, or the bytes of its range; checked against the key the first time
        this store reads it.

        Raises :class:`PreimageNotFoundError` when there is neither and :class:`StoreIntegrityError` when
        the content is not the key's preimage (for a local value: when its record names another key;
        the value itself is whatever its caller stored)."""
        key = bytes(key)
        held = self._ranges.get(key)
        if held is not None:
            if held[1].unchanged():  # a stat per read: a file rewritten in place is hashed again
                return held[0]
            del self._ranges[key]
        path = self.path(key)
        if path.exists():
            if key not in self._checked:
                if not self._holds_preimage(key, path):
                    raise StoreIntegrityError(
                        f"store file {path} does not hold the preimage of key 0x{key.hex()} (flipped, "
                        "truncated or another key's file): delete it and put the preimage again"
                    )
                self._checked.add(key)
            return path
        if key_type(key) == KeyType.CHUNK_MERKLE and self._range_path(key).exists():
            data, where = self._checked_range(key)
            self._ranges[key] = (data, where)
            return data
        raise PreimageNotFoundError(f"no preimage for key {key.hex()}")

    def _checked_range(self, key: bytes) -> tuple[np.ndarray, _Range]:
        """The bytes the ``.range`` record of ``key`` names, hashed against ``key`` (its tree is kept),
        and that range with the identity of the file they were read from."""
        sidecar = self._range_path(key)
        where = _Range.read(sidecar)
        end = where.offset + where.size

        def fail(why: str) -> StoreIntegrityError:
            return StoreIntegrityError(
                f"the {where.size} bytes at offset {where.offset} of {where.file} (recorded in {sidecar}) "
                f"do not hold the preimage of key 0x{key.hex()}: {why}; put the model again "
                f"(PreimageStore.put_chunk_merkle_range) or delete {sidecar}"
            )

        try:
            identity = _file_identity(where.file)
            whole = self._map(where.file, identity)
        except FileNotFoundError:
            raise fail("the file is missing (moved or deleted)") from None
        if len(whole) < end:
            raise fail(f"the file has only {len(whole)} bytes (it changed)")
        held = whole[where.offset : end]
        tree = DenseChunkTree(held)
        if tree.key != key:
            raise fail("they hash to another key (the file changed)")
        self._trees[key] = tree
        return held, dataclasses.replace(where, identity=identity)

    def _map(self, file: Path, identity: tuple[int, int, int, int]) -> np.ndarray:
        """The store's one memory map of ``file`` (whose identity is ``identity``), mapped again only
        when the file has changed since."""
        known = self._maps.get(file)
        if known is not None and known[0] == identity:
            return known[1]
        whole = _map_file(file)
        self._maps[file] = (identity, whole)
        return whole

    def checked_path(self, key: bytes) -> Path:
        """The data file of ``key``, checked against the key the first time this store reads it.

        Raises :class:`PreimageNotFoundError` when there is none and :class:`StoreIntegrityError` when
        its content is not the key's preimage. A key held as a range has no file of its own: raises
        ``ValueError`` (read it with :meth:`array` or :meth:`get`)."""
        source = self._open(key)
        if not isinstance(source, Path):
            raise ValueError(
                f"key 0x{bytes(key).hex()} is held as a range of another file ({self._range_path(key)}), "
                "not as a store file: read it with PreimageStore.array or get"
            )
        return source

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
        for first, end in _data_ranges(path, size):
            first -= first % PART_SIZE  # whole chunks: a hole's bytes read as zeros
            end = min(size, end + -end % PART_SIZE)
            for start in range(first, end, block):
                piece = np.asarray(data[start : min(start + block, end)])
                if not piece.any():
                    continue
                rows = np.concatenate([piece, np.zeros(-len(piece) % PART_SIZE, np.uint8)]).reshape(
                    -1, PART_SIZE
                )
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
        source = self._open(key)
        return source.read_bytes() if isinstance(source, Path) else source.tobytes()

    def length(self, key: bytes) -> int:
        """The preimage length of ``key``."""
        source = self._open(key)
        return source.stat().st_size if isinstance(source, Path) else len(source)

    def read_part(self, key: bytes, part_offset: int) -> bytes:
        """The 32-byte part at ``part_offset``, zero-padded past the end (spec §2)."""
        source = self._open(key)
        if isinstance(source, Path):
            check_part_offset(part_offset, source.stat().st_size)
            with open(source, "rb") as f:
                f.seek(part_offset)
                raw = f.read(PART_SIZE)
        else:
            check_part_offset(part_offset, len(source))
            raw = source[part_offset : part_offset + PART_SIZE].tobytes()
        return raw + bytes(PART_SIZE - len(raw))

    def array(self, key: bytes) -> np.ndarray:
        """The whole preimage of ``key`` as a read-only 1-D ``uint8`` array, not copied: a memory map of
        its data file (a new one per call) or a slice of the store's map of its range's file. A local
        value (which ``put_local`` may overwrite) is read into a new array."""
        source = self._open(key)
        if not isinstance(source, Path):
            return source
        if key_type(key) == KeyType.LOCAL:
            return np.frombuffer(source.read_bytes(), dtype=np.uint8)  # read-only: it views bytes
        return _map_file(source)

    def local_value(self, key: bytes) -> LocalValue:
        """The local value stored under the localized ``key`` and what localizes it."""
        if key_type(key) != KeyType.LOCAL:
            raise InvalidKeyTypeError("not a local key")
        path = self.checked_path(key)  # a local value is always a file
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
        self._open(key)  # checks the file or range once, which also builds its tree
        return self._trees[key]

    def proof(self, key: bytes, part_offset: int) -> PartProof:
        """The ``loadChunkMerklePart`` arguments for the part of ``key`` at ``part_offset``."""
        return self.tree(key).proof(part_offset)
