"""The VM's view of the preimage oracle (vm-spec §5.5, docs/oracle-spec.md).

``step(state, oracle)`` asks an oracle only for what the contract asks ``IPreimageOracle`` for, in
the same order. Anything with the three methods of :class:`PreimageOracle` will do:

* ``effective_key(key)``: the key the oracle is asked with. The contract localizes a local (type-1)
  key with ``msg.sender`` of ``step`` and its ``localContext`` argument and uses every other key as it
  is; off-chain, the oracle object carries that caller and context (see :class:`OracleView`).
* ``preimage_length(effective_key) -> int``: ``IPreimageOracle.preimageLength``.
* ``preimage_part(effective_key, part_offset) -> bytes``: the 32-byte part at ``part_offset`` (a
  multiple of 32 below the length), zero-padded past the end (``readPreimage``).

Data the oracle does not hold raises :class:`~opml.oracle.errors.PreimageNotFoundError` (where the
contract reverts with ``PreimageNotLoaded`` / ``PartNotLoaded``).

The fast executor (``opml.vm.fast``) may also call the optional ``preimage_array(effective_key)``: the
whole preimage as a read-only 1-D ``uint8`` numpy array of exactly ``length`` bytes (e.g. a memory map
of a store file, or a slice of one of a model file), or ``None`` when the oracle cannot provide one;
with an array, ``preimage_read`` runs inside the numba kernel instead of one Python call per 32 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn, Protocol, runtime_checkable

import numpy as np

from opml.oracle.chunk_tree import check_part_offset
from opml.oracle.errors import InvalidKeyTypeError, PreimageNotFoundError
from opml.oracle.keys import KeyType, address_bytes, key_type, localize
from opml.oracle.store import PreimageStore
from opml.vm.constants import PREIMAGE_PART_SIZE

ZERO_CALLER = bytes(20)
"""Default ``caller`` of :class:`OracleView`: the zero address (document it where you use it)."""
ZERO_CONTEXT = bytes(32)
"""Default ``local_context``: what the two-argument ``step(bytes,bytes)`` uses on-chain."""


@runtime_checkable
class PreimageOracle(Protocol):
    """What ``step`` needs from an oracle (see the module docstring)."""

    def effective_key(self, key: bytes) -> bytes: ...

    def preimage_length(self, effective_key: bytes) -> int: ...

    def preimage_part(self, effective_key: bytes, part_offset: int) -> bytes: ...


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


EMPTY_PREIMAGE = _readonly(np.zeros(0, dtype=np.uint8))


class OracleView:
    """A :class:`PreimageOracle` over a :class:`PreimageStore`, as seen by one ``step`` caller.

    ``caller`` (20 bytes, or anything :func:`~opml.oracle.keys.address_bytes` accepts) and
    ``local_context`` (32 bytes) play ``msg.sender`` and the ``localContext`` argument of the
    contract's ``step``: a type-1 key is localized with them exactly as ``PreimageKeyLib.localize``
    does. They default to the zero address and the zero context.

    Store files are content-addressed and never change, so keccak and chunk-Merkle preimages are
    memory-mapped once and kept open (a sparse 1 GiB file costs address space, not memory); a preimage
    the store holds as a range of a model file is a slice of the store's one map of that file
    (:meth:`PreimageStore.array`). Local values (which ``put_local`` may overwrite) are read from the
    store on every call.
    """

    def __init__(self, store: PreimageStore, caller=ZERO_CALLER, local_context: bytes = ZERO_CONTEXT):
        local_context = bytes(local_context)
        if len(local_context) != 32:
            raise ValueError(f"local_context is a bytes32, got {len(local_context)} bytes")
        self.store = store
        self.caller = address_bytes(caller)
        self.local_context = local_context
        self._maps: dict[bytes, np.ndarray] = {}

    def __repr__(self) -> str:
        return (
            f"OracleView({str(self.store.root)!r}, caller=0x{self.caller.hex()}, "
            f"local_context=0x{self.local_context.hex()})"
        )

    # --- PreimageOracle -----------------------------------------------------------------------

    def effective_key(self, key: bytes) -> bytes:
        """``key`` localized with ``(caller, local_context)`` if it is a local key, else ``key``."""
        if key[0] != KeyType.LOCAL:
            return bytes(key)  # PreimageKeyLib.localize leaves every other type (even unknown ones) as is
        return localize(bytes(key), self.caller, self.local_context)

    def preimage_length(self, effective_key: bytes) -> int:
        return len(self._data(effective_key))

    def preimage_part(self, effective_key: bytes, part_offset: int) -> bytes:
        data = self._data(effective_key)
        check_part_offset(part_offset, len(data))
        part = bytes(data[part_offset : part_offset + PREIMAGE_PART_SIZE])
        return part + bytes(PREIMAGE_PART_SIZE - len(part))

    def preimage_array(self, effective_key: bytes) -> np.ndarray:
        """The whole preimage as a read-only ``uint8`` array (a memory map of the store file)."""
        return self._data(effective_key)

    # --- store access -------------------------------------------------------------------------

    def _data(self, key: bytes) -> np.ndarray:
        key = bytes(key)
        cached = self._maps.get(key)
        if cached is not None:
            return cached
        try:
            kind = key_type(key)
            data = self.store.array(key)  # checked against its key when the store first reads it
        except InvalidKeyTypeError:  # an unknown key type, e.g. a key never selected (all zero)
            raise PreimageNotFoundError(self._missing_message(key, None)) from None
        except PreimageNotFoundError:
            raise PreimageNotFoundError(self._missing_message(key, kind)) from None
        if kind != KeyType.LOCAL:  # a local value may be overwritten: read it again next time
            self._maps[key] = data
        return data

    def _missing_message(self, key: bytes, kind) -> str:
        where = f"the preimage store {self.store.root}"
        if kind == KeyType.LOCAL:
            return (
                f"no local value for the localized key 0x{key.hex()} in {where} (caller "
                f"0x{self.caller.hex()}, local context 0x{self.local_context.hex()}): store it with "
                f"PreimageStore.put_local(ident, caller, local_context, value) or `opml vm run --local "
                f"IDENT=HEX`, with the same caller and local context as the VM"
            )
        if kind is None:
            return (
                f"key 0x{key.hex()} has no known type (1 local, 2 keccak, 3 chunk-Merkle): the program "
                f"read the oracle without selecting a valid key; no oracle can answer this step"
            )
        return (
            f"no preimage for key 0x{key.hex()} in {where}: put the data there first "
            f"(`opml oracle put FILE --preimages DIR`, or PreimageStore.put_keccak/put_chunk_merkle)"
        )


class NoOracle:
    """The oracle of ``step(state, oracle=None)``: every question raises PreimageNotFoundError."""

    def effective_key(self, key: bytes) -> bytes:
        return bytes(key)

    def _fail(self, what: str, key: bytes) -> NoReturn:
        raise PreimageNotFoundError(
            f"the step asks the preimage oracle for {what} of key 0x{bytes(key).hex()}, but no oracle was "
            f"given: pass one, e.g. step(state, oracle=OracleView(PreimageStore(DIR), caller, "
            f"local_context)) (CLI: --preimages DIR, --local IDENT=HEX)"
        )

    def preimage_length(self, effective_key: bytes) -> int:
        self._fail("the length", effective_key)

    def preimage_part(self, effective_key: bytes, part_offset: int) -> bytes:
        self._fail(f"the part at {part_offset}", effective_key)


NO_ORACLE = NoOracle()


@dataclass(frozen=True)
class OracleRead:
    """One question a step asks the oracle: a part (``part_offset``) or the length (``None``)."""

    key: bytes
    part_offset: int | None


@dataclass
class RecordingOracle:
    """Passes every question to ``inner`` and records it in ``reads``, in the order the step asks
    (the contract's order): what must be on-chain before the step is proven there."""

    inner: PreimageOracle
    reads: list[OracleRead] = field(default_factory=list)

    def effective_key(self, key: bytes) -> bytes:
        return self.inner.effective_key(key)

    def preimage_length(self, effective_key: bytes) -> int:
        self.reads.append(OracleRead(bytes(effective_key), None))
        return self.inner.preimage_length(effective_key)

    def preimage_part(self, effective_key: bytes, part_offset: int) -> bytes:
        self.reads.append(OracleRead(bytes(effective_key), part_offset))
        return self.inner.preimage_part(effective_key, part_offset)


def as_oracle(oracle: PreimageOracle | None) -> PreimageOracle:
    """``oracle``, or :data:`NO_ORACLE` for ``None``."""
    return NO_ORACLE if oracle is None else oracle
