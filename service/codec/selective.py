"""The sections of an SC file (docs/bitstream.md): the payload codes the preservation mask, then the kept symbols
channel by channel, in one range-coded stream; the label map is coded in a section of its own, so that its cost
can be read off the file."""

from __future__ import annotations

import constriction
import numpy as np

from service.codec.adaptive import MASK_MODEL, label_model
from service.codec.entropy import EntropyCoder, check_exhausted, invalid_data_is_corrupt, open_payload, to_payload


def encode_kept(coder: EntropyCoder, symbols: np.ndarray, keep: np.ndarray) -> bytes:
    """Symbols (channels, rows, columns) and the mask (rows, columns) -> payload: the mask, then kept symbols."""
    encoder = constriction.stream.queue.RangeEncoder()
    MASK_MODEL.encode(encoder, keep.astype(np.uint8))
    coder.write(encoder, symbols, keep)
    return to_payload(encoder)


def decode_kept(coder: EntropyCoder, payload: bytes, rows: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Payload -> (mask bool (rows, columns), symbols uint8 (channels, rows, columns), 0 where not kept)."""
    decoder = open_payload(payload)
    with invalid_data_is_corrupt():
        keep = MASK_MODEL.decode(decoder, rows, columns).astype(bool)
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
