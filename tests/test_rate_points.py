"""Nested rate points: one exported model installed under one id per rate, each coding its first k channels."""

from __future__ import annotations

import json
import shutil
import struct
import zlib

import numpy as np
import pytest

from service.codec import InvalidModel, ModelMismatch, Registry, compress, decompress, load_manifest, unpack


@pytest.fixture(scope="module")
def nested(nested_model_dir):
    return Registry.discover([nested_model_dir], include_zoo=False)


def test_each_rate_point_is_installed_under_its_own_id(nested):
    assert sorted(model.id for model in nested) == ["gc-nested-c2", "gc-nested-c4"]
    assert nested.default_id == "gc-nested-c2"
    assert [nested.get(i).channels for i in ("gc-nested-c2", "gc-nested-c4")] == [2, 4]


def test_rate_points_share_graphs_but_not_fingerprints(nested):
    low, high = nested.get("gc-nested-c2"), nested.get("gc-nested-c4")
    assert low.manifest is high.manifest
    assert low.fingerprint != high.fingerprint


def test_fewer_channels_make_smaller_files_that_decode(nested, make_image):
    pixels = make_image(128, 160)
    low = compress(pixels, nested.get("gc-nested-c2"))
    high = compress(pixels, nested.get("gc-nested-c4"))
    assert len(low) < len(high)
    assert unpack(low, 10**6).header.model_id == "gc-nested-c2"
    for data in (low, high):
        assert decompress(data, nested).shape == (128, 160, 3)
    assert not np.array_equal(decompress(low, nested), decompress(high, nested))


def test_a_file_names_the_rate_point_that_made_it(nested, make_image):
    data = compress(make_image(32, 32), nested.get("gc-nested-c2"))
    renamed = data.replace(b"gc-nested-c2", b"gc-nested-c4")
    # The id now names the other rate point, whose fingerprint differs (re-checksummed so parsing passes).
    renamed = renamed[:-4] + struct.pack("<I", zlib.crc32(renamed[:-4]))
    with pytest.raises(ModelMismatch):
        decompress(renamed, nested)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate_points": [{"id": "x", "channels": 5}]}, "codes 5 channels of 4"),
        ({"rate_points": [{"id": "x", "channels": 2}, {"id": "x", "channels": 4}]}, "unique"),
        ({"rate_points": []}, "non-empty"),
        ({"default_rate_point": "nope"}, "not one of the rate points"),
    ],
)
def test_invalid_rate_points_are_refused(nested_model_dir, tmp_path, changes, message):
    copy = shutil.copytree(nested_model_dir, tmp_path / "m")
    manifest = json.loads((copy / "manifest.json").read_text()) | changes
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidModel, match=message):
        load_manifest(copy)
