"""Model format (docs/ml-spec.md §1–§4): tensors, the canonical manifest, the model file.

The **manifest** is a 64-byte header followed by one 160-byte record per node; the **model
commitment** is its chunk-Merkle key. A model file (``*.opml``) is the manifest and the tensors it
names. Every reader path checks every rule of the spec and raises a :class:`ModelFormatError`
subclass with a one-line message; a :class:`Model` that exists is valid.

Header (64 bytes), little-endian u32 fields:

| offset | field |
|---:|---|
| 0 | ``magic`` = ``OPMM`` |
| 4 | ``version`` = 1 |
| 8 | ``node_count`` N (1 … 4096) |
| 12 | ``input_dtype`` |
| 16 | ``input_rank`` (1 … 4) |
| 20 | ``input_dims[4]`` |
| 36 | 28 reserved zero bytes |

Node record (160 bytes at ``64 + 160·i``): ``op`` 0, ``n_inputs`` 4, ``input[2]`` 8, ``out_dtype`` 16,
``out_rank`` 20, ``out_dims[4]`` 24, ``params[14]`` (int32) 40, ``tensor_key[2]`` 96 and 128.

Model file: ``OPMLMODL``, ``file_version`` = 1, ``manifest_size``, ``tensor_count`` T (u32 each), the
manifest, then T times a 32-byte key, a u32 size and the bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from opml.ml.errors import (
    BadMagicError,
    ForwardReferenceError,
    InputCountError,
    InvalidFieldError,
    InvalidInputError,
    NonCanonicalError,
    OverflowBoundError,
    ParamRangeError,
    ShapeMismatchError,
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
VERSION = 1
FILE_MAGIC = b"OPMLMODL"
FILE_VERSION = 1

KEY_SIZE = 32
MAX_RANK = 4
MAX_NODES = 4096
N_PARAMS = 14
N_TENSOR_KEYS = 2
MAX_TENSOR_BYTES = 1 << 24
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
ACC_BOUND = INT32_MAX
"""Largest |partial sum| of a dense/conv2d accumulation (ml-spec §4): ``K·255·128 + max|bias|``."""
MAX_PRODUCT = 255 * 128
"""Largest |(x − zx)·w| for int8 x, zx and w."""
MAX_FILTER_ELEMS = 4096
"""Largest ``KH·KW·C`` of a conv2d filter (the VM's 4 KiB weight buffer)."""
MAX_SOFTMAX_N = 32767
SOFTMAX_E_MAX = 1 << 16

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


def manifest_size(node_count: int) -> int:
    """``64 + 160·N``."""
    return HEADER_SIZE + NODE_SIZE * node_count


def node_offset(index: int) -> int:
    """Offset of node ``index``'s record in the manifest."""
    return HEADER_SIZE + NODE_SIZE * index


class DType(IntEnum):
    INT8 = 1
    INT32 = 2

    @property
    def itemsize(self) -> int:
        return 1 if self is DType.INT8 else 4

    @property
    def np(self) -> np.dtype[Any]:
        """The numpy dtype of the elements (little-endian)."""
        return np.dtype(np.int8) if self is DType.INT8 else np.dtype("<i4")

    @property
    def lo(self) -> int:
        return -128 if self is DType.INT8 else INT32_MIN

    @property
    def hi(self) -> int:
        return 127 if self is DType.INT8 else INT32_MAX


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


OP_INPUTS: dict[Op, int] = {op: 2 if op is Op.ADD else 1 for op in Op}
"""``n_inputs`` of each op."""
OP_PARAM_NAMES: dict[Op, tuple[str, ...]] = {
    Op.DENSE: ("zx",),
    Op.CONV2D: ("zx", "KH", "KW", "stride_h", "stride_w", "pad_top", "pad_left", "pad_bottom", "pad_right"),
    Op.REQUANTIZE: ("M0", "t", "zy", "lo", "hi"),
    Op.ADD: ("za", "Ma", "zb", "Mb", "t", "zy", "lo", "hi"),
    Op.RELU: ("z",),
    Op.MAXPOOL: ("KH", "KW", "stride_h", "stride_w"),
    Op.AVGPOOL: ("KH", "KW", "stride_h", "stride_w"),
    Op.RESHAPE: (),
    Op.ARGMAX: (),
    Op.LUT: (),
    Op.SOFTMAX: (),
}
"""The names of each op's params ``p0, p1, …`` (ml-spec §4)."""
OP_PARAMS: dict[Op, int] = {op: len(names) for op, names in OP_PARAM_NAMES.items()}
"""How many of the 14 params each op uses (the rest must be 0)."""
OP_TENSOR_NAMES: dict[Op, tuple[str, str]] = {
    Op.DENSE: ("W", "bias"),
    Op.CONV2D: ("W", "bias"),
    Op.LUT: ("T", ""),
    Op.SOFTMAX: ("E", ""),
}
"""The names of each op's two parameter tensors."""
OP_TENSORS: dict[Op, tuple[bool, bool] | None] = {
    Op.DENSE: (True, False),
    Op.CONV2D: (True, False),
    Op.LUT: (True, True),
    Op.SOFTMAX: (True, True),
}
"""Per op with tensors: (first tensor required, second tensor forbidden). dense/conv2d take an optional
bias; lut/softmax take exactly one table; the other ops take none."""


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
    def nbytes(self) -> int:
        return self.elems * self.dtype.itemsize

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return f"{self.dtype.name.lower()}[{', '.join(map(str, self.shape))}]"


def int8(*shape: int) -> TensorDesc:
    return TensorDesc(DType.INT8, tuple(shape))


def int32(*shape: int) -> TensorDesc:
    return TensorDesc(DType.INT32, tuple(shape))


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
    """The bytes of ``array`` as a ``dtype`` tensor (row-major, little-endian); values must fit."""
    arr = np.asarray(array)
    if arr.size and (int(arr.min()) < dtype.lo or int(arr.max()) > dtype.hi):
        raise ValueError(f"values outside the {dtype.name.lower()} range")
    return np.ascontiguousarray(arr, dtype=dtype.np).tobytes()


def as_array(data: bytes, desc: TensorDesc) -> npt.NDArray[Any]:
    """A read-only numpy view of a tensor's bytes."""
    return np.frombuffer(data, dtype=desc.dtype.np).reshape(desc.shape)


# --- encoding -------------------------------------------------------------------------------------


def _u32s(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


def _dims(shape: tuple[int, ...]) -> bytes:
    return _u32s(*shape, *([0] * (MAX_RANK - len(shape))))


def encode_header(input_desc: TensorDesc, node_count: int) -> bytes:
    head = MAGIC + _u32s(VERSION, node_count, int(input_desc.dtype), input_desc.rank)
    return head + _dims(input_desc.shape) + bytes(HDR_RESERVED_SIZE)


def encode_node(node: Node) -> bytes:
    inputs = (*node.inputs, *([0] * (2 - len(node.inputs))))
    record = _u32s(int(node.op), len(node.inputs), *inputs, int(node.out.dtype), node.out.rank)
    record += _dims(node.out.shape)
    record += struct.pack(f"<{N_PARAMS}i", *node.params)
    record += b"".join(k if k is not None else ZERO_KEY for k in node.tensor_keys)
    assert len(record) == NODE_SIZE
    return record


def encode_manifest(input_desc: TensorDesc, nodes: Sequence[Node]) -> bytes:
    """The canonical manifest bytes (ml-spec §3); does not validate (see :func:`check_graph`)."""
    return encode_header(input_desc, len(nodes)) + b"".join(encode_node(n) for n in nodes)


# --- decoding -------------------------------------------------------------------------------------


def _u32(data: bytes, offset: int) -> int:
    value: int = struct.unpack_from("<I", data, offset)[0]
    return value


def _dtype(code: int, where: str) -> DType:
    try:
        return DType(code)
    except ValueError:
        raise UnknownDTypeError(f"{where}: unknown dtype code {code}") from None


def _desc(data: bytes, dtype_off: int, rank_off: int, dims_off: int, where: str) -> TensorDesc:
    dtype = _dtype(_u32(data, dtype_off), where)
    rank = _u32(data, rank_off)
    if not 1 <= rank <= MAX_RANK:
        raise InvalidFieldError(f"{where}: rank {rank}, want 1 … {MAX_RANK}")
    dims = struct.unpack_from(f"<{MAX_RANK}I", data, dims_off)
    if any(dims[rank:]):
        raise NonCanonicalError(f"{where}: non-zero dim past rank {rank}")
    return TensorDesc(dtype, tuple(dims[:rank]))


def decode_header(data: bytes) -> tuple[TensorDesc, int]:
    """``(input_desc, node_count)`` of a manifest header; checks magic, version, ranges, zero fields."""
    if len(data) < HEADER_SIZE:
        raise TruncatedError(f"manifest has {len(data)} bytes, shorter than its 64-byte header")
    if data[HDR_MAGIC : HDR_MAGIC + 4] != MAGIC:
        raise BadMagicError(f"manifest magic {bytes(data[:4])!r}, want {MAGIC!r}")
    version = _u32(data, HDR_VERSION)
    if version != VERSION:
        raise UnknownVersionError(f"manifest version {version}, want {VERSION}")
    count = _u32(data, HDR_NODE_COUNT)
    if not 1 <= count <= MAX_NODES:
        raise InvalidFieldError(f"node count {count}, want 1 … {MAX_NODES}")
    desc = _desc(data, HDR_INPUT_DTYPE, HDR_INPUT_RANK, HDR_INPUT_DIMS, "input")
    if any(data[HDR_RESERVED : HDR_RESERVED + HDR_RESERVED_SIZE]):
        raise NonCanonicalError("header: non-zero reserved bytes")
    return desc, count


def decode_node(record: bytes, index: int) -> Node:
    """One node record; checks the op, input count, dtype codes and zero fields (not the op's rule)."""
    where = f"node {index}"
    code = _u32(record, NODE_OP)
    try:
        op = Op(code)
    except ValueError:
        raise UnknownOpError(f"{where}: unknown op code {code}") from None
    where = f"node {index} ({op.name.lower()})"
    n_inputs = _u32(record, NODE_N_INPUTS)
    if n_inputs != OP_INPUTS[op]:
        raise InputCountError(f"{where}: {n_inputs} inputs, the op takes {OP_INPUTS[op]}")
    refs = struct.unpack_from("<2I", record, NODE_INPUTS)
    if n_inputs == 1 and refs[1] != 0:
        raise NonCanonicalError(f"{where}: input[1] is {refs[1]}, must be 0 for a one-input op")
    out = _desc(record, NODE_OUT_DTYPE, NODE_OUT_RANK, NODE_OUT_DIMS, f"{where} output")
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
    input_desc, count = decode_header(data)
    size = manifest_size(count)
    if len(data) < size:
        raise TruncatedError(f"manifest has {len(data)} bytes, {count} nodes need {size}")
    if len(data) > size:
        raise TrailingDataError(f"manifest has {len(data)} bytes, {count} nodes need exactly {size}")
    nodes = tuple(decode_node(data[node_offset(i) : node_offset(i + 1)], i) for i in range(count))
    check_graph(input_desc, nodes)
    return input_desc, nodes


# --- the op rules (ml-spec §4) --------------------------------------------------------------------


def _check_desc_limits(desc: TensorDesc, where: str) -> None:
    if not 1 <= desc.rank <= MAX_RANK:
        raise InvalidFieldError(f"{where}: rank {desc.rank}, want 1 … {MAX_RANK}")
    if any(d < 1 for d in desc.shape):
        raise InvalidFieldError(f"{where}: dims {list(desc.shape)}, every dim must be ≥ 1")
    if desc.nbytes > MAX_TENSOR_BYTES:
        raise InvalidFieldError(f"{where}: {desc} has {desc.nbytes} bytes, more than 2^24")


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


def expected_output(node: Node, ins: Sequence[TensorDesc], where: str) -> TensorDesc:
    """The output the op's rule gives for inputs ``ins``; checks the inputs' dtypes and shapes and the
    ranges of the params. ``dense`` takes M and ``reshape`` its shape from ``node.out``."""
    op, p, out = node.op, node.p, node.out
    x = ins[0]
    if op is Op.DENSE:
        _want_dtype(where, "input", x, (DType.INT8,))
        _in_range(where, "zx", p[0], -128, 127)
        _want_rank(where, "output", out, 1)
        return TensorDesc(DType.INT32, out.shape)
    if op is Op.CONV2D:
        _want_dtype(where, "input", x, (DType.INT8,))
        _want_rank(where, "input", x, 3)
        _want_rank(where, "output", out, 3)
        zx, kh, kw, sh, sw, pt, pl, pb, pr = p
        _in_range(where, "zx", zx, -128, 127)
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
        m0, t, zy, lo, hi = p
        _in_range(where, "M0", m0, 1, INT32_MAX)
        _in_range(where, "t", t, 1, 62)
        _in_range(where, "zy", zy, -128, 127)
        _in_range(where, "lo", lo, -128, 127)
        _in_range(where, "hi", hi, lo, 127)
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
    else:
        return None, None
    bias = TensorDesc(DType.INT32, (w.shape[0],)) if node.tensor_keys[1] is not None else None
    return w, bias


def _where(index: int, node: Node) -> str:
    return f"node {index} ({node.op.name.lower()})"


def check_node(index: int, node: Node, values: Sequence[TensorDesc]) -> TensorDesc:
    """Check node ``index`` against the descs of values ``0 … index`` (input refs, the op's rule, the
    tensor-key presence, the limits, the step bound of ml-spec §9); return its output desc."""
    where = _where(index, node)
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
    _check_desc_limits(node.out, f"{where} output")
    ins = [values[ref] for ref in node.inputs]
    want = expected_output(node, ins, where)
    _want_out(where, node.out, want)
    rule = OP_TENSORS.get(node.op)
    first, second = node.tensor_keys
    if rule is None:
        if first is not None or second is not None:
            raise NonCanonicalError(f"{where}: the op takes no tensor, tensor keys must be zero")
    else:
        if first is None:
            raise NonCanonicalError(f"{where}: tensor_key[0] is zero, the op needs a tensor")
        if rule[1] and second is not None:
            raise NonCanonicalError(f"{where}: tensor_key[1] must be zero for this op")
    for key in node.tensor_keys:
        if key is not None and len(key) != KEY_SIZE:
            raise NonCanonicalError(f"{where}: a tensor key has {len(key)} bytes, want 32")
    for j, desc in enumerate(param_tensors(node, ins)):
        if desc is not None:
            _check_desc_limits(desc, f"{where} tensor {j}")
    from opml.ml.cost import check_node_cost  # cost imports this module

    check_node_cost(index, node, ins, where)
    return node.out


def check_graph(input_desc: TensorDesc, nodes: Sequence[Node]) -> list[TensorDesc]:
    """Check the whole graph without its tensors (the model's step bound included); return the descs of
    values ``0 … N``."""
    _check_desc_limits(input_desc, "input")
    if not 1 <= len(nodes) <= MAX_NODES:
        raise InvalidFieldError(f"node count {len(nodes)}, want 1 … {MAX_NODES}")
    values = [input_desc]
    for i, node in enumerate(nodes):
        values.append(check_node(i, node, values))
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
    nodes: Sequence[Node], values: Sequence[TensorDesc], tensors: Mapping[bytes, bytes], *, verify_keys: bool
) -> None:
    """Check each node's parameter tensors: present, size matching the op's shape, softmax table range,
    the dense/conv2d overflow bound; with ``verify_keys`` also each tensor's bytes against its key."""
    if verify_keys:
        for key in named_keys(nodes):
            if key in tensors and tensor_key(tensors[key]) != key:
                raise TensorKeyMismatchError(f"tensor 0x{key.hex()}: its bytes have a different key")
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
            if size != desc.nbytes:
                raise TensorSizeError(f"{where}: tensor {j} has {size} bytes, {desc} needs {desc.nbytes}")
        if node.op is Op.SOFTMAX:
            assert node.tensor_keys[0] is not None
            e = np.frombuffer(tensors[node.tensor_keys[0]], dtype="<i4")
            if int(e.min()) < 0 or int(e.max()) > SOFTMAX_E_MAX:
                raise ParamRangeError(f"{where}: a table value is outside 0 … 2^16")
        if node.op in (Op.DENSE, Op.CONV2D):
            w = descs[0]
            assert w is not None
            k = w.elems // w.shape[0]
            bias_key = node.tensor_keys[1]
            max_bias = 0
            if bias_key is not None:
                b = np.frombuffer(tensors[bias_key], dtype="<i4").astype(np.int64)
                max_bias = int(np.abs(b).max())
            bound = k * MAX_PRODUCT + max_bias
            if bound > ACC_BOUND:
                raise OverflowBoundError(f"{where}: K·255·128 + max|bias| = {bound} > 2^31 − 1 (K = {k})")


# --- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Model:
    """A valid model: its graph and the bytes of every tensor it names, by key.

    Construct with :meth:`create` (which checks everything) or :func:`read_model`.
    """

    input: TensorDesc
    nodes: tuple[Node, ...]
    tensors: Mapping[bytes, bytes]
    values: tuple[TensorDesc, ...]
    """Descs of values ``0 … N`` (value 0 the input, value ``i + 1`` node ``i``'s output)."""
    manifest: bytes
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def create(
        cls,
        input_desc: TensorDesc,
        nodes: Sequence[Node],
        tensors: Mapping[bytes, bytes],
        *,
        verify_keys: bool = True,
    ) -> Model:
        """Check graph and tensors and build the model; ``tensors`` may hold extra keys (dropped)."""
        nodes = tuple(nodes)
        values = check_graph(input_desc, nodes)
        check_tensors(nodes, values, tensors, verify_keys=verify_keys)
        kept = {k: bytes(tensors[k]) for k in named_keys(nodes)}
        manifest = encode_manifest(input_desc, nodes)
        return cls(input_desc, nodes, kept, tuple(values), manifest)

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

    def tensor(self, key: bytes) -> bytes:
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
        return sum(a.size for j in range(N_TENSOR_KEYS) if (a := self.param(index, j)) is not None)

    def check_input(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """``x`` as an array of the input dtype and shape; :class:`InvalidInputError` if it is not one."""
        return check_value(x, self.input, "input")

    def file_bytes(self) -> bytes:
        return encode_model_file(self)


def check_value(x: Any, desc: TensorDesc, what: str) -> npt.NDArray[Any]:
    """``x`` as a ``desc`` array: exact shape, an integer (or bool-free) dtype whose values fit."""
    arr = np.asarray(x)
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
    keys = named_keys(model.nodes)
    parts = [FILE_MAGIC, _u32s(FILE_VERSION, len(model.manifest), len(keys)), model.manifest]
    for key in keys:
        data = model.tensors[key]
        parts += [key, _u32s(len(data)), data]
    return b"".join(parts)


def decode_model_file(data: bytes | bytearray | memoryview) -> Model:
    """Read and check a whole model file."""
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
    expected = named_keys(nodes)
    if count != len(expected):
        raise TensorSetError(f"model file has {count} tensors, the manifest names {len(expected)}")
    tensors: dict[bytes, bytes] = {}
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
        tensors[key] = bytes(mv[pos : pos + size])
        pos += size
    if pos != len(mv):
        raise TrailingDataError(f"{len(mv) - pos} bytes follow the last tensor")
    model = Model.create(input_desc, nodes, tensors, verify_keys=True)
    if model.manifest != manifest:  # every field is checked above; this only guards the encoder
        raise NonCanonicalError("the manifest does not re-encode to the same bytes")
    return model


def write_model(model: Model, path: str | Path) -> None:
    Path(path).write_bytes(encode_model_file(model))


def read_model(path: str | Path) -> Model:
    """Read and check a model file; a file that cannot be opened is a plain ``OSError``."""
    return decode_model_file(Path(path).read_bytes())


# --- building models ------------------------------------------------------------------------------


class GraphBuilder:
    """Builds a model node by node, filling the output shapes from the op rules.

    Every ``add_*`` returns the value number of the new node's output::

        g = GraphBuilder(int8(8, 8, 1))
        v = g.conv2d(0, w, bias, zx=0, pads=(1, 1, 1, 1))
        v = g.requantize(v, m0, t, zy=-128, lo=-128, hi=127)
        model = g.build()
    """

    def __init__(self, input_desc: TensorDesc) -> None:
        self.input = input_desc
        self.nodes: list[Node] = []
        self.tensors: dict[bytes, bytes] = {}
        self.values: list[TensorDesc] = [input_desc]

    def _put(self, array: npt.NDArray[Any] | None, dtype: DType) -> bytes | None:
        if array is None:
            return None
        data = tensor_bytes(array, dtype)
        key = tensor_key(data)
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
            out = expected_output(draft, ins, _where(index, draft))
        node = Node(op, tuple(inputs), out, full, tensors)
        self.values.append(check_node(index, node, self.values))
        self.nodes.append(node)
        return index + 1

    def dense(self, x: int, w: npt.NDArray[Any], bias: npt.NDArray[Any] | None = None, zx: int = 0) -> int:
        keys = (self._put(w, DType.INT8), self._put(bias, DType.INT32))
        return self.add(Op.DENSE, [x], [zx], keys, TensorDesc(DType.INT32, (int(np.shape(w)[0]),)))

    def conv2d(
        self,
        x: int,
        w: npt.NDArray[Any],
        bias: npt.NDArray[Any] | None = None,
        zx: int = 0,
        strides: tuple[int, int] = (1, 1),
        pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    ) -> int:
        """``w`` is ``[OC, KH, KW, C]``; ``pads`` is (top, left, bottom, right)."""
        oc, kh, kw, _ = np.shape(w)
        keys = (self._put(w, DType.INT8), self._put(bias, DType.INT32))
        h, wd, _ = self.values[x].shape
        pt, pl, pb, pr = pads
        oh = conv_out_dim(h, kh, strides[0], pt, pb) or 1  # a misfit fails the op rule in add()
        ow = conv_out_dim(wd, kw, strides[1], pl, pr) or 1
        params = [zx, kh, kw, *strides, *pads]
        return self.add(Op.CONV2D, [x], params, keys, TensorDesc(DType.INT32, (oh, ow, int(oc))))

    def requantize(self, x: int, m0: int, t: int, zy: int, lo: int = -128, hi: int = 127) -> int:
        return self.add(Op.REQUANTIZE, [x], [m0, t, zy, lo, hi])

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

    def build(self) -> Model:
        return Model.create(self.input, self.nodes, self.tensors)
