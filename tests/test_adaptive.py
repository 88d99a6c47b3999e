"""Context-adaptive coding of SC masks and label maps: exact round trips, stable bytes, cheap uniform grids,
and no hang or crash on garbage."""

from __future__ import annotations

import constriction
import numpy as np
import pytest

from service.codec import CorruptBitstream
from service.codec.adaptive import MASK_MODEL, ContextModel, label_model
from service.codec.entropy import check_exhausted, invalid_data_is_corrupt, open_payload, to_payload


def _encode(model: ContextModel, grid: np.ndarray, given: np.ndarray | None = None) -> bytes:
    encoder = constriction.stream.queue.RangeEncoder()
    model.encode(encoder, grid, given)
    return to_payload(encoder)


def _decode(
    model: ContextModel, payload: bytes, rows: int, columns: int, given: np.ndarray | None = None
) -> np.ndarray:
    decoder = open_payload(payload)
    with invalid_data_is_corrupt():
        grid = model.decode(decoder, rows, columns, given)
    check_exhausted(decoder)
    return grid


@pytest.mark.parametrize("model", [MASK_MODEL, label_model(12), label_model(300)], ids=["mask", "12", "300"])
@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (23, 30), (1, 40)])
def test_grids_round_trip(model, shape):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    blocks = rng.integers(0, model.alphabet, size=(shape[0] // 4 + 1, shape[1] // 4 + 1))
    grid = np.kron(blocks, np.ones((4, 4), dtype=np.int64))[: shape[0], : shape[1]]  # regions, as maps have
    grid[rng.random(shape) < 0.1] = rng.integers(0, model.alphabet)
    decoded = _decode(model, _encode(model, grid), *shape)
    np.testing.assert_array_equal(decoded, grid)


def test_a_mask_that_follows_the_labels_costs_a_few_bytes_given_them():
    rng = np.random.default_rng(1)
    labels = np.kron(rng.integers(0, 12, size=(12, 15)), np.ones((6, 8), dtype=np.int64)).astype(np.uint8)
    mask = (~np.isin(labels, [0, 1, 3, 5])).astype(np.uint8)  # sky, building, road and tree synthesised
    coded = _encode(MASK_MODEL, mask, labels)
    np.testing.assert_array_equal(_decode(MASK_MODEL, coded, *mask.shape, labels), mask)
    assert len(coded) <= 16 and 10 * len(coded) < len(_encode(MASK_MODEL, mask))  # 12 against 168 bytes
    with pytest.raises(ValueError, match="side information"):
        _encode(MASK_MODEL, mask, labels[1:])


def test_payload_bytes_are_stable():
    """Golden bytes: a change here means SC files written before would no longer decode."""
    mask = np.array([[1, 1, 0, 0], [1, 0, 0, 1], [1, 1, 1, 1]], dtype=np.uint8)
    labels = np.array([[0, 0, 3, 3], [1, 1, 3, 11], [5, 5, 5, 11]], dtype=np.uint8)
    assert _encode(MASK_MODEL, mask).hex() == "b0560198"
    assert _encode(label_model(12), labels).hex() == "2cb03d0e131e0394"


def test_uniform_grids_cost_a_few_bytes():
    for value in (0, 1):
        assert len(_encode(MASK_MODEL, np.full((68, 120), value, dtype=np.uint8))) <= 8
    assert len(_encode(label_model(12), np.full((68, 120), 7, dtype=np.uint8))) <= 8


def test_values_outside_the_alphabet_are_refused():
    with pytest.raises(ValueError):
        _encode(label_model(12), np.array([[12]]))


def test_garbage_decodes_or_raises_corrupt_bitstream():
    rng = np.random.default_rng(0)
    for _ in range(30):
        garbage = rng.integers(0, 256, size=4 * int(rng.integers(0, 20)), dtype=np.uint8).tobytes()
        try:
            grid = _decode(label_model(12), garbage, 9, 7)
        except CorruptBitstream:
            continue
        assert grid.shape == (9, 7) and int(grid.max()) < 12
