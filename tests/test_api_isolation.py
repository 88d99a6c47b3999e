"""Jobs in worker processes (GANCODEC_ISOLATION=process, the server's default): a job that runs past its time is
stopped, not only answered, and its worker replaced; what a worker raises comes back as the same problem."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import anyio
import numpy as np
import pytest
from api_support import assert_problem, encode, running, settings

from service.api.workers import worker_settings
from service.codec import MIN_TILE_PIXELS, encode_png

pytestmark = pytest.mark.anyio


def _slow_image() -> bytes:
    """4096x4096 (the default pixel cap) in one colour: a 160 kB upload whose compression, in the smallest tiles
    the settings allow, took the tiny model 5.7-7.5 s on one thread (measured), far past the timeout below."""
    return encode_png(np.zeros((4096, 4096, 3), np.uint8))


def _isolated(model_dir, **overrides):
    return settings(model_dir, isolation="process", concurrency=1, tile_pixels=MIN_TILE_PIXELS, **overrides)


async def test_a_job_past_compute_timeout_is_stopped_and_its_worker_is_free_again_within_seconds(model_dir, make_image):
    slow = {"image": ("slow.png", _slow_image())}
    quick = {"image": ("a.png", encode(make_image(20, 20)))}
    async with running(_isolated(model_dir, compute_timeout=1.0)) as (_, client):
        assert (await client.post("/compress", files=quick)).status_code == 200
        started = time.perf_counter()
        overrun = await client.post("/compress", files=slow)
        answered = time.perf_counter()
        while_stuck = await client.get("/readyz")
        with anyio.fail_after(10):
            while (await client.get("/readyz")).status_code != 200:
                await anyio.sleep(0.01)
        again = await client.post("/compress", files=quick)
        free_again = time.perf_counter() - answered
        workers = multiprocessing.active_children()
    assert_problem(overrun, "processing-timeout")
    assert answered - started < 3
    assert "replaced" in assert_problem(while_stuck, "not-ready")["detail"]
    assert again.status_code == 200, again.text
    # Left running, the slow job would hold the only worker about 6 s more; a fresh worker took 0.2 s to start.
    assert free_again < 3
    assert len(workers) == 1, "the stopped job's process is gone, its replacement alone runs"


async def test_a_worker_killed_mid_job_is_a_500_and_is_replaced(model_dir, make_image):
    # As the kernel's OOM killer would: the request gets a server error, the next one a fresh worker.
    quick = {"image": ("a.png", encode(make_image(20, 20)))}
    answers = []
    async with running(_isolated(model_dir)) as (app, client):
        limiter = app.state.runtime.limiter
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: _post(client, {"image": ("slow.png", _slow_image())}, answers))
            with anyio.fail_after(10):
                while limiter.running == 0:
                    await anyio.sleep(0.01)
            await anyio.sleep(0.2)
            (worker,) = multiprocessing.active_children()
            os.kill(worker.pid, signal.SIGKILL)
        again = await client.post("/compress", files=quick)
    assert_problem(answers[0], "internal-error")
    assert again.status_code == 200, again.text


async def _post(client, files, answers) -> None:
    answers.append(await client.post("/compress", files=files))


async def test_codec_errors_raised_in_a_worker_are_answered_as_in_a_thread(model_dir, make_image):
    png = encode(make_image(32, 48))
    corrupt = png.replace(b"IDAT", b"IDAT\xff\xff\xff\xff", 1)  # the header is fine: only the worker finds out
    answers = {}
    for isolation in ("process", "thread"):
        async with running(settings(model_dir, isolation=isolation)) as (_, client):
            broken = await client.post("/compress", files={"image": ("a.png", corrupt)})
            compressed = await client.post("/compress", files={"image": ("a.png", png)})
            decompressed = await client.post(
                "/decompress", content=compressed.content, headers={"content-type": "application/octet-stream"}
            )
        answers[isolation] = (broken.json(), compressed.content, decompressed.content)
    assert answers["process"] == answers["thread"]
    assert answers["process"][0]["type"].endswith(":invalid-image")
    assert broken.status_code == 422 and decompressed.status_code == 200


def test_workers_share_the_cores_unless_threads_are_set(model_dir):
    cores = os.cpu_count() or 1
    assert worker_settings(settings(model_dir, threads=0), workers=1).threads == 0  # onnxruntime's own choice
    assert worker_settings(settings(model_dir, threads=0), workers=2).threads == max(1, cores // 2)
    assert worker_settings(settings(model_dir, threads=3), workers=2).threads == 3
