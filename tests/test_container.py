"""The .gcx container: exact round trips, and a clear CorruptBitstream for every malformed file."""

from __future__ import annotations

import struct
import sys
import zlib

import pytest

from service.codec import CorruptBitstream, Header, ImageTooLarge, Mode
from service.codec.container import MAX_SIDE, pack, unpack

CAP = 4096 * 4096
HEADER = Header(model_id="gc-small-c8", fingerprint=bytes(range(8)), width=480, height=360)
PAYLOAD = bytes(range(200)) * 8


def _recrc(data: bytes) -> bytes:
    """Fix the checksum after deliberately editing a header field, to reach the check behind it."""
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def test_round_trip_keeps_every_field():
    with_seed = Header("m", b"\xff" * 8, 1, 1, Mode.GC, seed=0xDEADBEEF)
    for header in (HEADER, with_seed, Header("a.b_c-9", bytes(8), 65535, 3)):  # a 3-byte varint
        bitstream = unpack(pack(header, PAYLOAD), CAP * 1024)
        assert bitstream.header == header
        assert bitstream.payload == PAYLOAD


def test_header_costs_few_bytes():
    # magic 3 + version 1 + flags 1 + id length 1 + id 11 + fingerprint 8 + width 2 + height 2 + length 2 + crc 4
    assert len(pack(HEADER, PAYLOAD)) - len(PAYLOAD) == 35


def test_size_counts_the_whole_file():
    data = pack(HEADER, PAYLOAD)
    assert unpack(data, CAP).size == len(data)


def test_wrong_magic_is_rejected():
    data = pack(HEADER, PAYLOAD)
    with pytest.raises(CorruptBitstream, match="magic"):
        unpack(b"PNG" + data[3:], CAP)


def test_unknown_version_is_rejected():
    data = bytearray(pack(HEADER, PAYLOAD))
    data[3] = 4
    with pytest.raises(CorruptBitstream, match="version 4"):
        unpack(_recrc(bytes(data)), CAP)


def test_a_file_must_carry_the_lowest_version_that_holds_it():
    data = bytearray(pack(HEADER, PAYLOAD))
    for version in (2, 3):
        data[3] = version
        with pytest.raises(CorruptBitstream, match=f"says format version {version}, but .* is version 1"):
            unpack(_recrc(bytes(data)), CAP)


def test_a_detail_section_makes_gc_and_sc_files_version_3_and_round_trips():
    for mode, labels in ((Mode.GC, None), (Mode.SC, b"labels")):
        header = Header("gc-small-c8", bytes(8), 480, 360, mode, seed=7, detail=bytes([150, 120, 100, 90]))
        data = pack(header, PAYLOAD, labels)
        assert data[3] == 3 and data[4] & 0x80
        bitstream = unpack(data, CAP)
        assert (bitstream.header, bitstream.payload, bitstream.labels) == (header, PAYLOAD, labels)
    # the section costs a count byte and a byte per band
    assert (
        len(pack(Header("gc-small-c8", bytes(8), 480, 360, detail=b"abcd"), PAYLOAD)) == len(pack(HEADER, PAYLOAD)) + 5
    )


def test_detail_sections_of_no_bands_or_too_many_are_refused():
    for bands in (b"", bytes(9)):
        with pytest.raises(ValueError, match="1-8 bands"):
            pack(Header("gc-small-c8", bytes(8), 480, 360, detail=bands), PAYLOAD)
    data = bytearray(pack(Header("gc-small-c8", bytes(8), 480, 360, detail=b"abcd"), PAYLOAD))
    count = data.index(b"abcd") - 1
    for bands in (0, 9):
        data[count] = bands
        with pytest.raises(CorruptBitstream, match=f"claims {bands} bands"):
            unpack(_recrc(bytes(data)), CAP)
    data[count] = 4
    with pytest.raises(CorruptBitstream, match="ends inside the detail section"):
        unpack(bytes(data[: count + 3]), CAP)


def test_selective_files_are_version_2_and_keep_their_label_map():
    selective = Header("sc-small-c8", bytes(8), 480, 360, Mode.SC)
    for labels in (None, b"", bytes(range(7)) * 3):
        data = pack(selective, PAYLOAD, labels)
        assert data[3] == 2
        bitstream = unpack(data, CAP)
        assert (bitstream.header, bitstream.payload, bitstream.labels) == (selective, PAYLOAD, labels)
        assert bitstream.label_bytes == (0 if labels is None else 1 + len(labels))
    assert pack(HEADER, PAYLOAD)[3] == 1


def test_selective_mode_needs_version_2_and_labels_need_selective_mode():
    for version, flags, message in ((1, 0x01, "needs format version 2"), (2, 0x20, "not in mode sc")):
        data = bytearray(pack(HEADER, PAYLOAD))
        data[3], data[4] = version, flags
        with pytest.raises(CorruptBitstream, match=message):
            unpack(_recrc(bytes(data)), CAP)
    with pytest.raises(ValueError, match="only SC files"):
        pack(HEADER, PAYLOAD, labels=b"")


