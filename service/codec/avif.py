"""A hybrid file's AVIF base, checked before libavif decodes it, so that decoding costs what the header's size
allows.

libavif checks the size an AVIF declares (its `ispe` property) against its own limits (268 Mpixels, 32768 pixels
a side), but dav1d decodes the AV1 frame at the size the frame's own headers give, up to the same limit, and
libavif then fits the result to the declared size: a 3 KB file declaring a 2x2 base held a 16384x16384 frame that
took 534 MiB and 2.4 s to decode into a 2x2 image. So the base must be what the encoder writes, one AV1 image
item and no image sequence (whose frames libavif reads from tracks), holding one frame, and no sequence header
in it may allow frames more than twice the base's size on a side.
"""

from __future__ import annotations

from collections.abc import Iterator

from service.codec.errors import CorruptBitstream

SEQUENCE_HEADER = 1
FRAME_HEADERS = (3, 6, 7)
"""OBU types that start a frame: frame header, frame, and a redundant frame header (which dav1d reads as a frame
header when none came before)."""
MAX_FRAME_RATIO = 2
"""How many times the base's size an AV1 frame may be on each side. A frame header gives its size in as many bits
as the sequence header says, and encoders give the fewest that hold the base (aom: enough for the side less one),
so a frame of the base's size never needs more than twice its side."""
MAX_BOXES = 64
"""Boxes read side by side: an AVIF has a handful (ftyp, meta and mdat; hdlr, pitm, iloc, iinf, iprp and a few
more inside meta), and walking 32 MiB of empty boxes in Python would take seconds."""
MAX_UNITS = 8192
"""AV1 OBUs read from the item: a frame has at most 4096 tiles, and so at most 4096 tile groups, beside a few
headers; 32 MiB of empty OBUs would take half a minute to walk."""
_SEQUENCE_HEADER_BYTES = 512
"""More than a sequence header's fields up to its frame size ever take (32 operating points: about 380 bytes)."""


def check_base(data: bytes, rows: int, columns: int) -> None:
    """Refuse an AVIF that is not one AV1 image item, whose item holds more than one frame, or whose sequence
    headers allow frames more than MAX_FRAME_RATIO times `rows` x `columns` on a side (CorruptBitstream)."""
    item = item_data(data)
    frames = 0
    for kind, start, end in obus(item):
        if kind == SEQUENCE_HEADER:
            width, height = largest_frame(item[start : min(end, start + _SEQUENCE_HEADER_BYTES)])
            if width > MAX_FRAME_RATIO * columns or height > MAX_FRAME_RATIO * rows:
                raise CorruptBitstream(
                    f"base layer's AV1 sequence header allows {width}x{height} frames; the base is {columns}x{rows}"
                )
        elif kind in FRAME_HEADERS:
            frames += 1
    if frames > 1:
        raise CorruptBitstream(f"base layer's AV1 image holds {frames} frames, not one")


def item_data(data: bytes) -> bytes:
    """The bytes of the file's one item, which must be an AV1 image (`av01`): what libavif would decode."""
    meta = None
    for kind, body, end in _boxes(data, 0, len(data)):
        if kind == b"moov":
            raise CorruptBitstream("base layer is an image sequence, not one AVIF image")
        if kind == b"meta":
            if meta is not None:
                raise _unreadable("it has two meta boxes")
            meta = (body + 4, end)  # a full box: version and flags first
    if meta is None:
        raise _unreadable("it has no meta box")
    boxes: dict[bytes, tuple[int, int]] = {}
    for kind, body, end in _boxes(data, *meta):
        if kind in (b"iinf", b"iloc", b"idat"):
            if kind in boxes:
                raise _unreadable(f"it has two {kind.decode()} boxes")
            boxes[kind] = (body, end)
    if b"iinf" not in boxes or b"iloc" not in boxes:
        raise _unreadable("it has no item information or locations")
    item = _only_item(data, *boxes[b"iinf"])
    return _located(data, *boxes[b"iloc"], item, boxes.get(b"idat"))


def obus(item: bytes) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each AV1 OBU in an item's bytes."""
    at, units = 0, 0
    while at < len(item):
        units += 1
        if units > MAX_UNITS:
            raise CorruptBitstream(f"base layer's AV1 image has more than {MAX_UNITS} units")
        header = item[at]
        at += 1 + (header >> 2 & 1)  # the extension byte
        if header & 2:
            size, at = _leb128(item, at)
        else:
            size = len(item) - at
        if at + size > len(item):
            raise _unreadable("its AV1 data is truncated")
        yield header >> 3 & 15, at, at + size
        at += size


def largest_frame(header: bytes) -> tuple[int, int]:
    """(width, height) of the largest frame an AV1 sequence header allows, read as dav1d reads it: a reduced
    still-picture header's frame is its maximum size; any other frame may give a size in the header's bits."""
    bits = _Bits(header)
    bits.read(4)  # seq_profile, still_picture
    reduced = bits.read(1)
    if reduced:
        bits.read(5)  # seq_level_idx
    else:
        decoder_model, delay_bits = 0, 0
        if bits.read(1):  # timing_info_present_flag
            bits.read(64)  # num_units_in_display_tick, time_scale
            if bits.read(1):  # equal_picture_interval
                bits.uvlc()  # num_ticks_per_picture_minus_1
            decoder_model = bits.read(1)
            if decoder_model:
                delay_bits = bits.read(5) + 1
                bits.read(42)  # num_units_in_decoding_tick, buffer_removal_time and presentation_time lengths
        display_model = bits.read(1)
        for _ in range(bits.read(5) + 1):  # operating points
            bits.read(12)  # operating_point_idc
            if bits.read(5) > 7:  # seq_level_idx
                bits.read(1)  # seq_tier
            if decoder_model and bits.read(1):
                bits.read(2 * delay_bits + 1)  # decoder and encoder buffer delays, low_delay_mode_flag
            if display_model and bits.read(1):
                bits.read(4)  # initial_display_delay_minus_1
    width_bits, height_bits = bits.read(4) + 1, bits.read(4) + 1
    if not reduced:
        return 1 << width_bits, 1 << height_bits
    return bits.read(width_bits) + 1, bits.read(height_bits) + 1


