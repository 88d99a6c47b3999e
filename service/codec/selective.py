"""The sections of an SC file (docs/bitstream.md): the payload codes the preservation mask, then the kept symbols
channel by channel, in one range-coded stream; the label map is coded in a section of its own, so that its cost
can be read off the file. With a label map, the mask is coded from its neighbours or from the labels, whichever
is shorter (a header flag says which): a mask made by synthesising classes follows from the labels."""

from __future__ import annotations

import constriction
import numpy as np

from service.codec.adaptive import MASK_MODEL, label_model
from service.codec.entropy import EntropyCoder, check_exhausted, invalid_data_is_corrupt, open_payload, to_payload


def encode_kept(
    coder: EntropyCoder, symbols: np.ndarray, keep: np.ndarray, labels: np.ndarray | None = None
) -> tuple[bytes, bool]:
    """Symbols (channels, rows, columns), the mask (rows, columns) and the label map if the file carries one ->
    (payload: the mask, then kept symbols; whether the mask was coded from the labels)."""
    candidates = [(_payload(coder, symbols, keep, None), False)]
    if labels is not None:
        candidates.append((_payload(coder, symbols, keep, on_grid(labels, *keep.shape)), True))
    return min(candidates, key=lambda candidate: len(candidate[0]))


def _payload(coder: EntropyCoder, symbols: np.ndarray, keep: np.ndarray, given: np.ndarray | None) -> bytes:
    encoder = constriction.stream.queue.RangeEncoder()
    MASK_MODEL.encode(encoder, keep.astype(np.uint8), given)
    coder.write(encoder, symbols, keep)
    return to_payload(encoder)


def decode_kept(
    coder: EntropyCoder, payload: bytes, rows: int, columns: int, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Payload -> (mask bool (rows, columns), symbols uint8 (channels, rows, columns), 0 where not kept);
    `labels`: the decoded label map when the mask was coded from it."""
    decoder = open_payload(payload)
    given = None if labels is None else on_grid(labels, rows, columns)
    with invalid_data_is_corrupt():
        keep = MASK_MODEL.decode(decoder, rows, columns, given).astype(bool)
    symbols = coder.read(decoder, keep)
    check_exhausted(decoder)
    return keep, symbols


def encode_labels(ids: np.ndarray, classes: int) -> bytes:
    """Class ids (rows, columns) at the label resolution -> the label-map section."""
    encoder = constriction.stream.queue.RangeEncoder()
    label_model(classes).encode(encoder, ids)
    return to_payload(encoder)


def decode_labels(section: bytes, rows: int, columns: int, classes: int) -> np.ndarray:
    decoder = open_payload(section)
    with invalid_data_is_corrupt():
        ids = label_model(classes).decode(decoder, rows, columns)
    check_exhausted(decoder)
    return ids


def on_grid(labels: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """The label map (at its own resolution) read at each cell of the mask's rows x columns grid: the label
    cell holding the cell's top-left corner."""
    return labels[np.ix_(np.arange(rows) * labels.shape[0] // rows, np.arange(columns) * labels.shape[1] // columns)]
