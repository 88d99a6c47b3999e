"""The .gcx container: a small header, the entropy-coded payload and a CRC-32 (byte layout in docs/bitstream.md).

Parsing validates every field against the bytes actually present and the caller's pixel cap before anything
the header claims is allocated; every malformed input raises CorruptBitstream with a message saying what is wrong.

Version 2 adds selective compression (SC): mode 1, and an optional label-map section before the payload (and a
flag saying the payload's mask was coded from that label map). A file is written with the lowest version that can
hold it, so GC files stay version 1, byte for byte.

Version 3 adds the detail section (service/codec/detail.py): the original's band RMS, a byte per band, after the
noise seed; GC and SC files alike carry it when their encoder measured it.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

from service.codec.errors import CorruptBitstream, ImageTooLarge

MAGIC = b"GCX"
VERSION = 1
"""GC files."""
SELECTIVE_VERSION = 2
"""SC files; readers of version 2 read version 1 too."""
DETAIL_VERSION = 3
"""Files with a detail section, GC or SC; readers of version 3 read versions 1 and 2 too."""
MAX_DETAIL_BANDS = 8
FINGERPRINT_BYTES = 8
CRC_BYTES = 4
MAX_VARINT_BYTES = 5
"""Widths, heights and lengths are below 2**35; longer varints are rejected rather than read on and on."""
MODEL_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_SIDE = 65535
"""Largest width or height of an image or a file, whatever the pixel cap (JPEG's own limit; no photo within the
cap comes near it). A 1-pixel-wide image a million pixels tall is well within a 16-Mpixel cap, but the codec pads
its width to 32 pixels and the networks run over the padded image: the side limit bounds that work too."""

_MODE_MASK = 0x0F
_SEED_FLAG = 0x10
_LABELS_FLAG = 0x20
_MASK_FROM_LABELS_FLAG = 0x40
_DETAIL_FLAG = 0x80
_RESERVED_FLAGS = {VERSION: 0xE0, SELECTIVE_VERSION: 0x80, DETAIL_VERSION: 0x00}


class Mode(IntEnum):
    """How the image was coded: GC (global, the whole image from the latent); SC (selective: the latent under a
    preservation mask, the rest painted from a label map)."""

    GC = 0
    SC = 1


@dataclass(frozen=True)
class Header:
    model_id: str
    fingerprint: bytes
    """First 8 bytes of the model's fingerprint (see manifest.py), so a file names the exact model."""
    width: int
    height: int
    mode: Mode = Mode.GC
    seed: int | None = None
    """Seed of the generator's noise channels (u32); present only for models with noise channels."""
    mask_from_labels: bool = False
    """SC with a label map: the payload's preservation mask is coded with the labels as its context."""
    detail: bytes | None = None
    """The original's coded band RMS, one byte per band, finest first (detail.py); None: no detail restoration."""

    @property
    def version(self) -> int:
        """The lowest format version that holds this header."""
        if self.detail is not None:
            return DETAIL_VERSION
        return VERSION if self.mode is Mode.GC else SELECTIVE_VERSION


@dataclass(frozen=True)
class Bitstream:
    header: Header
    payload: bytes
    size: int
    """Length of the whole file in bytes, header and checksum included (what bits per pixel count)."""
    labels: bytes | None = None
    """SC: the entropy-coded label map, a section of its own so that its cost can be reported; None: no map."""

    @property
    def label_bytes(self) -> int:
        """What the label map costs in the file: its section, length field included (0 without one)."""
        return 0 if self.labels is None else len(_varint(len(self.labels))) + len(self.labels)


def pack(header: Header, payload: bytes, labels: bytes | None = None) -> bytes:
    """Serialise a header, the payload and (SC only) the label-map section into a complete .gcx file."""
    if not MODEL_ID_PATTERN.fullmatch(header.model_id):
        raise ValueError(f"model id {header.model_id!r} is not 1-64 characters of [A-Za-z0-9._-]")
    if len(header.fingerprint) != FINGERPRINT_BYTES:
        raise ValueError(f"fingerprint must be {FINGERPRINT_BYTES} bytes")
    if header.width < 1 or header.height < 1:
        raise ValueError(f"image size must be positive, got {header.width}x{header.height}")
    if labels is not None and header.mode is not Mode.SC:
        raise ValueError("only SC files carry a label map")
    if header.mask_from_labels and labels is None:
        raise ValueError("a mask coded from the label map needs the label map")
    if header.detail is not None and not 1 <= len(header.detail) <= MAX_DETAIL_BANDS:
        raise ValueError(f"a detail section holds 1-{MAX_DETAIL_BANDS} bands, got {len(header.detail)}")
    flags = int(header.mode)
    if header.seed is not None:
        flags |= _SEED_FLAG
    if labels is not None:
        flags |= _LABELS_FLAG
    if header.mask_from_labels:
        flags |= _MASK_FROM_LABELS_FLAG
    if header.detail is not None:
        flags |= _DETAIL_FLAG
    out = bytearray(MAGIC)
    out += bytes([header.version, flags, len(header.model_id)])
    out += header.model_id.encode("ascii")
    out += header.fingerprint
    out += _varint(header.width) + _varint(header.height)
    if header.seed is not None:
        out += struct.pack("<I", header.seed)
    if header.detail is not None:
        out += bytes([len(header.detail)]) + header.detail
    for section in (labels, payload):
        if section is not None:
            out += _varint(len(section)) + section
    out += struct.pack("<I", zlib.crc32(out))
    return bytes(out)