def test_a_mask_coded_from_the_label_map_is_flagged_and_needs_the_map():
    header = Header("sc-small-c8", bytes(8), 480, 360, Mode.SC, mask_from_labels=True)
    data = pack(header, PAYLOAD, b"labels")
    assert data[4] == 0x61 and unpack(data, CAP).header == header
    with pytest.raises(ValueError, match="needs the label map"):
        pack(header, PAYLOAD)
    forged = bytearray(pack(Header("sc-small-c8", bytes(8), 480, 360, Mode.SC), PAYLOAD))
    forged[4] |= 0x40
    with pytest.raises(CorruptBitstream, match="does not carry"):
        unpack(_recrc(bytes(forged)), CAP)


def test_truncated_label_map_says_truncated():
    data = pack(Header("m", bytes(8), 16, 16, Mode.SC), PAYLOAD, bytes(300))
    with pytest.raises(CorruptBitstream, match="the label map needs 300 bytes"):
        unpack(data[:40], CAP)


def test_reserved_flags_and_unknown_mode_are_rejected():
    for flags, message in ((0x80, "reserved"), (0x05, "mode")):
        data = bytearray(pack(HEADER, PAYLOAD))
        data[4] = flags
        with pytest.raises(CorruptBitstream, match=message):
            unpack(_recrc(bytes(data)), CAP)


def test_every_truncation_is_rejected():
    data = pack(HEADER, PAYLOAD[:40])
    for length in range(len(data)):
        with pytest.raises(CorruptBitstream):
            unpack(data[:length], CAP)


def test_truncated_payload_says_truncated():
    with pytest.raises(CorruptBitstream, match="truncated"):
        unpack(pack(HEADER, PAYLOAD)[:-100], CAP)


def test_every_corrupted_byte_is_rejected():
    data = pack(HEADER, PAYLOAD[:40])
    for index in range(len(data)):
        corrupted = bytearray(data)
        corrupted[index] ^= 0x41
        with pytest.raises(CorruptBitstream):
            unpack(bytes(corrupted), CAP)


def test_trailing_bytes_are_rejected():
    with pytest.raises(CorruptBitstream, match="after the checksum"):
        unpack(pack(HEADER, PAYLOAD) + b"\x00", CAP)


def test_header_claiming_huge_size_is_rejected_before_allocation():
    # 2**34 x 2**34 pixels would be ~10**21 bytes: the check must come from the header alone, at once.
    huge = Header("gc-small-c8", bytes(8), 2**34, 2**34)
    with pytest.raises(ImageTooLarge, match="limit"):
        unpack(pack(huge, b"\x00" * 4), CAP)


def test_a_side_over_the_limit_is_rejected_whatever_the_pixel_cap():
    # 1x16777216 is within the default pixel cap, but its latent is 1,048,576 cells in one column.
    for width, height in ((1, 2**24), (MAX_SIDE + 1, 1)):
        with pytest.raises(ImageTooLarge) as error:
            unpack(pack(Header("m", bytes(8), width, height), b""), sys.maxsize)
        assert str(error.value) == (
            f"the file declares a {width}x{height} image, a side above the limit of {MAX_SIDE} pixels"
        )
    assert unpack(pack(Header("m", bytes(8), MAX_SIDE, 1), b""), CAP).header.width == MAX_SIDE


def test_size_over_the_callers_cap_is_rejected():
    with pytest.raises(ImageTooLarge):
        unpack(pack(HEADER, PAYLOAD), max_pixels=480 * 360 - 1)
    assert unpack(pack(HEADER, PAYLOAD), max_pixels=480 * 360).header == HEADER


def test_overlong_and_non_minimal_varints_are_rejected():
    prefix = b"GCX\x01\x00\x01m" + bytes(8)
    for width, message in ((b"\xff" * 6, "longer than"), (b"\x81\x00", "minimally")):
        data = prefix + width + b"\x01\x00"
        with pytest.raises(CorruptBitstream, match=message):
            unpack(_recrc(data + b"\x00" * 4), CAP)


def test_zero_size_and_bad_model_id_are_rejected():
    zero = b"GCX\x01\x00\x01m" + bytes(8) + b"\x00\x01\x00"
    with pytest.raises(CorruptBitstream, match="empty image"):
        unpack(_recrc(zero + bytes(4)), CAP)
    bad_id = b"GCX\x01\x00\x02m/" + bytes(8) + b"\x01\x01\x00"
    with pytest.raises(CorruptBitstream, match="model id"):
        unpack(_recrc(bad_id + bytes(4)), CAP)


def test_pack_refuses_invalid_headers():
    with pytest.raises(ValueError):
        pack(Header("bad id", bytes(8), 1, 1), b"")
    with pytest.raises(ValueError):
        pack(Header("m", bytes(7), 1, 1), b"")
    with pytest.raises(ValueError):
        pack(Header("m", bytes(8), 0, 1), b"")