class _Bits:
    """Reads big-endian bit fields; reading past the end is a corrupt header."""

    def __init__(self, data: bytes) -> None:
        self.value, self.left = int.from_bytes(data, "big"), 8 * len(data)

    def read(self, count: int) -> int:
        if count > self.left:
            raise _unreadable("its AV1 sequence header is truncated")
        self.left -= count
        return self.value >> self.left & ((1 << count) - 1)

    def uvlc(self) -> int:
        zeros = 0
        while not self.read(1):
            zeros += 1
            if zeros == 32:  # dav1d refuses the header
                raise _unreadable("its AV1 sequence header has an invalid number")
        return self.read(zeros) + (1 << zeros) - 1


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, end) of each ISO-BMFF box in data[start:end]."""
    for _ in range(MAX_BOXES):
        if start >= end:
            return
        if end - start < 8:
            raise _unreadable("it ends inside a box header")
        size, kind, body = int.from_bytes(data[start : start + 4], "big"), data[start + 4 : start + 8], start + 8
        if size == 1:  # a 64-bit size follows
            size, body = _uint(data, body, 8, end), body + 8
        elif size == 0:  # to the end
            size = end - start
        if size < body - start or size > end - start:
            raise _unreadable("a box has an impossible size")
        yield kind, body, start + size
        start += size
    if start < end:
        raise CorruptBitstream(f"base layer has more than {MAX_BOXES} boxes side by side")


def _only_item(data: bytes, body: int, end: int) -> int:
    """The id of the item information box's one item, which must be an AV1 image."""
    version = _uint(data, body, 1, end)
    entries = [(entry, entry_end) for _, entry, entry_end in _boxes(data, body + (6 if version == 0 else 8), end)]
    if len(entries) != 1:
        raise CorruptBitstream(f"base layer has {len(entries)} items, not one AV1 image")
    entry, entry_end = entries[0]
    version = _uint(data, entry, 1, entry_end)
    id_bytes = 2 if version == 2 else 4
    if version < 2 or _bytes(data, entry + 6 + id_bytes, 4, entry_end) != b"av01":
        raise CorruptBitstream("base layer's item is not an AV1 image")
    return _uint(data, entry + 4, id_bytes, entry_end)


def _located(data: bytes, body: int, end: int, item: int, idat: tuple[int, int] | None) -> bytes:
    """The item's bytes from the item location box: its extents, in the file or in the item data box, joined."""
    version = _uint(data, body, 1, end)
    sizes = _uint(data, body + 4, 2, end)
    offset_size, length_size, base_size = sizes >> 12, sizes >> 8 & 15, sizes >> 4 & 15
    index_size = sizes & 15 if version in (1, 2) else 0
    if version > 2 or not {offset_size, length_size, base_size, index_size} <= {0, 4, 8}:
        raise _unreadable("its item locations are malformed")
    count_size = 2 if version < 2 else 4
    at = body + 6
    if _uint(data, at, count_size, end) != 1:
        raise _unreadable("its item locations are not those of one item")
    at += count_size
    if _uint(data, at, count_size, end) != item:
        raise _unreadable("its item has no location")
    at += count_size
    method = 0
    if version in (1, 2):
        method, at = _uint(data, at, 2, end) & 15, at + 2
    at += 2  # data_reference_index
    base, at = _uint(data, at, base_size, end), at + base_size
    if method == 0:
        origin, limit = 0, len(data)
    elif method == 1 and idat is not None:
        origin, limit = idat
    else:
        raise _unreadable("its item is stored in a way this decoder does not read")
    extents, at = _uint(data, at, 2, end), at + 2
    parts, total = [], 0
    for _ in range(extents):
        at += index_size
        offset, at = _uint(data, at, offset_size, end), at + offset_size
        length, at = _uint(data, at, length_size, end), at + length_size
        start = origin + base + offset
        stop = limit if length == 0 else start + length  # 0: to the end
        total += stop - start
        if start > stop or stop > limit or total > len(data):
            raise _unreadable("its item lies outside the file")
        parts.append(data[start:stop])
    return b"".join(parts)


def _unreadable(reason: str) -> CorruptBitstream:
    return CorruptBitstream(f"base layer is not a readable AVIF image: {reason}")


def _uint(data: bytes, at: int, size: int, end: int) -> int:
    return int.from_bytes(_bytes(data, at, size, end), "big")


def _bytes(data: bytes, at: int, size: int, end: int) -> bytes:
    if at + size > end:
        raise _unreadable("it ends inside a box")
    return data[at : at + size]


def _leb128(data: bytes, at: int) -> tuple[int, int]:
    """An OBU size: LEB128 of at most 8 bytes, as AV1 has it; (value, position after it)."""
    value = 0
    for index in range(8):
        if at + index >= len(data):
            break
        byte = data[at + index]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, at + index + 1
    raise _unreadable("its AV1 data has a malformed size")
