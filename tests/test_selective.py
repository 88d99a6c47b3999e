"""Selective compression (SC) with a tiny random-weight model: what each combination of mask, label map and
classes keeps, what it costs, and clear errors for inputs that do not fit."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from selective_support import ROAD, SKY, street_labels

from service.codec import (
    CorruptBitstream,
    InvalidSelection,
    MaskSizeMismatch,
    Mode,
    Model,
    Registry,
    SelectiveUnsupported,
    class_ids,
    compress,
    decode_image,
    decompress,
    encode_png,
    load_manifest,
    select,
    unpack,
)
from service.codec.container import Header, pack


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_mask_or_label_map_of_another_size_is_a_clear_error(sc_model, make_image):
    pixels = make_image(40, 60)
    with pytest.raises(MaskSizeMismatch, match="the mask is 40x60, the image 60x40"):
        compress(pixels, sc_model, mask=np.ones((60, 40), dtype=bool))
    with pytest.raises(MaskSizeMismatch, match="the label map is 61x40, the image 60x40"):
        compress(pixels, sc_model, labels=_png(street_labels(40, 61)))


def test_unknown_class_names_are_a_clear_error(sc_model, make_image):
    pixels, labels = make_image(32, 32), street_labels(32, 32)
    with pytest.raises(InvalidSelection, match=r"unknown class 'lake': model sc-tiny knows sky, building, pole"):
        compress(pixels, sc_model, labels=labels, synthesize=["road,lake"])
    with pytest.raises(InvalidSelection, match="unknown class '12'"):
        compress(pixels, sc_model, labels=labels, synthesize=["12"])


def test_label_maps_must_hold_the_models_class_ids(sc_model, make_image):
    pixels, labels = make_image(32, 32), street_labels(32, 32)
    labels[0, 0] = 255
    with pytest.raises(InvalidSelection, match="class id 255: model sc-tiny knows ids 0-11"):
        compress(pixels, sc_model, labels=_png(labels))
    with pytest.raises(InvalidSelection, match="single-channel PNG of class ids"):
        compress(pixels, sc_model, labels=encode_png(pixels))


def test_synthesize_needs_a_label_map(sc_model, make_image):
    with pytest.raises(InvalidSelection, match="give the label map too"):
        compress(make_image(32, 32), sc_model, mask=np.ones((32, 32), dtype=bool), synthesize=["road"])


def test_gc_models_refuse_selective_inputs(model, make_image):
    with pytest.raises(SelectiveUnsupported, match="supports only gc"):
        compress(make_image(32, 32), model, labels=street_labels(32, 32))


def test_all_white_mask_costs_what_gc_costs_and_decodes_alike(sc_model, make_image):
    pixels = make_image(360, 480)
    gc = compress(pixels, sc_model, restore_detail=False)  # SC files carry no detail section
    white = compress(pixels, sc_model, mask=_png(np.full((360, 480), 255, dtype=np.uint8)))
    assert unpack(gc, 480 * 360).header.mode is Mode.GC and unpack(white, 480 * 360).header.mode is Mode.SC
    assert abs(len(white) - len(gc)) <= 0.03 * len(gc)
    registry = Registry([sc_model])
    np.testing.assert_array_equal(decompress(white, registry), decompress(gc, registry))


def test_all_black_mask_gives_an_image_from_the_label_map_alone(sc_model, make_image):
    pixels, labels = make_image(360, 480), street_labels(360, 480)
    black = compress(pixels, sc_model, mask=np.zeros((360, 480), dtype=bool), labels=labels)
    bitstream = unpack(black, 480 * 360)
    assert bitstream.label_bytes > 0 and len(black) < 0.1 * len(compress(pixels, sc_model))
    decoded = decompress(black, Registry([sc_model]))
    assert decoded.shape == (360, 480, 3) and decoded.dtype == np.uint8
    # Nothing of the image itself is in the file: another image with the same labels gives the same file.
    assert (
        compress(make_image(360, 480, seed=5), sc_model, mask=np.zeros((360, 480), dtype=bool), labels=labels) == black
    )


def _sparse_mask(height: int, width: int) -> np.ndarray:
    """One pixel in four each way: 16 of every 16x16 block's 256, not more than KEPT_FRACTION, so no block."""
    mask = np.zeros((height, width), dtype=bool)
    mask[::4, ::4] = True
    return mask


@pytest.mark.parametrize(
    "selection",
    [
        lambda h, w, classes: {"mask": np.zeros((h, w), dtype=bool)},
        lambda h, w, classes: {"mask": _sparse_mask(h, w)},
        lambda h, w, classes: {"labels": street_labels(h, w), "synthesize": [",".join(classes)]},
    ],
    ids=["all-black mask", "too few kept pixels in every block", "every class synthesised"],
)
def test_selections_that_keep_nothing_give_valid_files_with_context_tables(
    contextual_sc_model_dir, make_image, selection
):
    model = Model(load_manifest(contextual_sc_model_dir))
    assert model.entropy.contextual
    pixels, given = make_image(96, 128), selection(96, 128, model.manifest.classes)  # no padding to reflect
    assert not select(model.manifest, (96, 128), (6, 8), **given).keep.any()
    data = compress(pixels, model, **given)
    assert unpack(data, 96 * 128).header.mode is Mode.SC
    assert decompress(data, Registry([model])).shape == (96, 128, 3)


def test_class_ids_are_ascii_digits_and_other_digits_are_unknown_classes(sc_model):
    assert class_ids(sc_model.manifest, ["3", "road", "03"]) == [3]
    for name in ["\u00b2", "\u0663", "\uff13", "3\u00b2", "9" * 5000, "-1", "+3", "3.0"]:
        with pytest.raises(InvalidSelection, match="unknown class"):
            class_ids(sc_model.manifest, [name])


