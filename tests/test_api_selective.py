"""POST /compress with an SC model: mask, labels and synthesize as form fields, and their errors as problems."""

from __future__ import annotations

import numpy as np
import pytest
from api_support import assert_problem, encode, running, settings
from selective_support import ROAD, street_labels

from service.codec import Model, Registry, compress, decode_image, decompress, load_manifest, unpack

pytestmark = pytest.mark.anyio

OCTET = {"content-type": "application/octet-stream"}


async def test_labels_and_synthesize_give_the_librarys_file(sc_model_dir, make_image):
    pixels, labels = make_image(90, 120), street_labels(90, 120)
    files = {"image": ("a.png", encode(pixels)), "labels": ("l.png", encode(labels))}
    async with running(settings(sc_model_dir)) as (_, client):
        repeated = await client.post("/compress", files=files, data={"synthesize": ["road", "sky"]})
        listed = await client.post("/compress", files=files, data={"synthesize": "road,sky"})
        back = await client.post("/decompress", content=repeated.content, headers=OCTET)
        models = (await client.get("/models")).json()
    assert repeated.status_code == 200, repeated.text
    assert repeated.content == listed.content
    model = Model(load_manifest(sc_model_dir))
    assert repeated.content == compress(pixels, model, labels=labels, synthesize=["road", "sky"])
    assert unpack(repeated.content, 90 * 120).label_bytes > 0
    assert back.status_code == 200
    np.testing.assert_array_equal(decode_image(back.content).pixels, decompress(repeated.content, Registry([model])))
    assert models[0]["modes"] == ["gc", "sc"] and models[0]["classes"][ROAD] == "road"


async def test_a_mask_alone_keeps_its_white_region(sc_model_dir, make_image):
    pixels = make_image(64, 64)
    keep = np.zeros((64, 64), dtype=np.uint8)
    keep[:32] = 255
    async with running(settings(sc_model_dir)) as (_, client):
        response = await client.post(
            "/compress", files={"image": ("a.png", encode(pixels)), "mask": ("m.png", encode(keep))}
        )
    assert response.status_code == 200, response.text
    assert response.content == compress(pixels, Model(load_manifest(sc_model_dir)), mask=keep > 0)
    assert unpack(response.content, 64 * 64).labels is None


@pytest.mark.parametrize(
    ("fields", "data", "slug", "detail"),
    [
        ({"mask": np.zeros((30, 40), np.uint8)}, {}, "mask-size-mismatch", "mask: is 40x30, the image 60x40"),
        ({"labels": street_labels(40, 60)}, {"synthesize": "road,lake"}, "invalid-selection", "unknown class 'lake'"),
        ({}, {"synthesize": "road"}, "invalid-request", "send labels too"),
        ({"labels": np.full((40, 60), 12, np.uint8)}, {}, "invalid-selection", "class id 12"),
    ],
)
async def test_selections_that_do_not_fit_are_problems(sc_model_dir, make_image, fields, data, slug, detail):
    files = {"image": ("a.png", encode(make_image(40, 60)))}
    files |= {name: (f"{name}.png", encode(array)) for name, array in fields.items()}
    async with running(settings(sc_model_dir)) as (_, client):
        response = await client.post("/compress", files=files, data=data)
    assert detail in assert_problem(response, slug)["detail"]


async def test_gc_models_refuse_masks(model_dir, make_image):
    files = {"image": ("a.png", encode(make_image(32, 32))), "mask": ("m.png", encode(np.zeros((32, 32), np.uint8)))}
    async with running(settings(model_dir)) as (_, client):
        response = await client.post("/compress", files=files)
    assert "supports only gc" in assert_problem(response, "sc-unsupported")["detail"]
