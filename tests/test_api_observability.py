"""Probes and Prometheus metrics: what an orchestrator and a dashboard see."""

from __future__ import annotations

import logging

import pytest
from api_support import abandon, encode, running, settings
from prometheus_client.parser import text_string_to_metric_families

from service.api.workers import load_models
from service.codec import InvalidModel, UnknownModel

pytestmark = pytest.mark.anyio


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_probes_report_alive_and_ready(model_dir):
    async with running(settings(model_dir)) as (app, client):
        alive = await client.get("/healthz")
        ready = await client.get("/readyz")
        app.state.runtime.ready = False  # as during shutdown
        draining = await client.get("/readyz")
    assert alive.json() == {"status": "alive"}
    assert ready.json() == {"status": "ready", "models": 1, "jobs_running": 0, "jobs_queued": 0}
    assert draining.status_code == 503 and draining.json()["type"].endswith("not-ready")


async def test_probes_answer_head_with_the_status_and_headers_of_get(model_dir):
    async with running(settings(model_dir)) as (app, client):
        pairs = [(await client.get(path), await client.head(path)) for path in ("/healthz", "/readyz")]
        app.state.runtime.ready = False  # as during shutdown
        pairs.append((await client.get("/readyz"), await client.head("/readyz")))
    for get, head in pairs:
        shown = ("content-type", "content-length")
        assert (head.status_code, *map(head.headers.get, shown)) == (get.status_code, *map(get.headers.get, shown))
    assert [get.status_code for get, _ in pairs] == [200, 200, 503]


async def test_metrics_count_requests_errors_times_bytes_and_rate(model_dir, make_image):
    image = encode(make_image(32, 32))
    async with running(settings(model_dir)) as (_, client):
        compressed = await client.post("/compress", files={"image": ("a.png", image)})
        await client.post(
            "/decompress", content=compressed.content, headers={"content-type": "application/octet-stream"}
        )
        await client.post("/decompress", content=b"junk", headers={"content-type": "application/octet-stream"})
        await client.get("/no/such/path")
        response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    assert samples[("gancodec_requests_total", (("endpoint", "/compress"), ("status", "200")))] == 1
    assert samples[("gancodec_requests_total", (("endpoint", "/decompress"), ("status", "422")))] == 1
    assert samples[("gancodec_requests_total", (("endpoint", "other"), ("status", "404")))] == 1
    assert samples[("gancodec_errors_total", (("endpoint", "/decompress"), ("type", "corrupt-bitstream")))] == 1
    assert samples[("gancodec_queue_seconds_count", (("operation", "compress"),))] == 1
    assert samples[("gancodec_compute_seconds_count", (("operation", "decompress"),))] == 1
    assert samples[("gancodec_response_bytes_total", (("endpoint", "/compress"),))] == len(compressed.content)
    assert samples[("gancodec_request_bytes_total", (("endpoint", "/decompress"),))] == len(compressed.content) + 4
    bpp = float(compressed.headers["gancodec-bpp"])
    assert samples[("gancodec_bits_per_pixel_sum", (("model", "gc-tiny"),))] == pytest.approx(bpp, rel=1e-5)
    assert samples[("gancodec_jobs_running", ())] == samples[("gancodec_jobs_queued", ())] == 0
    assert samples[("gancodec_requests_in_flight", ())] == 1  # the scrape itself


@pytest.mark.parametrize(
    ("path", "content_type", "start"),
    [
        ("/decompress", "application/octet-stream", b"GCX"),
        ("/compress", "multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n'),
    ],
    ids=["raw", "multipart"],
)
async def test_a_client_disconnecting_mid_body_is_counted_499_and_logged_on_one_quiet_line(
    model_dir, caplog, path, content_type, start
):
    async with running(settings(model_dir)) as (app, client):
        with caplog.at_level(logging.DEBUG):
            answered = await abandon(app, path, content_type, start + bytes(1000))
        samples = _samples((await client.get("/metrics")).text)
    assert answered[0]["status"] == 499  # nobody reads it; it is what the metrics count
    assert samples[("gancodec_requests_total", (("endpoint", path), ("status", "499")))] == 1
    assert samples[("gancodec_errors_total", (("endpoint", path), ("type", "client-disconnected")))] == 1
    [record] = caplog.records
    assert record.levelno == logging.INFO and record.exc_info is None and "disconnected" in record.getMessage()


def test_start_up_fails_without_models_or_with_a_missing_default(model_dir, tmp_path):
    with pytest.raises(InvalidModel, match="no models"):
        load_models(settings(tmp_path))
    with pytest.raises(UnknownModel, match="'gc-big'"):
        load_models(settings(model_dir, model="gc-big"))
