"""The base layer as a hybrid file stores it: the AV1 data alone, without the 275 bytes of AVIF boxes around it.

Every AVIF that Pillow writes for a base layer has the same boxes (ftyp, meta with its hdlr, pitm, iloc, iinf and
iprp, and mdat); only the image's size, the AV1 configuration record (av1C, 4 bytes) and the data's length differ,
and the file's header gives the size. At 0.04 bits per pixel a 480x360 image has 864 bytes in all, so the boxes
would take a third of them. So the encoder keeps the av1C record and the AV1 units, and the decoder writes the boxes
back around them: the same bytes Pillow wrote, so the same pixels.

A payload is either form, told apart by its first byte: an AVIF file starts with its ftyp box's size (0x00 ...),
a compact one with the av1C record's marker and version (0x81). The encoder stores the compact form only when
writing the boxes back gives its file byte for byte (`shrink`), so a libavif that one day writes other boxes costs
those bytes, never a picture.
"""

from __future__ import annotations

import struct

from service.codec.errors import CorruptBitstream

AV1C_BYTES = 4
AV1C_MARKER = 0x81
"""The av1C record's first byte: marker bit and version 1 (AV1-ISOBMFF, section 2.3.3)."""
_ITEM_NAME = b"Color\x00"
_COLOUR = struct.pack(">4sHHHB", b"nclx", 1, 13, 6, 0x80)
"""colour primaries BT.709, transfer sRGB, matrix BT.601, full range: what Pillow's encoder declares."""


def shrink(avif: bytes, columns: int, rows: int) -> bytes:
    """The compact payload for a columns x rows AVIF, or the AVIF itself when its boxes are not the usual ones."""
    start = avif.find(b"av1C")
    if start < 4 or len(avif) < _BOXES_BYTES:
        return avif
    record = avif[start + 4 : start + 4 + AV1C_BYTES]
    boxes = _boxes(record, columns, rows, len(avif) - _BOXES_BYTES)
    return record + avif[_BOXES_BYTES:] if avif.startswith(boxes) else avif


def expand(payload: bytes, columns: int, rows: int) -> bytes:
    """The AVIF file of a stored payload, compact or not."""
    if payload[:1] == b"\x00":
        return payload
    if len(payload) < AV1C_BYTES or payload[0] != AV1C_MARKER:
        raise CorruptBitstream("base layer is neither an AVIF file nor a compact AV1 payload")
    record, units = payload[:AV1C_BYTES], payload[AV1C_BYTES:]
    return _boxes(record, columns, rows, len(units)) + units


def _boxes(record: bytes, columns: int, rows: int, data_bytes: int) -> bytes:
    """Every byte of the file before the AV1 data, as Pillow (libavif) writes them for one image item."""
    ftyp = _box(b"ftyp", b"avif" + bytes(4) + b"avifmif1miafMA1B")
    hdlr = _full_box(b"hdlr", bytes(4) + b"pict" + bytes(12) + b"\x00")
    pitm = _full_box(b"pitm", struct.pack(">H", 1))
    infe = _full_box(b"infe", struct.pack(">HH4s", 1, 0, b"av01") + _ITEM_NAME, version=2)
    iinf = _full_box(b"iinf", struct.pack(">H", 1) + infe)
    properties = (
        _full_box(b"ispe", struct.pack(">II", columns, rows))
        + _full_box(b"pixi", bytes([3, 8, 8, 8]))
        + _box(b"av1C", record)
        + _box(b"colr", _COLOUR)
    )
    ipma = _full_box(b"ipma", struct.pack(">IHB4B", 1, 1, 4, 1, 2, 0x83, 4))
    iprp = _box(b"iprp", _box(b"ipco", properties) + ipma)

    def meta(offset: int) -> bytes:
        iloc = _full_box(b"iloc", struct.pack(">BBHHHHII", 0x44, 0, 1, 1, 0, 1, offset, data_bytes))
        return _full_box(b"meta", hdlr + pitm + iloc + iinf + iprp)

    offset = len(ftyp) + len(meta(0)) + 8  # the data starts after the mdat box's header
    return ftyp + meta(offset) + struct.pack(">I4s", 8 + data_bytes, b"mdat")


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full_box(kind: bytes, body: bytes, version: int = 0) -> bytes:
    return _box(kind, struct.pack(">I", version << 24) + body)


_BOXES_BYTES = len(_boxes(bytes(AV1C_BYTES), 1, 1, 0))
"""The boxes' length, whatever the size and record: every field in them has a fixed width (275 bytes)."""
