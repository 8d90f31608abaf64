"""Uploads to the on-chain ``PreimageOracle`` exactly the parts that a step needs (oracle-spec §4).

A VM step that reads the oracle needs, for its effective key (the localized key for a local key), the
part at ``offset − offset % 32`` when ``offset`` is below the length, and otherwise only the length.
Parts already on-chain (``preimagePartOk``) are never sent again.
"""

from __future__ import annotations

from opml.oracle.chunk_tree import check_part_offset
from opml.oracle.errors import PartNotLoadedError, PreimageNotFoundError
from opml.oracle.keys import PART_SIZE, KeyType, address_bytes, key_type
from opml.oracle.store import PreimageStore


class OracleClient:
    """Reveals parts of the preimages in ``store`` on ``oracle`` (an ape contract) as ``sender``."""

    def __init__(self, oracle_contract, store: PreimageStore, sender):
        self.oracle = oracle_contract
        self.store = store
        self.sender = sender

    def part_ok(self, key: bytes, part_offset: int) -> bool:
        return bool(self.oracle.preimagePartOk(key, part_offset))

    def ensure_part(self, key: bytes, part_offset: int):
        """Make the part of ``key`` at ``part_offset`` readable on-chain; return the receipt, or
        ``None`` when it already was."""
        key = bytes(key)
        if part_offset % PART_SIZE:
            check_part_offset(part_offset, 0)  # raises InvalidPartOffsetError
        if self.part_ok(key, part_offset):
            return None
        kind = key_type(key)
        if kind == KeyType.LOCAL:
            try:
                local = self.store.local_value(key)
            except PreimageNotFoundError:
                raise PartNotLoadedError(f"local key {key.hex()} is not on-chain nor in the store") from None
            if local.caller != address_bytes(self.sender):
                raise PartNotLoadedError(
                    f"local key {key.hex()} can only be stored by 0x{local.caller.hex()} (spec §1.1)"
                )
            check_part_offset(part_offset, local.size)
            return self.oracle.loadLocalData(
                local.ident, local.local_context, local.word, local.size, sender=self.sender
            )
        if kind == KeyType.KECCAK:
            data = self.store.get(key)
            check_part_offset(part_offset, len(data))
            return self.oracle.loadKeccak256PreimagePart(part_offset, data, sender=self.sender)
        proof = self.store.proof(key, part_offset)
        return self.oracle.loadChunkMerklePart(*proof.args(), sender=self.sender)

    def ensure_length(self, key: bytes):
        """Make the length of ``key`` readable on-chain (by revealing part 0 if nothing is there)."""
        if self.oracle.preimageLengthOk(bytes(key)):
            return None
        return self.ensure_part(key, 0)

    def ensure_read(self, key: bytes, offset: int):
        """What a ``preimage_read`` at byte ``offset`` of the effective ``key`` needs: the part holding
        ``offset`` if it is below the length, else the length alone."""
        key = bytes(key)
        length = (
            self.store.length(key) if key_type(key) != KeyType.LOCAL else self.store.local_value(key).size
        )
        if offset < length:
            return self.ensure_part(key, offset - offset % PART_SIZE)
        return self.ensure_length(key)

    def load_local(self, ident: int, local_context: bytes, value: bytes, size: int | None = None):
        """Store local value ``ident`` for ``local_context`` (localized with ``sender``) in the store
        and on-chain; return ``(key, receipt or None)``. ``size`` defaults to ``len(value)``."""
        value = bytes(value)
        if size is not None:
            if size < len(value.rstrip(b"\0")) or size > PART_SIZE:
                raise ValueError(f"size {size} does not fit value of {len(value)} bytes")
            value = value[:size] + bytes(max(0, size - len(value)))
        key = self.store.put_local(ident, self.sender, local_context, value)
        local = self.store.local_value(key)
        if (
            self.part_ok(key, 0)
            and bytes(self.oracle.preimageParts(key, 0)) == local.word
            and self.oracle.preimageLengths(key) == local.size
        ):
            return key, None
        receipt = self.oracle.loadLocalData(ident, local_context, local.word, local.size, sender=self.sender)
        return key, receipt