def unpack(data: bytes, max_pixels: int) -> Bitstream:
    """Parse and validate a .gcx file; sizes above `max_pixels`, or a side above MAX_SIDE, raise ImageTooLarge
    before any allocation."""
    reader = _Reader(data)
    if reader.take(len(MAGIC), "magic") != MAGIC:
        raise CorruptBitstream("not a gancodec file (the magic bytes are not 'GCX')")
    version = reader.byte("format version")
    if version not in _RESERVED_FLAGS:
        raise CorruptBitstream(
            f"unsupported format version {version}: this gancodec reads versions {VERSION} to {DETAIL_VERSION}"
        )
    flags = reader.byte("flags")
    if flags & _RESERVED_FLAGS[version]:
        raise CorruptBitstream(f"reserved flag bits are set (flags 0x{flags:02x})")
    try:
        mode = Mode(flags & _MODE_MASK)
    except ValueError:
        raise CorruptBitstream(f"unknown coding mode {flags & _MODE_MASK}") from None
    if mode is Mode.SC and version == VERSION:
        raise CorruptBitstream(f"coding mode sc needs format version {SELECTIVE_VERSION}, the file says {version}")
    if flags & _LABELS_FLAG and mode is not Mode.SC:
        raise CorruptBitstream("a label map is flagged in a file that is not in mode sc")
    if flags & _MASK_FROM_LABELS_FLAG and not flags & _LABELS_FLAG:
        raise CorruptBitstream("the mask is flagged as coded from a label map the file does not carry")
    id_length = reader.byte("model id length")
    model_id = reader.take(id_length, "model id").decode("ascii", errors="replace")
    if not MODEL_ID_PATTERN.fullmatch(model_id):
        raise CorruptBitstream("the model id is not 1-64 characters of [A-Za-z0-9._-]")
    fingerprint = reader.take(FINGERPRINT_BYTES, "model fingerprint")
    width = reader.varint("width")
    height = reader.varint("height")
    if width < 1 or height < 1:
        raise CorruptBitstream(f"the header gives an empty image ({width}x{height})")
    if max(width, height) > MAX_SIDE:
        raise ImageTooLarge(f"the file declares a {width}x{height} image, a side above the limit of {MAX_SIDE} pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the file declares a {width}x{height} image ({width * height} pixels), "
            f"above the limit of {max_pixels} pixels"
        )
    seed = struct.unpack("<I", reader.take(4, "noise seed"))[0] if flags & _SEED_FLAG else None
    detail = None
    if flags & _DETAIL_FLAG:
        bands = reader.byte("detail band count")
        if not 1 <= bands <= MAX_DETAIL_BANDS:
            raise CorruptBitstream(f"the detail section claims {bands} bands, not 1-{MAX_DETAIL_BANDS}")
        detail = reader.take(bands, "detail section")
    labels = reader.section("label map") if flags & _LABELS_FLAG else None
    payload = reader.section("payload")
    stored_crc = struct.unpack("<I", reader.take(CRC_BYTES, "checksum"))[0]
    if reader.remaining:
        raise CorruptBitstream(f"{reader.remaining} unexpected bytes after the checksum")
    if zlib.crc32(memoryview(data)[: len(data) - CRC_BYTES]) != stored_crc:
        raise CorruptBitstream("checksum mismatch: the file is corrupt")
    header = Header(model_id, fingerprint, width, height, mode, seed, bool(flags & _MASK_FROM_LABELS_FLAG), detail)
    if version != header.version:
        raise CorruptBitstream(f"the file says format version {version}, but what it holds is version {header.version}")
    return Bitstream(header=header, payload=payload, size=len(data), labels=labels)


def _varint(value: int) -> bytes:
    if value < 0 or value >= 1 << (7 * MAX_VARINT_BYTES):
        raise ValueError(f"{value} does not fit a {MAX_VARINT_BYTES}-byte varint")
    return leb128(value)


def leb128(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low bits first, high bit set on every byte but the last. Any size: the
    writer checks its varints fit the reader's limit; the fuzzer writes longer ones on purpose."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


class _Reader:
    """Bounds-checked reads from the front of the file; running out is reported as truncation of a named field."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._offset = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    def take(self, count: int, field: str) -> bytes:
        if count > self.remaining:
            raise CorruptBitstream(f"truncated file: it ends inside the {field}")
        chunk = self._data[self._offset : self._offset + count].tobytes()
        self._offset += count
        return chunk

    def byte(self, field: str) -> int:
        return self.take(1, field)[0]

    def section(self, field: str) -> bytes:
        """A varint length, then that many bytes, which must leave room for the checksum."""
        length = self.varint(f"{field} length")
        if length > self.remaining - CRC_BYTES:
            raise CorruptBitstream(
                f"truncated file: the {field} needs {length} bytes plus a {CRC_BYTES}-byte checksum, "
                f"{self.remaining} bytes remain"
            )
        return self.take(length, field)

    def varint(self, field: str) -> int:
        value = 0
        for index in range(MAX_VARINT_BYTES):
            byte = self.byte(field)
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                if byte == 0 and index > 0:
                    raise CorruptBitstream(f"the {field} is not minimally encoded")
                return value
        raise CorruptBitstream(f"the {field} is longer than {MAX_VARINT_BYTES} bytes")
