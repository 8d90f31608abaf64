"""Model format (docs/ml-spec.md §1–§4, §10): tensors, the canonical manifest, the model file.

The **manifest** is a 64-byte header followed by one 160-byte record per node; the **model
commitment** is its chunk-Merkle key. A model file (``*.opml``) is the manifest and the tensors it
names. Every reader path checks every rule of the spec and raises a :class:`ModelFormatError`
subclass with a one-line message; a :class:`Model` that exists is valid.

Header (64 bytes), little-endian u32 fields:

| offset | field |
|---:|---|
| 0 | ``magic`` = ``OPMM`` |
| 4 | ``version`` = 1 or 2 |
| 8 | ``node_count`` N (1 … 4096 in version 1, 1 … 2^20 in version 2) |
| 12 | ``input_dtype`` |
| 16 | ``input_rank`` (1 … 4) |
| 20 | ``input_dims[4]`` |
| 36 | 28 reserved zero bytes |

Node record (160 bytes at ``64 + 160·i``): ``op`` 0, ``n_inputs`` 4, ``input[2]`` 8, ``out_dtype`` 16,
``out_rank`` 20, ``out_dims[4]`` 24, ``params[14]`` (int32) 40, ``tensor_key[2]`` 96 and 128.

Model file: ``OPMLMODL``, ``file_version`` = 1, ``manifest_size``, ``tensor_count`` T (u32 each), the
manifest, then T times a 32-byte key, a u32 size and the bytes.

A version-1 manifest uses only the dtypes int8/int32 and the ops 1–11 with the version-1 limits, so every
version-1 model keeps its commitment. Version 2 adds int16, the row-scaled ``r16``/``r8`` (per row an
int32 exponent then the values), GGUF ``q4_1``/``q8_0`` parameter tensors, the ops 12–23 of a LLaMA block,
``2^20`` nodes and ``2^30``-byte parameter tensors.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from functools import partial
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from opml.ml import blocks
from opml.ml.errors import (
    BadMagicError,
    BlockShapeError,
    ForwardReferenceError,
    InputCountError,
    InvalidFieldError,
    InvalidInputError,
    NonCanonicalError,
    OverflowBoundError,
    ParamRangeError,
    ShapeMismatchError,
    ShardError,
    TensorKeyMismatchError,
    TensorSetError,
    TensorSizeError,
    TrailingDataError,
    TruncatedError,
    UnknownDTypeError,
    UnknownOpError,
    UnknownVersionError,
)
from opml.oracle.chunk_tree import ChunkTree

# --- constants (ml-spec §1–§3) --------------------------------------------------------------------

MAGIC = b"OPMM"
VERSION_1 = 1
VERSION_2 = 2
FILE_MAGIC = b"OPMLMODL"
FILE_VERSION = 1

KEY_SIZE = 32
MAX_RANK = 4
MAX_NODES = 4096
MAX_NODES_V2 = 1 << 20
N_PARAMS = 14
N_TENSOR_KEYS = 2
MAX_TENSOR_BYTES = 1 << 24
"""Largest value (input, node output), and largest parameter tensor of a version-1 manifest."""
MAX_PARAM_BYTES_V2 = 1 << 30
"""Largest parameter tensor of a version-2 manifest (a 1B model's embedding is 266 MiB)."""
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
ACC_BOUND = INT32_MAX
"""Largest |partial sum| of a dense/conv2d accumulation (ml-spec §4): ``K·255·128 + max|bias|``."""
MAX_PRODUCT = 255 * 128
"""Largest |(x − zx)·w| for int8 x, zx and w."""
MAX_FILTER_ELEMS = 4096
"""Largest ``KH·KW·C`` of a conv2d filter (the VM's 4 KiB weight buffer)."""
MAX_SOFTMAX_N = 32767
SOFTMAX_E_MAX = 1 << 16

ROW_HEADER = 4
"""Bytes of a row-scaled row's int32 exponent."""
MAX_QDENSE_K = 1 << 16
"""Largest ``K`` of qdense: ``K/32 ≤ 2^11`` blocks of ``< 2^51`` keep the accumulator below ``2^62``."""
MAX_NORM_H = 1 << 16
MAX_ATTENTION_L = 1 << 16
MAX_HEAD_DIM = 256
MAX_ROPE_P = 1 << 20
MAX_OUT_FRAC = 30
"""Largest fractional bits ``R`` of an int32 fixed-point output."""
MAX_NORM_EPS = 1 << 16
MAX_ATTENTION_MUL = (1 << 23) - 1
MAX_SHIFT = 62
TABLE_ONE = 1 << 30
"""``1.0`` in the Q30 tables of rope, attention and swiglu."""
EXP2_TABLE_LEN = 1025
SIGMOID_TABLE_LEN = 2049
ARGMAX_RECORD = 3
"""An argmax record: ``(index, low 32 bits, high 32 bits)`` of the int64 maximum."""
TRANSCRIPT_HEADER = 2
"""A generation's transcript (§10.5) starts with the prompt length ``P`` and the token count ``n``."""

HEADER_SIZE = 64
HDR_MAGIC = 0
HDR_VERSION = 4
HDR_NODE_COUNT = 8
HDR_INPUT_DTYPE = 12
HDR_INPUT_RANK = 16
HDR_INPUT_DIMS = 20
HDR_RESERVED = 36
HDR_RESERVED_SIZE = 28

NODE_SIZE = 160
NODE_OP = 0
NODE_N_INPUTS = 4
NODE_INPUTS = 8
NODE_OUT_DTYPE = 16
NODE_OUT_RANK = 20
NODE_OUT_DIMS = 24
NODE_PARAMS = 40
NODE_TENSOR_KEYS = 96

FILE_HEADER_SIZE = 20
FILE_MAGIC_OFFSET = 0
FILE_VERSION_OFFSET = 8
FILE_MANIFEST_SIZE_OFFSET = 12
FILE_TENSOR_COUNT_OFFSET = 16
TENSOR_ENTRY_HEADER = KEY_SIZE + 4
"""Bytes before a tensor's data in the file: its key and its u32 size."""

ZERO_KEY = bytes(KEY_SIZE)

TensorData: TypeAlias = bytes | memoryview
"""A tensor's bytes: ``bytes``, or a read-only byte memoryview (a slice of a model file's bytes or map)."""


@dataclass(frozen=True)
class TensorRef:
    """A tensor known by its key and size only, for building a graph whose weights are not in memory
    (a synthetic model's, written to its file in a stream): ``GraphBuilder`` takes it where it takes
    bytes, and the model is read back from the file it is written to."""

    key: bytes
    nbytes: int

    def __len__(self) -> int:
        return self.nbytes


@dataclass(frozen=True)
class TensorSource:
    """Where a model's tensors are in its file: ``offsets[key]`` is the first byte of the tensor with
    ``key`` in the file at ``path``, which had ``identity`` (device, inode, size, mtime) when it was
    read (so a preimage store can point there instead of copying, while the file is that file)."""

    path: Path
    offsets: Mapping[bytes, int]
    identity: tuple[int, int, int, int]

    def unchanged(self) -> bool:
        """Whether the file at ``path`` is still the one the model was read from (a model file is
        replaced by renaming a new one over it: the model keeps the old one's bytes, mapped)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == self.identity


def manifest_size(node_count: int) -> int:
    """``64 + 160·N``."""
    return HEADER_SIZE + NODE_SIZE * node_count


def node_offset(index: int) -> int:
    """Offset of node ``index``'s record in the manifest."""
    return HEADER_SIZE + NODE_SIZE * index


class DType(IntEnum):
    """ml-spec §1. Plain dtypes hold elements; ``R16``/``R8`` rows of an int32 exponent and ``K`` values
    (the last dim); ``Q4_1``/``Q8_0`` GGUF blocks of 32 weights (parameter tensors only)."""

    INT8 = 1
    INT32 = 2
    INT16 = 3
    R16 = 4
    R8 = 5
    Q4_1 = 6
    Q8_0 = 7

    @property
    def is_rows(self) -> bool:
        return self in (DType.R16, DType.R8)

    @property
    def is_blocks(self) -> bool:
        return self in (DType.Q4_1, DType.Q8_0)

    @property
    def itemsize(self) -> int:
        """Bytes of one element (of a row's values for ``R16``/``R8``; a block's weights have none)."""
        if self.is_blocks:
            raise ValueError(f"{self.name.lower()} weights are packed in blocks")
        return _ITEMSIZE[self]

    @property
    def np(self) -> np.dtype[Any]:
        """The numpy dtype of the elements (little-endian); of a row's values for ``R16``/``R8``."""
        return np.dtype(f"<i{self.itemsize}")

    @property
    def lo(self) -> int:
        return -(1 << (8 * self.itemsize - 1))

    @property
    def hi(self) -> int:
        return (1 << (8 * self.itemsize - 1)) - 1


_ITEMSIZE = {DType.INT8: 1, DType.INT32: 4, DType.INT16: 2, DType.R16: 2, DType.R8: 1}
V1_DTYPES = (DType.INT8, DType.INT32)
WEIGHT_DTYPES = (DType.Q4_1, DType.Q8_0)


class Op(IntEnum):
    DENSE = 1
    CONV2D = 2
    REQUANTIZE = 3
    ADD = 4
    RELU = 5
    MAXPOOL = 6
    AVGPOOL = 7
    RESHAPE = 8
    ARGMAX = 9
    LUT = 10
    SOFTMAX = 11
    QDENSE = 12
    QDENSE_ARGMAX = 13
    ARGMAX_MERGE = 14
    EMBEDDING = 15
    RMSNORM = 16
    ROPE = 17
    ATTENTION = 18
    SWIGLU = 19
    QUANTIZE = 20
    ADD32 = 21
    CONCAT = 22
    SLICE = 23
    EMIT = 24


V1_OPS = frozenset(op for op in Op if op <= Op.SOFTMAX)
"""The ops of a version-1 manifest."""
_TWO_INPUTS = (Op.ADD, Op.ARGMAX_MERGE, Op.ATTENTION, Op.SWIGLU, Op.ADD32, Op.CONCAT, Op.EMIT)
OP_INPUTS: dict[Op, int] = {op: 2 if op in _TWO_INPUTS else 1 for op in Op}
"""``n_inputs`` of each op."""
OP_PARAM_NAMES: dict[Op, tuple[str, ...]] = {
    Op.DENSE: ("zx", "bound"),
    Op.CONV2D: (
        "zx",
        "KH",
        "KW",
        "stride_h",
        "stride_w",
        "pad_top",
        "pad_left",
        "pad_bottom",
        "pad_right",
        "bound",
    ),
    Op.REQUANTIZE: ("M0", "t", "zy", "lo", "hi", "mode"),
    Op.ADD: ("za", "Ma", "zb", "Mb", "t", "zy", "lo", "hi"),
    Op.RELU: ("z",),
    Op.MAXPOOL: ("KH", "KW", "stride_h", "stride_w"),
    Op.AVGPOOL: ("KH", "KW", "stride_h", "stride_w"),
    Op.RESHAPE: (),
    Op.ARGMAX: (),
    Op.LUT: (),
    Op.SOFTMAX: (),
    Op.QDENSE: ("wtype", "F", "Mt", "row0", "R"),
    Op.QDENSE_ARGMAX: ("wtype", "F", "Mt", "row0", "M"),
    Op.ARGMAX_MERGE: (),
    Op.EMBEDDING: ("wtype", "F", "V", "R"),
    Op.RMSNORM: ("Gf", "eps"),
    Op.ROPE: ("hd", "pos0", "P"),
    Op.ATTENTION: ("hd", "mul", "sa"),
    Op.SWIGLU: (),
    Op.QUANTIZE: ("fx",),
    Op.ADD32: (),
    Op.CONCAT: ("axis",),
    Op.SLICE: ("r0",),
    Op.EMIT: ("t",),
}
"""The names of each op's params ``p0, p1, …`` (ml-spec §4, §10)."""
OP_PARAMS: dict[Op, int] = {op: len(names) for op, names in OP_PARAM_NAMES.items()}
"""How many of the 14 params each op uses (the rest must be 0)."""
OP_TENSOR_NAMES: dict[Op, tuple[str, str]] = {
    Op.DENSE: ("W", "bias"),
    Op.CONV2D: ("W", "bias"),
    Op.LUT: ("T", ""),
    Op.SOFTMAX: ("E", ""),
    Op.QDENSE: ("W", ""),
    Op.QDENSE_ARGMAX: ("W", ""),
    Op.EMBEDDING: ("W", ""),
    Op.RMSNORM: ("g", ""),
    Op.ROPE: ("C", ""),
    Op.ATTENTION: ("X", ""),
    Op.SWIGLU: ("G", ""),
    Op.REQUANTIZE: ("channels", ""),
}
"""The names of each op's two parameter tensors."""
OP_TENSORS: dict[Op, tuple[bool, bool] | None] = {
    Op.DENSE: (True, False),
    Op.CONV2D: (True, False),
    Op.REQUANTIZE: (False, True),
    **{op: (True, True) for op in OP_TENSOR_NAMES if op not in (Op.DENSE, Op.CONV2D, Op.REQUANTIZE)},
}
"""Per op with tensors: (first tensor required, second tensor forbidden). dense/conv2d take an optional
bias; requantize an optional per-channel table (version 2); the other ops with tensors take exactly one
(a table, weights or a norm vector); the rest none."""


# --- tensors and nodes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorDesc:
    """A tensor's dtype and shape (rank 1 … 4, ``shape[0]`` outermost)."""

    dtype: DType
    shape: tuple[int, ...]

    @property
    def elems(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def rows(self) -> int:
        """Rows of the last dim (``elems / K``)."""
        return self.elems // self.shape[-1]

    @property
    def nbytes(self) -> int:
        dt = self.dtype
        k = self.shape[-1]
        if dt.is_blocks:
            return self.rows * (k // blocks.BLOCK) * blocks.block_bytes(dt is DType.Q4_1)
        if dt.is_rows:
            return self.rows * (ROW_HEADER + k * dt.itemsize)
        return self.elems * dt.itemsize

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def np_dtype(self) -> np.dtype[Any]:
        """The numpy dtype of the array that holds the tensor: the element dtype; for ``R16``/``R8`` a
        packed record ``(e int32, q values[K])`` per row; for blocks the raw bytes (uint8)."""
        if self.dtype.is_rows:
            return np.dtype([("e", "<i4"), ("q", self.dtype.np, (self.shape[-1],))])
        if self.dtype.is_blocks:
            return np.dtype(np.uint8)
        return self.dtype.np

    @property
    def np_shape(self) -> tuple[int, ...]:
        """The shape of that array: the dims; the dims but the last for rows; ``[M, bytes per row]``
        for blocks."""
        if self.dtype.is_rows:
            return self.shape[:-1]
        if self.dtype.is_blocks:
            return (self.rows, self.nbytes // self.rows)
        return self.shape

    def __str__(self) -> str:
        return f"{self.dtype.name.lower()}[{', '.join(map(str, self.shape))}]"


def int8(*shape: int) -> TensorDesc:
    return TensorDesc(DType.INT8, tuple(shape))


def int32(*shape: int) -> TensorDesc:
    return TensorDesc(DType.INT32, tuple(shape))


def int16(*shape: int) -> TensorDesc:
    return TensorDesc(DType.INT16, tuple(shape))


def r16(*shape: int) -> TensorDesc:
    return TensorDesc(DType.R16, tuple(shape))


def r8(*shape: int) -> TensorDesc:
    return TensorDesc(DType.R8, tuple(shape))


@dataclass(frozen=True)
class Node:
    """One node record. ``params`` has 14 ints, ``tensor_keys`` two keys (``None`` when absent)."""

    op: Op
    inputs: tuple[int, ...]
    out: TensorDesc
    params: tuple[int, ...] = (0,) * N_PARAMS
    tensor_keys: tuple[bytes | None, bytes | None] = (None, None)

    @property
    def p(self) -> tuple[int, ...]:
        """The params the op uses."""
        return self.params[: OP_PARAMS[self.op]]


def tensor_key(data: bytes | bytearray | memoryview | npt.NDArray[Any]) -> bytes:
    """The key of a tensor (ml-spec §1): the chunk-Merkle key of its bytes."""
    return bytes(ChunkTree.from_bytes(data).key)


def tensor_bytes(array: npt.NDArray[Any], dtype: DType) -> bytes:
    """The bytes of ``array`` as a plain ``dtype`` tensor (row-major, little-endian); values must fit."""
    arr = np.asarray(array)
    if arr.size and (int(arr.min()) < dtype.lo or int(arr.max()) > dtype.hi):
        raise ValueError(f"values outside the {dtype.name.lower()} range")
    return np.ascontiguousarray(arr, dtype=dtype.np).tobytes()


def as_array(data: TensorData, desc: TensorDesc) -> npt.NDArray[Any]:
    """A read-only numpy view of a tensor's bytes (of :attr:`TensorDesc.np_dtype` and ``np_shape``)."""
    return np.frombuffer(data, dtype=desc.np_dtype).reshape(desc.np_shape)


# --- encoding -------------------------------------------------------------------------------------


def _u32s(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


def _dims(shape: tuple[int, ...]) -> bytes:
    return _u32s(*shape, *([0] * (MAX_RANK - len(shape))))


def encode_header(input_desc: TensorDesc, node_count: int, version: int = VERSION_1) -> bytes:
    head = MAGIC + _u32s(version, node_count, int(input_desc.dtype), input_desc.rank)
    return head + _dims(input_desc.shape) + bytes(HDR_RESERVED_SIZE)


def encode_node(node: Node) -> bytes:
    inputs = (*node.inputs, *([0] * (2 - len(node.inputs))))
    record = _u32s(int(node.op), len(node.inputs), *inputs, int(node.out.dtype), node.out.rank)
    record += _dims(node.out.shape)
    record += struct.pack(f"<{N_PARAMS}i", *node.params)
    record += b"".join(k if k is not None else ZERO_KEY for k in node.tensor_keys)
    assert len(record) == NODE_SIZE
    return record


def encode_manifest(input_desc: TensorDesc, nodes: Sequence[Node], version: int = VERSION_1) -> bytes:
    """The canonical manifest bytes (ml-spec §3); does not validate (see :func:`check_graph`)."""
    return encode_header(input_desc, len(nodes), version) + b"".join(encode_node(n) for n in nodes)


# --- decoding -------------------------------------------------------------------------------------


def _u32(data: bytes, offset: int) -> int:
    value: int = struct.unpack_from("<I", data, offset)[0]
    return value


def _dtype(code: int, version: int, where: str) -> DType:
    try:
        dtype = DType(code)
    except ValueError:
        raise UnknownDTypeError(f"{where}: unknown dtype code {code}") from None
    _check_dtype(dtype, version, where)
    return dtype


def _check_dtype(dtype: DType, version: int, where: str) -> None:
    """A value's dtype: int8/int32 in version 1, any but the block dtypes in version 2."""
    if version == VERSION_1 and dtype not in V1_DTYPES:
        raise UnknownDTypeError(f"{where}: dtype {dtype.name.lower()} needs a version-2 manifest")
    if dtype.is_blocks:
        raise UnknownDTypeError(f"{where}: {dtype.name.lower()} is for weights only, not for a value")


def max_nodes(version: int) -> int:
    return MAX_NODES if version == VERSION_1 else MAX_NODES_V2


def _desc(data: bytes, dtype_off: int, rank_off: int, dims_off: int, version: int, where: str) -> TensorDesc:
    dtype = _dtype(_u32(data, dtype_off), version, where)
    rank = _u32(data, rank_off)
    if not 1 <= rank <= MAX_RANK:
        raise InvalidFieldError(f"{where}: rank {rank}, want 1 … {MAX_RANK}")
    dims = struct.unpack_from(f"<{MAX_RANK}I", data, dims_off)
    if any(dims[rank:]):
        raise NonCanonicalError(f"{where}: non-zero dim past rank {rank}")
    return TensorDesc(dtype, tuple(dims[:rank]))


def manifest_version(data: bytes) -> int:
    """The ``version`` field of a manifest (not checked)."""
    return _u32(data, HDR_VERSION)


def decode_header(data: bytes) -> tuple[TensorDesc, int, int]:
    """``(input_desc, node_count, version)`` of a manifest header; checks magic, version, ranges, zero
    fields."""
    if len(data) < HEADER_SIZE:
        raise TruncatedError(f"manifest has {len(data)} bytes, shorter than its 64-byte header")
    if data[HDR_MAGIC : HDR_MAGIC + 4] != MAGIC:
        raise BadMagicError(f"manifest magic {bytes(data[:4])!r}, want {MAGIC!r}")
    version = _u32(data, HDR_VERSION)
    if version not in (VERSION_1, VERSION_2):
        raise UnknownVersionError(f"manifest version {version}, want {VERSION_1} or {VERSION_2}")
    count = _u32(data, HDR_NODE_COUNT)
    if not 1 <= count <= max_nodes(version):
        raise InvalidFieldError(f"node count {count}, want 1 … {max_nodes(version)} in version {version}")
    desc = _desc(data, HDR_INPUT_DTYPE, HDR_INPUT_RANK, HDR_INPUT_DIMS, version, "input")
    if any(data[HDR_RESERVED : HDR_RESERVED + HDR_RESERVED_SIZE]):
        raise NonCanonicalError("header: non-zero reserved bytes")
    return desc, count, version


def decode_node(record: bytes, index: int, version: int = VERSION_1) -> Node:
    """One node record; checks the op, input count, dtype codes and zero fields (not the op's rule)."""
    where = f"node {index}"
    code = _u32(record, NODE_OP)
    try:
        op = Op(code)
    except ValueError:
        raise UnknownOpError(f"{where}: unknown op code {code}") from None
    if version == VERSION_1 and op not in V1_OPS:
        raise UnknownOpError(f"{where}: op code {code} needs a version-2 manifest")
    where = f"node {index} ({op.name.lower()})"
    n_inputs = _u32(record, NODE_N_INPUTS)
    if n_inputs != OP_INPUTS[op]:
        raise InputCountError(f"{where}: {n_inputs} inputs, the op takes {OP_INPUTS[op]}")
    refs = struct.unpack_from("<2I", record, NODE_INPUTS)
    if n_inputs == 1 and refs[1] != 0:
        raise NonCanonicalError(f"{where}: input[1] is {refs[1]}, must be 0 for a one-input op")
    out = _desc(record, NODE_OUT_DTYPE, NODE_OUT_RANK, NODE_OUT_DIMS, version, f"{where} output")
    params = struct.unpack_from(f"<{N_PARAMS}i", record, NODE_PARAMS)
    used = OP_PARAMS[op]
    if any(params[used:]):
        raise NonCanonicalError(f"{where}: non-zero unused param p{used + _first_nonzero(params[used:])}")
    keys = tuple(
        bytes(record[NODE_TENSOR_KEYS + KEY_SIZE * j : NODE_TENSOR_KEYS + KEY_SIZE * (j + 1)])
        for j in range(N_TENSOR_KEYS)
    )
    tensor_keys = (keys[0] if any(keys[0]) else None, keys[1] if any(keys[1]) else None)
    return Node(op, tuple(refs[:n_inputs]), out, tuple(params), tensor_keys)


def _first_nonzero(values: Sequence[int]) -> int:
    return next(i for i, v in enumerate(values) if v)


def decode_manifest(data: bytes) -> tuple[TensorDesc, tuple[Node, ...]]:
    """``(input_desc, nodes)`` of a manifest, with every check of :func:`check_graph`."""
    data = bytes(data)
    input_desc, count, version = decode_header(data)
    size = manifest_size(count)
    if len(data) < size:
        raise TruncatedError(f"manifest has {len(data)} bytes, {count} nodes need {size}")
    if len(data) > size:
        raise TrailingDataError(f"manifest has {len(data)} bytes, {count} nodes need exactly {size}")
    nodes = tuple(decode_node(data[node_offset(i) : node_offset(i + 1)], i, version) for i in range(count))
    check_graph(input_desc, nodes, version)
    return input_desc, nodes


# --- the op rules (ml-spec §4) --------------------------------------------------------------------


def _check_desc_limits(desc: TensorDesc, where: str, version: int, *, param: bool = False) -> None:
    """Rank, dims and size of a value (``param``: of a parameter tensor, which may be a block tensor and
    up to 2^30 bytes in version 2)."""
    if not param:
        _check_dtype(desc.dtype, version, where)
    if not 1 <= desc.rank <= MAX_RANK:
        raise InvalidFieldError(f"{where}: rank {desc.rank}, want 1 … {MAX_RANK}")
    if any(d < 1 for d in desc.shape):
        raise InvalidFieldError(f"{where}: dims {list(desc.shape)}, every dim must be ≥ 1")
    limit = MAX_PARAM_BYTES_V2 if param and version == VERSION_2 else MAX_TENSOR_BYTES
    if desc.nbytes > limit:
        bits = limit.bit_length() - 1
        raise InvalidFieldError(f"{where}: {desc} has {desc.nbytes} bytes, more than 2^{bits}")


def _in_range(where: str, name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ParamRangeError(f"{where}: {name} = {value}, want {lo} … {hi}")


def _want_dtype(where: str, what: str, desc: TensorDesc, dtypes: tuple[DType, ...]) -> None:
    if desc.dtype not in dtypes:
        names = " or ".join(d.name.lower() for d in dtypes)
        raise ShapeMismatchError(f"{where}: {what} is {desc}, want {names}")


def _want_rank(where: str, what: str, desc: TensorDesc, rank: int) -> None:
    if desc.rank != rank:
        raise ShapeMismatchError(f"{where}: {what} is {desc}, want rank {rank}")


def _want_out(where: str, out: TensorDesc, want: TensorDesc) -> None:
    if out != want:
        raise ShapeMismatchError(f"{where}: output is {out}, the op gives {want}")


def conv_out_dim(size: int, kernel: int, stride: int, pad_a: int, pad_b: int) -> int | None:
    """``(size + pad_a + pad_b − kernel) / stride + 1`` when the division is exact and the kernel fits,
    else ``None``."""
    span = size + pad_a + pad_b - kernel
    if stride < 1 or span < 0 or span % stride:
        return None
    return span // stride + 1


def pool_out_dim(size: int, kernel: int, stride: int) -> int:
    """``(size − kernel) / stride + 1``, floor (VALID windows)."""
    return (size - kernel) // stride + 1


def expected_output(
    node: Node, ins: Sequence[TensorDesc], where: str, version: int = VERSION_1
) -> TensorDesc:
    """The output the op's rule gives for inputs ``ins`` in a ``version`` manifest; checks the inputs'
    dtypes and shapes and the ranges of the params. ``dense`` takes M and ``reshape`` its shape from
    ``node.out``."""
    op, p, out = node.op, node.p, node.out
    x = ins[0]
    if op is Op.DENSE:
        _want_dtype(where, "input", x, (DType.INT8,))
        _in_range(where, "zx", p[0], -128, 127)
        _check_bound_mode(where, p[1], version)
        _want_rank(where, "output", out, 1)
        return TensorDesc(DType.INT32, out.shape)
    if op is Op.CONV2D:
        _want_dtype(where, "input", x, (DType.INT8,))
        _want_rank(where, "input", x, 3)
        _want_rank(where, "output", out, 3)
        zx, kh, kw, sh, sw, pt, pl, pb, pr, bound = p[:10]
        _in_range(where, "zx", zx, -128, 127)
        _check_bound_mode(where, bound, version)
        _in_range(where, "KH", kh, 1, MAX_FILTER_ELEMS)
        _in_range(where, "KW", kw, 1, MAX_FILTER_ELEMS)
        _in_range(where, "stride_h", sh, 1, INT32_MAX)
        _in_range(where, "stride_w", sw, 1, INT32_MAX)
        _in_range(where, "pad_top", pt, 0, kh - 1)
        _in_range(where, "pad_bottom", pb, 0, kh - 1)
        _in_range(where, "pad_left", pl, 0, kw - 1)
        _in_range(where, "pad_right", pr, 0, kw - 1)
        h, w, c = x.shape
        if kh * kw * c > MAX_FILTER_ELEMS:
            raise ParamRangeError(f"{where}: KH·KW·C = {kh * kw * c}, more than {MAX_FILTER_ELEMS}")
        oh = conv_out_dim(h, kh, sh, pt, pb)
        ow = conv_out_dim(w, kw, sw, pl, pr)
        if oh is None or ow is None:
            raise ShapeMismatchError(
                f"{where}: window {kh}x{kw} stride {sh}x{sw} pads {pt},{pl},{pb},{pr} does not tile "
                f"input {x} exactly"
            )
        return TensorDesc(DType.INT32, (oh, ow, out.shape[2]))
    if op is Op.REQUANTIZE:
        _want_dtype(where, "input", x, (DType.INT32,))
        m0, t, zy, lo, hi, mode = p
        if node.tensor_keys[0] is None:
            _in_range(where, "M0", m0, 1, INT32_MAX)
            _in_range(where, "t", t, 1, 62)
        else:  # per channel: (M0_c, t_c) in the table, checked with the tensors (check_tensors)
            if version == VERSION_1:
                raise ParamRangeError(f"{where}: a per-channel table needs a version-2 manifest")
            if m0 != 0 or t != 0:
                raise ParamRangeError(f"{where}: M0 = {m0}, t = {t} with a per-channel table, want 0, 0")
        _in_range(where, "zy", zy, -128, 127)
        _in_range(where, "lo", lo, -128, 127)
        _in_range(where, "hi", hi, lo, 127)
        _in_range(where, "mode", mode, 0, 2)
        if version == VERSION_1 and mode != 0:
            raise ParamRangeError(f"{where}: mode = {mode} needs a version-2 manifest")
        if mode == 2 and node.tensor_keys[0] is None:  # float32: M0·2^−t exact in float32
            _in_range(where, "M0", m0, 1, F32_M0_MAX)
        return TensorDesc(DType.INT8, x.shape)
    if op is Op.ADD:
        b = ins[1]
        _want_dtype(where, "input a", x, (DType.INT8,))
        _want_dtype(where, "input b", b, (DType.INT8,))
        if b.shape != x.shape:
            raise ShapeMismatchError(f"{where}: inputs {x} and {b} differ in shape")
        za, ma, zb, mb, t, zy, lo, hi = p
        for name, value in (("za", za), ("zb", zb), ("zy", zy), ("lo", lo)):
            _in_range(where, name, value, -128, 127)
        _in_range(where, "hi", hi, lo, 127)
        _in_range(where, "Ma", ma, 0, INT32_MAX)
        _in_range(where, "Mb", mb, 0, INT32_MAX)
        _in_range(where, "t", t, 1, 62)
        return x
    if op is Op.RELU:
        _want_dtype(where, "input", x, (DType.INT8, DType.INT32))
        _in_range(where, "z", p[0], x.dtype.lo, x.dtype.hi)
        return x
    if op in (Op.MAXPOOL, Op.AVGPOOL):
        _want_dtype(where, "input", x, (DType.INT8,))
        _want_rank(where, "input", x, 3)
        kh, kw, sh, sw = p
        h, w, c = x.shape
        _in_range(where, "KH", kh, 1, h)
        _in_range(where, "KW", kw, 1, w)
        _in_range(where, "stride_h", sh, 1, INT32_MAX)
        _in_range(where, "stride_w", sw, 1, INT32_MAX)
        return TensorDesc(DType.INT8, (pool_out_dim(h, kh, sh), pool_out_dim(w, kw, sw), c))
    if op is Op.RESHAPE:
        if out.elems != x.elems:
            raise ShapeMismatchError(f"{where}: output {out} has {out.elems} elements, input {x} {x.elems}")
        if x.dtype.is_rows and out.shape[-1] != x.shape[-1]:
            raise ShapeMismatchError(f"{where}: reshaping {x} to {out} splits its rows; keep the last dim")
        return TensorDesc(x.dtype, out.shape)
    if op is Op.ARGMAX:
        _want_dtype(where, "input", x, (DType.INT8, DType.INT32))
        return TensorDesc(DType.INT32, (1,))
    if op is Op.LUT:
        _want_dtype(where, "input", x, (DType.INT8,))
        return x
    if op is Op.SOFTMAX:
        _want_dtype(where, "input", x, (DType.INT8,))
        _want_rank(where, "input", x, 1)
        if x.shape[0] > MAX_SOFTMAX_N:
            raise ShapeMismatchError(f"{where}: input {x} has more than {MAX_SOFTMAX_N} elements")
        return x
    return _expected_v2(node, ins, where)


def _weight_params(where: str, p: tuple[int, ...]) -> None:
    """``wtype`` and ``F`` of a node that reads a block tensor."""
    _in_range(where, "wtype", p[0], int(DType.Q4_1), int(DType.Q8_0))
    _in_range(where, "F", p[1], 0, blocks.MAX_F)


def _want_rows_of(where: str, what: str, k: int, limit: int) -> None:
    if k % blocks.BLOCK:
        raise BlockShapeError(f"{where}: {what} {k} is not a multiple of 32 (whole GGUF blocks)")
    if k > limit:
        raise ShapeMismatchError(f"{where}: {what} {k} is more than {limit}")


def _want_shard(where: str, row0: int, m: int, mt: int) -> None:
    _in_range(where, "Mt", mt, 1, INT32_MAX)
    _in_range(where, "row0", row0, 0, INT32_MAX)
    if row0 + m > mt:
        raise ShardError(f"{where}: rows {row0} … {row0 + m - 1} are outside the weight's {mt} rows")


def _want_same(where: str, a: TensorDesc, b: TensorDesc) -> None:
    if a != b:
        raise ShapeMismatchError(f"{where}: inputs {a} and {b} differ")


def _expected_v2(node: Node, ins: Sequence[TensorDesc], where: str) -> TensorDesc:
    """The op rules of ml-spec §10.2."""
    op, p, out = node.op, node.p, node.out
    x = ins[0]
    rows_in = (DType.R16, DType.R8)
    if op in (Op.QDENSE, Op.QDENSE_ARGMAX):
        _want_dtype(where, "input", x, rows_in)
        _want_rank(where, "input", x, 2)
        _weight_params(where, p)
        _want_rows_of(where, "K", x.shape[1], MAX_QDENSE_K)
        if op is Op.QDENSE_ARGMAX:
            _in_range(where, "M", p[4], 1, INT32_MAX)
            _want_shard(where, p[3], p[4], p[2])
            return TensorDesc(DType.INT32, (x.shape[0], ARGMAX_RECORD))
        _want_dtype(where, "output", out, (DType.R16, DType.INT32))
        _want_rank(where, "output", out, 2)
        _want_shard(where, p[3], out.shape[1], p[2])
        _in_range(where, "R", p[4], 0, MAX_OUT_FRAC if out.dtype is DType.INT32 else 0)
        return TensorDesc(out.dtype, (x.shape[0], out.shape[1]))
    if op is Op.ARGMAX_MERGE:
        for what, d in (("input a", x), ("input b", ins[1])):
            _want_dtype(where, what, d, (DType.INT32,))
            if d.rank != 2 or d.shape[1] != ARGMAX_RECORD:
                raise ShapeMismatchError(f"{where}: {what} is {d}, want argmax records int32[T, 3]")
        _want_same(where, x, ins[1])
        return x
    if op is Op.EMBEDDING:
        _want_dtype(where, "input", x, (DType.INT32,))
        if not (x.rank == 1 or (x.rank == 2 and x.shape[1] == ARGMAX_RECORD)):
            raise ShapeMismatchError(f"{where}: input is {x}, want ids int32[T] or records int32[T, 3]")
        _weight_params(where, p)
        _in_range(where, "V", p[2], 1, INT32_MAX)
        _in_range(where, "R", p[3], 0, MAX_OUT_FRAC)
        _want_rank(where, "output", out, 2)
        _want_rows_of(where, "H", out.shape[1], INT32_MAX)
        return TensorDesc(DType.INT32, (x.shape[0], out.shape[1]))
    if op is Op.RMSNORM:
        _want_dtype(where, "input", x, (DType.INT32,))
        _want_rank(where, "input", x, 2)
        if x.shape[1] > MAX_NORM_H:
            raise ShapeMismatchError(f"{where}: rows of {x.shape[1]} are more than {MAX_NORM_H}")
        _in_range(where, "Gf", p[0], 0, MAX_OUT_FRAC)
        _in_range(where, "eps", p[1], 0, MAX_NORM_EPS)
        return TensorDesc(DType.R16, x.shape)
    if op is Op.ROPE:
        _want_dtype(where, "input", x, (DType.R16,))
        _want_rank(where, "input", x, 2)
        hd, pos0, npos = p
        _in_range(where, "hd", hd, 2, MAX_HEAD_DIM)
        if hd % 2 or x.shape[1] % hd:
            raise ShapeMismatchError(f"{where}: hd = {hd} must be even and divide the row of {x}")
        _in_range(where, "pos0", pos0, 0, MAX_ROPE_P)
        _in_range(where, "P", npos, pos0 + x.shape[0], MAX_ROPE_P)
        return x
    if op is Op.ATTENTION:
        kv = ins[1]
        _want_dtype(where, "query", x, (DType.R16,))
        _want_dtype(where, "kv", kv, (DType.R16,))
        _want_rank(where, "query", x, 2)
        if kv.rank != 3 or kv.shape[1] != 2:
            raise ShapeMismatchError(f"{where}: kv is {kv}, want r16[L, 2, nkv·hd]")
        hd, mul, sa = p
        _in_range(where, "hd", hd, 1, MAX_HEAD_DIM)
        _in_range(where, "mul", mul, 1, MAX_ATTENTION_MUL)
        _in_range(where, "sa", sa, 0, MAX_SHIFT)
        wq, wkv = x.shape[1], kv.shape[2]
        if wq % hd or wkv % hd or (wq // hd) % (wkv // hd):
            raise ShapeMismatchError(f"{where}: rows of {wq}, {wkv} are not nh, nkv heads of {hd}, nkv | nh")
        if not x.shape[0] <= kv.shape[0] <= MAX_ATTENTION_L:
            raise ShapeMismatchError(f"{where}: {x.shape[0]} queries need T ≤ L ≤ 2^16, kv has {kv.shape[0]}")
        return x
    if op is Op.SWIGLU:
        _want_dtype(where, "gate", x, (DType.R16,))
        _want_rank(where, "gate", x, 2)
        _want_same(where, x, ins[1])
        return x
    if op is Op.QUANTIZE:
        _want_dtype(where, "input", x, (DType.INT32, DType.R16))
        if x.dtype is DType.INT32:
            _want_dtype(where, "output", out, (DType.R16, DType.R8))
            _in_range(where, "fx", p[0], -MAX_SHIFT, MAX_SHIFT)
        else:
            _want_dtype(where, "output", out, (DType.R8,))
            _in_range(where, "fx", p[0], 0, 0)
        return TensorDesc(out.dtype, x.shape)
    if op is Op.ADD32:
        _want_dtype(where, "input a", x, (DType.INT32,))
        _want_same(where, x, ins[1])
        return x
    if op is Op.CONCAT:
        b = ins[1]
        axis = p[0]
        _in_range(where, "axis", axis, 0, x.rank - (2 if x.dtype.is_rows else 1))
        if (
            b.dtype != x.dtype
            or b.rank != x.rank
            or any(da != db for i, (da, db) in enumerate(zip(x.shape, b.shape, strict=True)) if i != axis)
        ):
            raise ShapeMismatchError(f"{where}: {x} and {b} differ beyond axis {axis}")
        shape = list(x.shape)
        shape[axis] += b.shape[axis]
        return TensorDesc(x.dtype, tuple(shape))
    if op is Op.SLICE:
        if x.dtype.is_rows and x.rank < 2:
            raise ShapeMismatchError(f"{where}: slicing {x} would cut its only row")
        _in_range(where, "r0", p[0], 0, x.shape[0] - 1)
        if p[0] + out.shape[0] > x.shape[0]:
            raise ParamRangeError(f"{where}: rows {p[0]} … {p[0] + out.shape[0] - 1} are outside {x}")
        return TensorDesc(x.dtype, (out.shape[0], *x.shape[1:]))
    if op is Op.EMIT:
        _want_dtype(where, "transcript", x, (DType.INT32,))
        _want_rank(where, "transcript", x, 1)
        if x.shape[0] < TRANSCRIPT_HEADER + 2:
            raise ShapeMismatchError(f"{where}: a transcript holds P, n and at least two tokens, not {x}")
        if ins[1] != TensorDesc(DType.INT32, (1, ARGMAX_RECORD)):
            raise ShapeMismatchError(f"{where}: emit takes one argmax record int32 [1, 3], not {ins[1]}")
        _in_range(where, "t", p[0], 0, x.shape[0] - TRANSCRIPT_HEADER - 2)
        return x
    raise UnknownOpError(f"{where}: unknown op {op}")  # pragma: no cover - Op is closed


def param_tensors(node: Node, ins: Sequence[TensorDesc]) -> tuple[TensorDesc | None, TensorDesc | None]:
    """The descs of the node's parameter tensors as its op requires them (``None``: no tensor there)."""
    op, out = node.op, node.out
    if op is Op.DENSE:
        w = TensorDesc(DType.INT8, (out.shape[0], ins[0].elems))
    elif op is Op.CONV2D:
        w = TensorDesc(DType.INT8, (out.shape[2], node.params[1], node.params[2], ins[0].shape[2]))
    elif op is Op.LUT:
        return TensorDesc(DType.INT8, (256,)), None
    elif op is Op.SOFTMAX:
        return TensorDesc(DType.INT32, (256,)), None
    elif op in (Op.QDENSE, Op.QDENSE_ARGMAX):
        return TensorDesc(DType(node.params[0]), (node.params[2], ins[0].shape[1])), None
    elif op is Op.EMBEDDING:
        return TensorDesc(DType(node.params[0]), (node.params[2], out.shape[1])), None
    elif op is Op.RMSNORM:
        return TensorDesc(DType.INT16, (ins[0].shape[1],)), None
    elif op is Op.ROPE:
        return TensorDesc(DType.INT32, (node.params[2], node.params[0] // 2, 2)), None
    elif op is Op.ATTENTION:
        return TensorDesc(DType.INT32, (EXP2_TABLE_LEN,)), None
    elif op is Op.SWIGLU:
        return TensorDesc(DType.INT32, (SIGMOID_TABLE_LEN,)), None
    elif op is Op.REQUANTIZE and node.tensor_keys[0] is not None:
        return TensorDesc(DType.INT32, (ins[0].shape[-1], 2)), None  # (M0_c, t_c) per channel
    else:
        return None, None
    bias = TensorDesc(DType.INT32, (w.shape[0],)) if node.tensor_keys[1] is not None else None
    return w, bias


def _where(index: int, node: Node) -> str:
    return f"node {index} ({node.op.name.lower()})"


def check_node(index: int, node: Node, values: Sequence[TensorDesc], version: int = VERSION_1) -> TensorDesc:
    """Check node ``index`` of a ``version`` manifest against the descs of values ``0 … index`` (input
    refs, the op's rule, the tensor-key presence, the limits, the step bound of ml-spec §9); return its
    output desc."""
    where = _where(index, node)
    if version == VERSION_1 and node.op not in V1_OPS:
        raise UnknownOpError(f"{where}: the op needs a version-2 manifest")
    if len(node.inputs) != OP_INPUTS[node.op]:
        raise InputCountError(f"{where}: {len(node.inputs)} inputs, the op takes {OP_INPUTS[node.op]}")
    if len(node.params) != N_PARAMS or any(node.params[OP_PARAMS[node.op] :]):
        raise NonCanonicalError(f"{where}: params must be {N_PARAMS} ints, unused ones 0")
    if any(not INT32_MIN <= v <= INT32_MAX for v in node.params):
        raise ParamRangeError(f"{where}: a param does not fit in int32")
    for ref in node.inputs:
        if not 0 <= ref <= index:
            raise ForwardReferenceError(
                f"{where}: input value {ref} is not computed before it (values 0 … {index} are)"
            )
    _check_desc_limits(node.out, f"{where} output", version)
    ins = [values[ref] for ref in node.inputs]
    want = expected_output(node, ins, where, version)
    _want_out(where, node.out, want)
    rule = OP_TENSORS.get(node.op)
    first, second = node.tensor_keys
    if rule is None:
        if first is not None or second is not None:
            raise NonCanonicalError(f"{where}: the op takes no tensor, tensor keys must be zero")
    else:
        if rule[0] and first is None:
            raise NonCanonicalError(f"{where}: tensor_key[0] is zero, the op needs a tensor")
        if rule[1] and second is not None:
            raise NonCanonicalError(f"{where}: tensor_key[1] must be zero for this op")
    for key in node.tensor_keys:
        if key is not None and len(key) != KEY_SIZE:
            raise NonCanonicalError(f"{where}: a tensor key has {len(key)} bytes, want 32")
    for j, desc in enumerate(param_tensors(node, ins)):
        if desc is not None:
            _check_desc_limits(desc, f"{where} tensor {j}", version, param=True)
    from opml.ml.cost import check_node_cost  # cost imports this module

    check_node_cost(index, node, ins, where)
    return node.out


def check_graph(input_desc: TensorDesc, nodes: Sequence[Node], version: int = VERSION_1) -> list[TensorDesc]:
    """Check the whole graph of a ``version`` manifest without its tensors (the model's step bound
    included); return the descs of values ``0 … N``."""
    if version not in (VERSION_1, VERSION_2):
        raise UnknownVersionError(f"manifest version {version}, want {VERSION_1} or {VERSION_2}")
    _check_desc_limits(input_desc, "input", version)
    if not 1 <= len(nodes) <= max_nodes(version):
        raise InvalidFieldError(f"node count {len(nodes)}, want 1 … {max_nodes(version)} (version {version})")
    values = [input_desc]
    for i, node in enumerate(nodes):
        values.append(check_node(i, node, values, version))
    from opml.ml.cost import check_model_cost  # cost imports this module

    check_model_cost(values, nodes)
    return values


def named_keys(nodes: Iterable[Node]) -> list[bytes]:
    """The distinct tensor keys of the manifest in the order in which it first names them."""
    seen: dict[bytes, None] = {}
    for node in nodes:
        for key in node.tensor_keys:
            if key is not None:
                seen.setdefault(key, None)
    return list(seen)


def check_tensors(
    nodes: Sequence[Node],
    values: Sequence[TensorDesc],
    tensors: Mapping[bytes, TensorData],
    *,
    verify_keys: bool,
) -> None:
    """Check each node's parameter tensors: present, size matching the op's shape, the tables' ranges,
    the dense/conv2d overflow bound, block scales (ml-spec §1, §10.3); with ``verify_keys`` also each
    tensor's bytes against its key."""
    if verify_keys:
        for key in named_keys(nodes):
            if key in tensors and tensor_key(tensors[key]) != key:
                raise TensorKeyMismatchError(f"tensor 0x{key.hex()}: its bytes have a different key")
    # A tensor shared by many nodes is checked once per way it is read: (key, op, wtype, F) for block
    # weights (the same bytes are other scales as q4_1 and as q8_0, or at another F), (key, op) for
    # tables; the same bytes as another op's tensor are checked again by that op's rule.
    checked: set[tuple[bytes, int, int, int]] = set()
    for i, node in enumerate(nodes):
        where = _where(i, node)
        ins = [values[ref] for ref in node.inputs]
        descs = param_tensors(node, ins)
        for j, (named, desc) in enumerate(zip(node.tensor_keys, descs, strict=True)):
            if named is None or desc is None:
                continue
            if named not in tensors:
                raise TensorSetError(f"{where}: tensor 0x{named.hex()} is missing")
            size = len(tensors[named])
            if desc.dtype.is_blocks and size % blocks.block_bytes(desc.dtype is DType.Q4_1):
                raise BlockShapeError(f"{where}: tensor {j} has {size} bytes, not a whole number of blocks")
            if size != desc.nbytes:
                raise TensorSizeError(f"{where}: tensor {j} has {size} bytes, {desc} needs {desc.nbytes}")
        first = node.tensor_keys[0]
        if first is not None and node.op not in V1_OPS:
            read_as = (node.params[0], node.params[1]) if node.op in _BLOCK_OPS else (-1, -1)
            check = (first, int(node.op), *read_as)
            if check not in checked:
                _check_v2_tensor(node, tensors[first], where)
                checked.add(check)
        if node.op is Op.REQUANTIZE and first is not None:
            _check_channels(tensors[first], where, node.p[5])
        if node.op is Op.SOFTMAX:
            assert node.tensor_keys[0] is not None
            e = np.frombuffer(tensors[node.tensor_keys[0]], dtype="<i4")
            if int(e.min()) < 0 or int(e.max()) > SOFTMAX_E_MAX:
                raise ParamRangeError(f"{where}: a table value is outside 0 … 2^16")
        if node.op in (Op.DENSE, Op.CONV2D):
            w, w_key, bias_key = descs[0], node.tensor_keys[0], node.tensor_keys[1]
            assert w is not None and w_key is not None
            bias = None if bias_key is None else tensors[bias_key]
            _check_accumulator_bound(where, tensors[w_key], w.shape[0], bias, node.p[_BOUND[node.op]])


_BOUND = {Op.DENSE: 1, Op.CONV2D: 9}
"""The index of the ``bound`` param of dense and conv2d."""


def _check_bound_mode(where: str, bound: int, version: int) -> None:
    _in_range(where, "bound", bound, 0, 1)
    if version == VERSION_1 and bound != 0:
        raise ParamRangeError(f"{where}: bound = 1 (per row) needs a version-2 manifest")


ROW_SUM_PIECE = 1 << 22
"""Weights whose magnitudes are summed at a time (the int16 copy's memory, 8 MiB)."""


def _bias_magnitudes(bias: TensorData | None) -> npt.NDArray[np.int64]:
    """``|bias|`` of an int32 bias (empty without one)."""
    return np.abs(np.frombuffer(bias or b"", dtype="<i4").astype(np.int64))


def tensor_wide_bound(k: int, bias: TensorData | None) -> int:
    """dense/conv2d's overflow bound with ``bound`` = 0 (ml-spec §4): ``K·255·128 + max|bias|``."""
    return k * MAX_PRODUCT + int(_bias_magnitudes(bias).max(initial=0))


def row_bounds(w: TensorData, rows: int, bias: TensorData | None) -> npt.NDArray[np.int64]:
    """dense/conv2d's overflow bound with ``bound`` = 1 for W int8 ``[rows, K]``, row by row (ml-spec §4):
    ``255·Σ_k |W[r, k]| + |bias[r]|``; W is read in pieces of whole rows."""
    wq = np.frombuffer(w, dtype=np.int8).reshape(rows, -1)
    sums = np.empty(rows, np.int64)
    step = max(1, ROW_SUM_PIECE // wq.shape[1])
    for r in range(0, rows, step):
        sums[r : r + step] = np.abs(wq[r : r + step].astype(np.int16)).sum(axis=1, dtype=np.int64)
    return 255 * sums + (_bias_magnitudes(bias) if bias is not None else 0)


def _check_accumulator_bound(
    where: str, w: TensorData, rows: int, bias: TensorData | None, mode: int
) -> None:
    k = len(w) // rows
    if mode == 0:
        tensor_wide = tensor_wide_bound(k, bias)
        if tensor_wide > ACC_BOUND:
            per_row_holds = int(row_bounds(w, rows, bias).max()) <= ACC_BOUND
            advice = " (bound = 1, in a version-2 manifest, checks it per row)" if per_row_holds else ""
            raise OverflowBoundError(
                f"{where}: K·255·128 + max|bias| = {tensor_wide} > 2^31 − 1 (K = {k}){advice}"
            )
        return
    per_row = row_bounds(w, rows, bias)
    if int(per_row.max()) > ACC_BOUND:
        r = int(per_row.argmax())
        raise OverflowBoundError(
            f"{where}: row {r}: 255·Σ|W[r]| + |bias[r]| = {int(per_row[r])} > 2^31 − 1 (K = {k})"
        )


_BLOCK_OPS = (Op.QDENSE, Op.QDENSE_ARGMAX, Op.EMBEDDING)
_TABLE_RANGES = {Op.ROPE: (-TABLE_ONE, TABLE_ONE), Op.ATTENTION: (0, TABLE_ONE), Op.SWIGLU: (0, TABLE_ONE)}


F32_M0_MAX = (1 << 24) - 1
"""requantize's mode 2 (float32): the largest M0, so that ``M0·2^−t`` is exact in float32."""


def _check_channels(data: TensorData, where: str, mode: int = 0) -> None:
    """A per-channel requantize table ``[C, 2]``: each ``M0_c ∈ [1, 2^31 − 1]`` (``< 2^24`` in mode 2),
    ``t_c ∈ [1, 62]``."""
    table = np.frombuffer(data, dtype="<i4").reshape(-1, 2)
    m0_max = F32_M0_MAX if mode == 2 else INT32_MAX
    bad = np.flatnonzero((table[:, 0] < 1) | (table[:, 0] > m0_max) | (table[:, 1] < 1) | (table[:, 1] > 62))
    if bad.size:
        c = int(bad[0])
        _in_range(f"{where} channel {c}", "M0", int(table[c, 0]), 1, m0_max)
        _in_range(f"{where} channel {c}", "t", int(table[c, 1]), 1, 62)


def _check_v2_tensor(node: Node, data: TensorData, where: str) -> None:
    """A version-2 op's tensor: the block scales at the node's ``F``, or a Q30 table's range."""
    if node.op in _BLOCK_OPS:
        blocks.check_scales(data, node.params[0] == DType.Q4_1, node.params[1], f"{where} tensor 0")
        return
    bounds = _TABLE_RANGES.get(node.op)
    if bounds is None:
        return
    t = np.frombuffer(data, dtype="<i4")
    if int(t.min()) < bounds[0] or int(t.max()) > bounds[1]:
        raise ParamRangeError(f"{where}: a table value is outside {bounds[0]} … {bounds[1]}")
    if node.op is Op.ATTENTION and int(t[0]) != TABLE_ONE:
        raise ParamRangeError(f"{where}: the exp2 table must start with 2^30, it starts with {int(t[0])}")


# --- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Model:
    """A valid model: its graph and the bytes of every tensor it names, by key.

    Construct with :meth:`create` (which checks everything) or :func:`read_model`. A tensor is
    ``bytes`` or, for a model decoded from a file, a read-only memoryview of the file's bytes or of its
    mapping (which the view keeps open): the model's bytes do not change as long as the file is not
    changed in place.
    """

    input: TensorDesc
    nodes: tuple[Node, ...]
    tensors: Mapping[bytes, TensorData]
    values: tuple[TensorDesc, ...]
    """Descs of values ``0 … N`` (value 0 the input, value ``i + 1`` node ``i``'s output)."""
    manifest: bytes
    source: TensorSource | None = field(default=None, repr=False)
    """Where the tensors are in the model file it was read from (``None``: built in memory)."""
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def create(
        cls,
        input_desc: TensorDesc,
        nodes: Sequence[Node],
        tensors: Mapping[bytes, TensorData | bytearray],
        *,
        verify_keys: bool = True,
        version: int = VERSION_1,
        source: TensorSource | None = None,
    ) -> Model:
        """Check graph and tensors and build the model (a ``version`` manifest); ``tensors`` may hold
        extra keys (dropped). Bytes and read-only byte memoryviews are kept as they are (no copy),
        anything mutable is copied, so that the checked bytes are the model's."""
        nodes = tuple(nodes)
        values = check_graph(input_desc, nodes, version)
        kept = {k: _frozen(tensors[k]) for k in named_keys(nodes) if k in tensors}
        check_tensors(nodes, values, kept, verify_keys=verify_keys)
        manifest = encode_manifest(input_desc, nodes, version)
        return cls(input_desc, nodes, kept, tuple(values), manifest, source)

    @property
    def version(self) -> int:
        """The manifest's version (1 or 2)."""
        return manifest_version(self.manifest)

    @property
    def output(self) -> TensorDesc:
        return self.values[-1]

    @property
    def commitment(self) -> bytes:
        """The model commitment: the chunk-Merkle key of the manifest."""
        key = self._cache.get("commitment")
        if key is None:
            key = self._cache["commitment"] = tensor_key(self.manifest)
        assert isinstance(key, bytes)
        return key

    def tensor(self, key: bytes) -> TensorData:
        """The bytes of the tensor with ``key``."""
        return self.tensors[key]

    def param(self, index: int, j: int) -> npt.NDArray[Any] | None:
        """Node ``index``'s parameter tensor ``j`` as a read-only array of its op's shape, or ``None``."""
        node = self.nodes[index]
        desc = param_tensors(node, [self.values[r] for r in node.inputs])[j]
        key = node.tensor_keys[j]
        if desc is None or key is None:
            return None
        return as_array(self.tensors[key], desc)

    def param_count(self, index: int) -> int:
        """Number of parameter elements of node ``index`` (weights + bias, or the table)."""
        node = self.nodes[index]
        descs = param_tensors(node, [self.values[r] for r in node.inputs])
        return sum(d.elems for d, key in zip(descs, node.tensor_keys, strict=True) if d is not None and key)

    def check_input(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """``x`` as an array of the input dtype and shape; :class:`InvalidInputError` if it is not one."""
        return check_value(x, self.input, "input")

    def file_bytes(self) -> bytes:
        return encode_model_file(self)


def _frozen(data: TensorData | bytearray) -> TensorData:
    """``data`` itself if it is bytes or a read-only flat byte memoryview, else a bytes copy."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, memoryview) and data.readonly and data.format == "B" and data.ndim == 1:
        return data
    return bytes(data)


def check_value(x: Any, desc: TensorDesc, what: str) -> npt.NDArray[Any]:
    """``x`` as a ``desc`` array: exact shape, an integer (or bool-free) dtype whose values fit; a
    row-scaled value must already be an array of :attr:`TensorDesc.np_dtype`."""
    arr = np.asarray(x)
    if desc.dtype.is_rows:
        if arr.dtype != desc.np_dtype or arr.shape != desc.np_shape:
            raise InvalidInputError(f"{what} is not an array of {desc}'s rows (exponent, values)")
        return arr
    if arr.shape != desc.shape:
        raise InvalidInputError(f"{what} has shape {list(arr.shape)}, the model takes {desc}")
    if arr.dtype == desc.dtype.np:
        return arr
    if arr.dtype.kind not in "iu":
        raise InvalidInputError(f"{what} has dtype {arr.dtype}, the model takes {desc}")
    if arr.size and (int(arr.min()) < desc.dtype.lo or int(arr.max()) > desc.dtype.hi):
        raise InvalidInputError(f"{what} has values outside the {desc.dtype.name.lower()} range")
    return arr.astype(desc.dtype.np)


# --- the model file -------------------------------------------------------------------------------


def encode_model_file(model: Model) -> bytes:
    """The ``*.opml`` bytes of a model (ml-spec §3.3)."""
    parts: list[TensorData] = []
    _model_file_parts(model.manifest, _entries(model), parts.append)
    return b"".join(parts)


TensorEntry: TypeAlias = tuple[bytes, int, Callable[[], Iterable[TensorData]]]
"""A tensor of a model file to write: its key, its size and a function that yields its bytes in pieces."""


def _entries(model: Model) -> list[TensorEntry]:
    tensors = model.tensors
    return [(key, len(tensors[key]), partial(_one, tensors[key])) for key in named_keys(model.nodes)]


def _one(data: TensorData) -> list[TensorData]:
    return [data]


def _model_file_parts(
    manifest: bytes, entries: Sequence[TensorEntry], write: Callable[[TensorData], object]
) -> None:
    """Pass the model file's bytes to ``write`` in order: header, manifest, then each entry's key, size
    and pieces (which must add up to its size: a ``ValueError`` otherwise)."""
    write(FILE_MAGIC + _u32s(FILE_VERSION, len(manifest), len(entries)))
    write(manifest)
    for key, size, pieces in entries:
        write(key + _u32s(size))
        written = 0
        for piece in pieces():
            view = memoryview(piece).cast("B")
            written += len(view)
            write(view)
        if written != size:
            raise ValueError(f"tensor 0x{key.hex()[:16]}…: {written} bytes written, its entry says {size}")


def decode_model_file(
    data: bytes | bytearray | memoryview | mmap.mmap,
    *,
    verify_keys: bool = True,
    file: tuple[Path, tuple[int, int, int, int]] | None = None,
) -> Model:
    """Read and check a whole model file; ``verify_keys=False`` skips only hashing each tensor against
    its key (:func:`read_model` does so for a file state it has verified). The tensors are slices of
    ``data`` if it is bytes or read-only (a read-only mapping: no copy), else copies; ``file`` (the path
    and identity of the file ``data`` is) makes the model's :class:`TensorSource`."""
    mv = memoryview(data).cast("B")
    if len(mv) < len(FILE_MAGIC) or bytes(mv[: len(FILE_MAGIC)]) != FILE_MAGIC:
        raise BadMagicError(f"not an opML model file (magic {bytes(mv[:8])!r}, want {FILE_MAGIC!r})")
    if len(mv) < FILE_HEADER_SIZE:
        raise TruncatedError(f"model file has {len(mv)} bytes, shorter than its 20-byte header")
    version, msize, count = struct.unpack_from("<3I", mv, FILE_VERSION_OFFSET)
    if version != FILE_VERSION:
        raise UnknownVersionError(f"model file version {version}, want {FILE_VERSION}")
    end = FILE_HEADER_SIZE + msize
    if len(mv) < end:
        raise TruncatedError(f"model file ends inside its {msize}-byte manifest")
    manifest = bytes(mv[FILE_HEADER_SIZE:end])
    input_desc, nodes = decode_manifest(manifest)
    version = manifest_version(manifest)
    expected = named_keys(nodes)
    if count != len(expected):
        raise TensorSetError(f"model file has {count} tensors, the manifest names {len(expected)}")
    tensors: dict[bytes, TensorData] = {}
    offsets: dict[bytes, int] = {}
    pos = end
    for n, want in enumerate(expected):
        if len(mv) < pos + TENSOR_ENTRY_HEADER:
            raise TruncatedError(f"model file ends inside the header of tensor {n}")
        key = bytes(mv[pos : pos + KEY_SIZE])
        (size,) = struct.unpack_from("<I", mv, pos + KEY_SIZE)
        pos += TENSOR_ENTRY_HEADER
        if key != want:
            if key in tensors:
                why = "is named again"
            elif key in expected:
                why = "is out of the manifest's order"
            else:
                why = "is not named by the manifest"
            raise TensorSetError(f"tensor {n} of the file (0x{key.hex()[:16]}…) {why}")
        if len(mv) < pos + size:
            raise TruncatedError(f"tensor {n} has {len(mv) - pos} of its {size} bytes")
        tensors[key] = mv[pos : pos + size]  # a view; Model.create copies it if ``data`` is writable
        offsets[key] = pos
        pos += size
    if pos != len(mv):
        raise TrailingDataError(f"{len(mv) - pos} bytes follow the last tensor")
    source = None if file is None else TensorSource(file[0], offsets, file[1])
    model = Model.create(input_desc, nodes, tensors, verify_keys=verify_keys, version=version, source=source)
    if model.manifest != manifest:  # every field is checked above; this only guards the encoder
        raise NonCanonicalError("the manifest does not re-encode to the same bytes")
    return model


def write_model(model: Model, path: str | Path) -> None:
    """Write the model file to a temporary file and rename it over ``path``: a model read from the old
    file keeps its (mapped) bytes, and the new file is a new inode for the cache of :func:`read_model`."""
    write_model_file(path, model.manifest, _entries(model))


def write_model_file(path: str | Path, manifest: bytes, entries: Sequence[TensorEntry]) -> None:
    """Write a model file from its manifest and its tensors (in the manifest's order, each streamed in
    pieces: no more of it in memory than a piece) to a temporary file renamed over ``path``. Nothing is
    checked here: :func:`read_model` checks the file it wrote."""
    target = Path(os.path.realpath(path))  # through a symlink, as writing in place did
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            _model_file_parts(manifest, entries, f.write)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


FileState: TypeAlias = tuple[str, int, int, int, int, int]
"""A file's identity and state: ``(realpath, st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)``; the
kernel sets ``st_ctime_ns`` on every change of the file, and no call sets it back (``utime`` cannot)."""
VERIFIED_CACHE_SIZE = 64
_verified: dict[FileState, bytes] = {}
"""File state → the commitment of the model whose tensor keys :func:`read_model` checked in that state
(oldest first; at most ``VERIFIED_CACHE_SIZE``)."""


def read_model(path: str | Path, *, verify: bool = False) -> Model:
    """Read and check a model file through a read-only memory map (the tensors are views of it); a
    file that cannot be opened is a plain ``OSError``.

    Hashing each tensor against its key is done once per file state (:data:`FileState`) in this
    process: a later read of the same state still decodes and checks the manifest and every structural
    rule, and that the manifest has the commitment verified, but skips the hashing. Trust assumption:
    the kernel's ctime changes whenever the file does (only a changed clock or a write to the raw
    device escapes it); ``verify=True`` forces the hashing. A tensor the oracle store serves is
    re-hashed there, so a corrupted tensor cannot pass on-chain. The file must not be changed in place
    while its model is used (the views would change; write a new file and rename it over, as
    :func:`write_model` does).
    """
    real = os.path.realpath(path)
    with open(real, "rb") as f:
        st = os.fstat(f.fileno())
        # mmap refuses an empty file; the decoder rejects it with its typed error
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if st.st_size else b""
    state: FileState = (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    verified = None if verify else _verified.get(state)
    file = (Path(real), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    model = decode_model_file(data, verify_keys=verified is None, file=file)
    if verified is not None and model.commitment != verified:
        # the manifest changed under an unchanged state: nothing of the cache applies
        model = decode_model_file(data, file=file)
    _verified.pop(state, None)  # re-insert as the newest
    _verified[state] = model.commitment
    while len(_verified) > VERIFIED_CACHE_SIZE:
        del _verified[next(iter(_verified))]
    return model


# --- building models ------------------------------------------------------------------------------


class GraphBuilder:
    """Builds a model node by node, filling the output shapes from the op rules.

    Every ``add_*`` returns the value number of the new node's output::

        g = GraphBuilder(int8(8, 8, 1))
        v = g.conv2d(0, w, bias, zx=0, pads=(1, 1, 1, 1))
        v = g.requantize(v, m0, t, zy=-128, lo=-128, hi=127)
        model = g.build()

    ``version = 2`` builds a version-2 manifest (the ops of ml-spec §10); block weights are passed as
    their GGUF bytes.
    """

    def __init__(self, input_desc: TensorDesc, version: int = VERSION_1) -> None:
        _check_desc_limits(input_desc, "input", version)
        self.input = input_desc
        self.version = version
        self.nodes: list[Node] = []
        self.tensors: dict[bytes, bytes] = {}
        self._keys: dict[bytes, bytes] = {}
        """Tensor bytes → their key: a generation graph puts the same matrices and tables at every token,
        and each distinct tensor is hashed once."""
        self.values: list[TensorDesc] = [input_desc]

    def _put(self, array: npt.NDArray[Any] | None, dtype: DType) -> bytes | None:
        if array is None:
            return None
        return self._put_bytes(tensor_bytes(array, dtype))

    def _put_bytes(self, data: bytes | TensorRef) -> bytes:
        if isinstance(data, TensorRef):  # its bytes go to the file by another way (write_model_file)
            return data.key
        data = bytes(data)
        key = self._keys.get(data)
        if key is None:
            key = self._keys[data] = tensor_key(data)
            self.tensors[key] = data
        return key

    def add(
        self,
        op: Op,
        inputs: Sequence[int],
        params: Sequence[int] = (),
        tensors: tuple[bytes | None, bytes | None] = (None, None),
        out: TensorDesc | None = None,
    ) -> int:
        """Append a node; ``out`` only for dense (any [M]) and reshape, else taken from the op rule."""
        full = (*params, *([0] * (N_PARAMS - len(params))))
        draft = Node(op, tuple(inputs), out or TensorDesc(DType.INT8, (1,)), full, tensors)
        index = len(self.nodes)
        if out is None:
            for ref in inputs:
                if not 0 <= ref <= index:
                    where = _where(index, draft)
                    raise ForwardReferenceError(f"{where}: input value {ref} does not exist yet")
            ins = [self.values[r] for r in inputs]
            out = expected_output(draft, ins, _where(index, draft), self.version)
        node = Node(op, tuple(inputs), out, full, tensors)
        self.values.append(check_node(index, node, self.values, self.version))
        self.nodes.append(node)
        return index + 1

    def dense(
        self,
        x: int,
        w: npt.NDArray[Any],
        bias: npt.NDArray[Any] | None = None,
        zx: int = 0,
        bound: int | None = None,
    ) -> int:
        """``bound``: the overflow bound's mode (§4); ``None`` picks 0 where it holds, else 1
        (version 2)."""
        keys = (self._put(w, DType.INT8), self._put(bias, DType.INT32))
        params = [zx, self._bound_mode(w, bias) if bound is None else bound]
        return self.add(Op.DENSE, [x], params, keys, TensorDesc(DType.INT32, (int(np.shape(w)[0]),)))

    def _bound_mode(self, w: npt.NDArray[Any], bias: npt.NDArray[Any] | None) -> int:
        """0 when the tensor-wide overflow bound holds or the manifest is version 1, else 1."""
        if self.version == VERSION_1:
            return 0
        b = None if bias is None else np.ascontiguousarray(bias, "<i4").tobytes()
        k = int(np.prod(np.shape(w)[1:]))
        return 0 if tensor_wide_bound(k, b) <= ACC_BOUND else 1

    def conv2d(
        self,
        x: int,
        w: npt.NDArray[Any],
        bias: npt.NDArray[Any] | None = None,
        zx: int = 0,
        strides: tuple[int, int] = (1, 1),
        pads: tuple[int, int, int, int] = (0, 0, 0, 0),
        bound: int | None = None,
    ) -> int:
        """``w`` is ``[OC, KH, KW, C]``; ``pads`` is (top, left, bottom, right); ``bound`` as
        :meth:`dense`'s."""
        oc, kh, kw, _ = np.shape(w)
        keys = (self._put(w, DType.INT8), self._put(bias, DType.INT32))
        h, wd, _ = self.values[x].shape
        pt, pl, pb, pr = pads
        oh = conv_out_dim(h, kh, strides[0], pt, pb) or 1  # a misfit fails the op rule in add()
        ow = conv_out_dim(wd, kw, strides[1], pl, pr) or 1
        params = [zx, kh, kw, *strides, *pads, self._bound_mode(w, bias) if bound is None else bound]
        return self.add(Op.CONV2D, [x], params, keys, TensorDesc(DType.INT32, (oh, ow, int(oc))))

    def requantize(
        self,
        x: int,
        m0: int,
        t: int,
        zy: int,
        lo: int = -128,
        hi: int = 127,
        mode: int = 0,
        channels: npt.NDArray[Any] | None = None,
    ) -> int:
        """``mode`` 0 rounds half up, 1 half to even, 2 as onnxruntime's float32 product (``M0 < 2^24``)
        (1 and 2 version 2 only); a mode-0 record is unchanged.
        ``channels`` (version 2 only), an int32 ``[C, 2]`` table of ``(M0_c, t_c)`` rows for the ``C``
        channels of ``x``'s last axis, replaces ``m0`` and ``t``: the record then has ``p0 = p1 = 0``."""
        if channels is None:
            return self.add(Op.REQUANTIZE, [x], [m0, t, zy, lo, hi, mode])
        table = np.asarray(channels)
        c = self.values[x].shape[-1] if 0 <= x < len(self.values) else -1
        if table.shape != (c, 2):
            raise ShapeMismatchError(f"requantize: a per-channel table of shape {table.shape}, want ({c}, 2)")
        key = self._put(table, DType.INT32)
        return self.add(Op.REQUANTIZE, [x], [0, 0, zy, lo, hi, mode], (key, None))

    def add_(
        self, a: int, b: int, za: int, ma: int, zb: int, mb: int, t: int, zy: int, lo: int, hi: int
    ) -> int:
        """An ``add`` node (named ``add_`` because :meth:`add` appends any node)."""
        return self.add(Op.ADD, [a, b], [za, ma, zb, mb, t, zy, lo, hi])

    def relu(self, x: int, z: int = 0) -> int:
        return self.add(Op.RELU, [x], [z])

    def maxpool(self, x: int, kernel: tuple[int, int], strides: tuple[int, int]) -> int:
        return self.add(Op.MAXPOOL, [x], [*kernel, *strides])

    def avgpool(self, x: int, kernel: tuple[int, int], strides: tuple[int, int]) -> int:
        return self.add(Op.AVGPOOL, [x], [*kernel, *strides])

    def reshape(self, x: int, shape: Sequence[int]) -> int:
        return self.add(Op.RESHAPE, [x], [], (None, None), TensorDesc(self.values[x].dtype, tuple(shape)))

    def argmax(self, x: int) -> int:
        return self.add(Op.ARGMAX, [x])

    def lut(self, x: int, table: npt.NDArray[Any]) -> int:
        return self.add(Op.LUT, [x], [], (self._put(table, DType.INT8), None))

    def softmax(self, x: int, table: npt.NDArray[Any]) -> int:
        return self.add(Op.SOFTMAX, [x], [], (self._put(table, DType.INT32), None))

    # --- version 2 (ml-spec §10) ---

    def _weight_rows(self, w: bytes | TensorRef, wtype: DType, k: int) -> int:
        """Rows of a block tensor of ``len(w)`` bytes with rows of ``k`` weights."""
        per_row = max(1, k // blocks.BLOCK) * blocks.block_bytes(wtype is DType.Q4_1)
        return max(1, len(w) // per_row)

    def qdense(
        self,
        x: int,
        w: bytes | TensorRef,
        wtype: DType,
        f: int,
        *,
        out: DType = DType.R16,
        r: int = 0,
        row0: int = 0,
        m: int | None = None,
    ) -> int:
        """``x`` ``[T, K]`` times rows ``row0 … row0 + m − 1`` of the block matrix ``w`` (all by default)."""
        t, k = self.values[x].shape
        mt = self._weight_rows(w, wtype, k)
        rows = mt - row0 if m is None else m
        params = [int(wtype), f, mt, row0, r]
        return self.add(Op.QDENSE, [x], params, (self._put_bytes(w), None), TensorDesc(out, (t, rows)))

    def qdense_argmax(
        self, x: int, w: bytes | TensorRef, wtype: DType, f: int, *, row0: int = 0, m: int | None = None
    ) -> int:
        """The argmax records of ``x`` times rows ``row0 … row0 + m − 1`` of ``w`` (all by default)."""
        mt = self._weight_rows(w, wtype, self.values[x].shape[1])
        rows = mt - row0 if m is None else m
        return self.add(Op.QDENSE_ARGMAX, [x], [int(wtype), f, mt, row0, rows], (self._put_bytes(w), None))

    def argmax_merge(self, a: int, b: int) -> int:
        return self.add(Op.ARGMAX_MERGE, [a, b])

    def embedding(self, ids: int, w: bytes | TensorRef, wtype: DType, f: int, h: int, r: int) -> int:
        """Rows of the block table ``w`` (rows of ``h``) as int32 at ``2^−r``."""
        v = self._weight_rows(w, wtype, h)
        t = self.values[ids].shape[0]
        keys = (self._put_bytes(w), None)
        return self.add(Op.EMBEDDING, [ids], [int(wtype), f, v, r], keys, TensorDesc(DType.INT32, (t, h)))

    def rmsnorm(self, x: int, g: npt.NDArray[Any], gf: int, eps: int) -> int:
        return self.add(Op.RMSNORM, [x], [gf, eps], (self._put(g, DType.INT16), None))

    def rope(self, x: int, table: npt.NDArray[Any], hd: int, pos0: int) -> int:
        """``table`` int32 ``[P, hd/2, 2]`` of Q30 (cos, sin)."""
        params = [hd, pos0, int(np.shape(table)[0])]
        return self.add(Op.ROPE, [x], params, (self._put(table, DType.INT32), None))

    def attention(self, q: int, kv: int, table: npt.NDArray[Any], hd: int, mul: int, sa: int) -> int:
        return self.add(Op.ATTENTION, [q, kv], [hd, mul, sa], (self._put(table, DType.INT32), None))

    def swiglu(self, gate: int, up: int, table: npt.NDArray[Any]) -> int:
        return self.add(Op.SWIGLU, [gate, up], [], (self._put(table, DType.INT32), None))

    def quantize(self, x: int, out: DType, fx: int = 0) -> int:
        return self.add(Op.QUANTIZE, [x], [fx], (None, None), TensorDesc(out, self.values[x].shape))

    def add32(self, a: int, b: int) -> int:
        return self.add(Op.ADD32, [a, b])

    def concat(self, a: int, b: int, axis: int) -> int:
        return self.add(Op.CONCAT, [a, b], [axis])

    def slice(self, x: int, r0: int, n: int) -> int:
        src = self.values[x]
        return self.add(Op.SLICE, [x], [r0], (None, None), TensorDesc(src.dtype, (n, *src.shape[1:])))

    def emit(self, transcript: int, record: int, t: int) -> int:
        return self.add(Op.EMIT, [transcript, record], [t])

    def manifest(self) -> bytes:
        """The manifest of the graph so far (its commitment is the model's)."""
        return encode_manifest(self.input, self.nodes, self.version)

    def build(self) -> Model:
        """The model; its tensors' keys are not hashed again (the builder derived each from its bytes)."""
        return Model.create(self.input, self.nodes, self.tensors, verify_keys=False, version=self.version)
