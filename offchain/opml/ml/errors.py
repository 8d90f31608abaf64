"""Errors of the deterministic ML package (docs/ml-spec.md §3.4).

Every rejection of a model file or manifest is a :class:`ModelFormatError` subclass with a one-line
message; an input tensor of the wrong dtype or shape is an :class:`InvalidInputError`. The MIPS
programs exit with status 3 for the same cases (ml-spec §7).
"""

from opml.errors import OpmlError


class MLError(OpmlError):
    """Base class of every error raised by the ml package."""


class ModelFormatError(MLError):
    """Thrown when a model file or manifest breaks a rule of ml-spec §1–§4 (base of the cases below)."""


class BadMagicError(ModelFormatError):
    """Thrown when a model file does not start with ``OPMLMODL`` or a manifest with ``OPMM``."""


class UnknownVersionError(ModelFormatError):
    """Thrown when the file version is not 1 or the manifest version is neither 1 nor 2."""


class UnknownOpError(ModelFormatError):
    """Thrown when a node record's op code is not one of ml-spec §4 (version 1) or §4 and §10
    (version 2)."""


class UnknownDTypeError(ModelFormatError):
    """Thrown when a dtype code (input or node output) is not one of ml-spec §1 for the manifest's
    version, or a block dtype is used for a value."""


class InvalidFieldError(ModelFormatError):
    """Thrown when a header or record field is out of its range: node count, rank, a zero dim, or a
    tensor larger than ``MAX_TENSOR_BYTES``."""


class InputCountError(ModelFormatError):
    """Thrown when a node's ``n_inputs`` is not the number its op takes."""


class ForwardReferenceError(ModelFormatError):
    """Thrown when a node names a value that is not computed before it (its own output, a later node's,
    or one past the graph): the graph would have a cycle or a forward reference."""


class ShapeMismatchError(ModelFormatError):
    """Thrown when a node's output dtype or shape, or its inputs' dtypes or shapes, break its op's rule."""


class ParamRangeError(ModelFormatError):
    """Thrown when an op parameter (or a value of a softmax table) is outside its range."""


class NonCanonicalError(ModelFormatError):
    """Thrown when an unused manifest field (reserved bytes, dims past the rank, unused inputs, params or
    tensor keys) is not zero, or a required tensor key is zero."""


class TruncatedError(ModelFormatError):
    """Thrown when a model file, its manifest or one of its tensors ends before its declared size."""


class TrailingDataError(ModelFormatError):
    """Thrown when bytes follow the last tensor of a model file, or a manifest is longer than
    ``64 + 160·N`` bytes."""


class TensorSetError(ModelFormatError):
    """Thrown when a model file's tensors are not exactly the ones its manifest names, each once, in
    the order in which the manifest first names them."""


class TensorKeyMismatchError(ModelFormatError):
    """Thrown when a tensor's bytes do not have the chunk-Merkle key stored with them."""


class TensorSizeError(ModelFormatError):
    """Thrown when a parameter tensor's size does not match the shape its op requires."""


class OverflowBoundError(ModelFormatError):
    """Thrown when a dense or conv2d node breaks the int32 accumulation bound of ml-spec §4."""


class BlockShapeError(ModelFormatError):
    """Thrown when a GGUF block tensor (``q4_1``, ``q8_0``) has a row length that is not a multiple of 32
    or a size that is not a whole number of blocks."""


class BadScaleError(ModelFormatError):
    """Thrown when an fp16 block scale is Inf, NaN or subnormal (ml-spec §1): re-export the tensor."""


class ScaleRangeError(ModelFormatError):
    """Thrown when an fp16 block scale times ``2^F`` is not an integer or not below 2^24 in magnitude
    (ml-spec §1): choose another ``F`` for the node."""


class ShardError(ModelFormatError):
    """Thrown when a row split names weight rows outside its matrix (``row0 + M > Mt``)."""


class NodeCostError(ModelFormatError):
    """Thrown when a node's step bound (ml-spec §9) is above ``MAX_NODE_STEPS`` = 2^31, or the model's
    above ``MAX_MODEL_STEPS`` = 2^44: no honest agent could trace such a run, so the node must be split."""


class InvalidInputError(MLError):
    """Thrown when an input tensor does not have the model's input dtype and shape (or is not a valid
    tensor file)."""


class ProgramNotBuiltError(MLError):
    """Thrown when a MIPS program of ml-spec §7 (``mips-toolchain/build/ml_node``, ``ml_model``) has
    not been built."""


class ProgramRunError(MLError):
    """Thrown when a MIPS program of ml-spec §7 does not exit within its step limit."""


class GgufError(MLError, ValueError):
    """Thrown when a GGUF file cannot be imported as a LLaMA of ml-spec §10 (base of the cases below;
    :mod:`opml.ml.gguf_import`)."""


class GgufReadError(GgufError):
    """Thrown when a file is not a GGUF file or ends early (truncated header, metadata, tensor infos or
    tensor data): download or export it again."""


class GgufArchitectureError(GgufError):
    """Thrown when a GGUF model is not one our LLaMA graph computes: another ``general.architecture``,
    an untied ``output.weight``, RoPE scaling, or a tensor the graph has no place for (a bias,
    ``rope_freqs``)."""


class GgufMissingError(GgufError):
    """Thrown when a metadata key or a tensor the LLaMA graph needs is absent from a GGUF file, or a key
    has the wrong type."""


class GgufConfigError(GgufError):
    """Thrown when a GGUF file's ``llama.*`` keys do not make a consistent config (``rope.dimension_count``
    not the head dimension, heads not dividing the width, ``vocab_size`` not the embedding's rows)."""


class GgufQuantTypeError(GgufError):
    """Thrown when a GGUF tensor has a type the integer ops do not take: matrices must be Q4_1 or Q8_0,
    norm vectors F32."""


class GgufShapeError(GgufError):
    """Thrown when a GGUF tensor's shape is not the one the ``llama.*`` keys give it."""


class GgufScaleError(GgufError):
    """Thrown when a GGUF tensor's scales cannot be made exact integers (a block scale that is Inf, NaN,
    subnormal or needs ``|D| ≥ 2^24`` at every ``F``), or a norm vector does not fit int16."""


class OnnxImportError(MLError, ValueError):
    """Thrown when an ONNX graph cannot be imported (docs/ml-spec.md §11): the message names the op and
    the node, and what opML imports instead."""


class UnsupportedOnnxOpError(OnnxImportError):
    """Thrown when an ONNX graph has ops opML does not import; the message lists every such node."""
