"""fp16 block scales through the table of all 2^16 bit patterns (``blocks.scale_ints``, ml-spec §1):
at every ``F`` the table gives the formula's integer for each valid pattern and marks exactly the
patterns the formula rejects; a tensor with a bad scale still gets the formula's typed error, rule by
rule in the spec's order."""

import numpy as np
import pytest

from opml.ml import blocks
from opml.ml.errors import BadScaleError, ScaleRangeError

ALL = np.arange(1 << 16, dtype=np.int64)


def by_hand(h: int, f: int) -> int | None:
    """``D`` of the fp16 bits ``h`` at ``F`` in Python integers, ``None`` if a rule rejects it."""
    sign, exp, frac = h >> 15, (h >> 10) & 31, h & 1023
    if exp == 31 or (exp == 0 and frac):
        return None
    if exp == 0:
        return 0
    n = exp - 25 + f
    sig = 1024 + frac
    if n < 0 and sig % (1 << -n):
        return None
    mag = sig << n if n >= 0 else sig >> -n
    if mag >= blocks.SCALE_LIMIT:
        return None
    return -mag if sign else mag


@pytest.mark.parametrize("f", range(blocks.MAX_F + 1))
def test_the_table_is_the_rule_for_every_pattern(f):
    values, ok = blocks._scale_table(f)
    want = [by_hand(h, f) for h in range(1 << 16)]
    assert ok.tolist() == [w is not None for w in want]
    assert values.tolist() == [0 if w is None else w for w in want]


@pytest.mark.parametrize(
    "bits, error, message",
    [
        (0x7C00, BadScaleError, "Inf or NaN"),
        (0x0001, BadScaleError, "subnormal"),
        (0x3C01, ScaleRangeError, "not a multiple"),  # 1 + 2^-10 at F = 0
        (0x7800, ScaleRangeError, "2\\^24 or more"),  # 2^15 at F = 10
    ],
)
def test_a_bad_scale_among_good_ones_is_the_formulas_error(bits, error, message):
    f = 10 if bits == 0x7800 else 0
    good = np.full(1000, 0x3C00, np.uint16)  # 1.0
    good[617] = bits
    with pytest.raises(error, match=message):
        blocks.scale_ints(good, f, "here")
    assert blocks.scale_ints(np.full(4, 0x3C00, np.uint16), f, "here").tolist() == [1 << f] * 4
