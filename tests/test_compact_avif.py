"""A hybrid file's base in compact form: the AV1 data without the AVIF boxes, which the decoder writes back byte for
byte; files holding the whole AVIF (as the first hybrid files did) still decode."""

from __future__ import annotations

import numpy as np
import pytest

from service.codec import CorruptBitstream
from service.codec.base import BaseLayer
from service.codec.compact_avif import AV1C_MARKER, expand, shrink


def noise(rows: int, columns: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (rows, columns, 3), dtype=np.uint8)


@pytest.mark.parametrize(("rows", "columns"), [(1, 1), (2, 3), (33, 17), (90, 120), (270, 480)])
@pytest.mark.parametrize("quality", [0, 60, 100])
def test_the_boxes_written_back_are_pillows_byte_for_byte(rows: int, columns: int, quality: int) -> None:
    avif = BaseLayer().encode(noise(rows, columns), quality)
    compact = shrink(avif, columns, rows)
    assert compact[0] == AV1C_MARKER
    assert len(avif) - len(compact) > 250
    assert expand(compact, columns, rows) == avif


def test_an_avif_whose_boxes_differ_is_stored_whole() -> None:
    avif = BaseLayer().encode(noise(20, 30), 50)
    assert shrink(avif, 31, 20) == avif  # the size the header gives is not the file's
    assert expand(avif, 30, 20) == avif


def test_a_444_base_is_stored_compact_or_whole_and_decodes_the_same() -> None:
    layer = BaseLayer(subsampling="4:4:4")
    small = noise(24, 32, seed=1)
    payload = layer.payload(small, 40)
    assert np.array_equal(layer.decode(payload, (24, 32)), layer.decode(layer.encode(small, 40), (24, 32)))


def test_the_whole_avif_and_its_compact_form_decode_to_the_same_pixels() -> None:
    layer = BaseLayer()
    small = noise(45, 60, seed=2)
    whole = layer.encode(small, 30)
    assert np.array_equal(layer.decode(whole, (45, 60)), layer.decode(layer.payload(small, 30), (45, 60)))


@pytest.mark.parametrize("payload", [b"", b"\x81\x00", b"\x42" * 40, b"\x81\x00\x0c\x00" + b"\xff" * 40])
def test_a_payload_of_neither_form_is_corrupt(payload: bytes) -> None:
    with pytest.raises(CorruptBitstream):
        BaseLayer().decode(payload, (8, 8))