def test_synthesised_classes_are_not_coded(sc_model, make_image):
    pixels, labels = make_image(360, 480), street_labels(360, 480)
    labels_only = compress(pixels, sc_model, labels=labels)
    selective = compress(pixels, sc_model, labels=labels, synthesize=["road", "sky"])
    assert compress(pixels, sc_model, labels=labels, synthesize=[f"{ROAD},{SKY}"]) == selective
    assert len(selective) < 0.5 * len(labels_only)
    selection = select(sc_model.manifest, (360, 480), (23, 30), labels=labels, synthesize=["road", "sky"])
    # Every block more than 1/16 of which is car (rows 120-239: blocks 7-14, columns 160-319: 10-19) is kept.
    assert selection.keep[7:15, 10:20].all() and selection.keep.sum() == 8 * 10
    assert unpack(selective, 480 * 360).label_bytes == unpack(labels_only, 480 * 360).label_bytes > 0


def test_a_mask_made_from_classes_is_coded_from_the_label_map(sc_model, make_image):
    pixels, labels = make_image(360, 480), street_labels(360, 480)
    selective = unpack(compress(pixels, sc_model, labels=labels, synthesize=["road", "sky"]), 480 * 360)
    assert selective.header.mask_from_labels
    free_mask = np.zeros((360, 480), dtype=bool)
    free_mask[50:300, 70:400] = True  # a box the labels know nothing of: coded from its neighbours
    boxed = compress(pixels, sc_model, mask=free_mask, labels=labels)
    assert not unpack(boxed, 480 * 360).header.mask_from_labels
    registry = Registry([sc_model])
    decoded = decompress(boxed, registry)
    assert decoded.shape == (360, 480, 3)


def test_mask_alone_carries_no_label_map(sc_model, make_image):
    mask = np.zeros((100, 100), dtype=bool)
    mask[:50] = True
    data = compress(make_image(100, 100), sc_model, mask=mask)
    assert unpack(data, 100 * 100).labels is None
    assert decompress(data, Registry([sc_model])).shape == (100, 100, 3)


@pytest.mark.parametrize(("height", "width"), [(1, 1), (17, 33), (100, 70), (360, 480)])
def test_selective_round_trip_with_a_finer_label_map_and_noise(fine_sc_model, make_image, height, width):
    pixels, labels = make_image(height, width), street_labels(height, width)
    data = compress(pixels, fine_sc_model, labels=labels, synthesize=["sky"])
    assert compress(pixels, fine_sc_model, labels=labels, synthesize=["sky"]) == data
    registry = Registry([fine_sc_model])
    decoded = decompress(data, registry)
    assert decoded.shape == (height, width, 3)
    np.testing.assert_array_equal(decompress(data, registry), decoded)


def test_maps_turn_with_the_images_exif_orientation(sc_model, make_image):
    """Maps are given as the image is stored; an EXIF rotation turns them with the pixels."""
    stored = make_image(32, 64)
    mask = np.zeros((32, 64), dtype=bool)
    mask[:, :16] = True
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="PNG", exif=exif)
    turned = decode_image(buffer.getvalue()).pixels
    assert turned.shape == (64, 32, 3)
    from_file = compress(buffer.getvalue(), sc_model, mask=_png(mask.astype(np.uint8) * 255))
    assert from_file == compress(turned, sc_model, mask=np.rot90(mask, -1))


def test_sc_file_for_a_gc_model_is_corrupt(model, make_image):
    data = compress(make_image(32, 32), model)
    bitstream = unpack(data, 32 * 32)
    header = bitstream.header
    forged = pack(Header(header.model_id, header.fingerprint, 32, 32, Mode.SC), bitstream.payload)
    with pytest.raises(CorruptBitstream, match="mode sc, which model gc-tiny does not support"):
        decompress(forged, Registry([model]))


def test_corrupt_label_map_section_is_rejected(sc_model, make_image):
    data = compress(make_image(64, 64), sc_model, labels=street_labels(64, 64))
    bitstream = unpack(data, 64 * 64)
    longer = pack(bitstream.header, bitstream.payload, bitstream.labels + bytes(8))
    with pytest.raises(CorruptBitstream, match="longer than its symbols need"):
        decompress(longer, Registry([sc_model]))
    with pytest.raises(CorruptBitstream, match="32-bit words"):
        decompress(pack(bitstream.header, bitstream.payload, bitstream.labels[:-1]), Registry([sc_model]))


def test_selective_files_at_each_nested_rate_point(nested_sc_model_dir, make_image):
    """SC codes the first k channels of the kept cells at rate point k; the decoder reads the rest as zero."""
    registry = Registry.discover([nested_sc_model_dir], include_zoo=False)
    assert sorted(model.id for model in registry) == ["sc-nested-c2", "sc-nested-c4"]
    pixels, labels = make_image(360, 480), street_labels(360, 480)
    files = {}
    for model in registry:
        assert model.channels < model.manifest.latent_channels or model.id.endswith("c4")
        files[model.channels] = compress(pixels, model, labels=labels, synthesize=["sky"])
        white = compress(pixels, model, mask=np.ones((360, 480), dtype=bool))
        assert abs(len(white) - len(compress(pixels, model))) <= 0.03 * len(white)
        decoded = decompress(files[model.channels], registry)
        assert decoded.shape == (360, 480, 3)
    assert len(files[2]) < len(files[4])
    assert unpack(files[2], 480 * 360).header.model_id == "sc-nested-c2"
    assert unpack(files[2], 480 * 360).header.fingerprint != unpack(files[4], 480 * 360).header.fingerprint
