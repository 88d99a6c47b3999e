"""The bounded concurrency limiter and queue: a burst gets 429 beyond the queue, waits and overruns get 503."""

from __future__ import annotations

import threading
import time

import anyio
import pytest
from api_support import abandon, assert_problem, encode, running, settings

from service.api.limiter import Limiter
from service.api.metrics import Metrics
from service.api.problems import Problem
from service.api.workers import ThreadWorkers
from service.codec import Registry

pytestmark = pytest.mark.anyio

OCTET = {"content-type": "application/octet-stream"}


async def _occupy(limiter: Limiter, release: threading.Event, task_group: anyio.abc.TaskGroup) -> None:
    """Start a job that holds a worker until `release` is set, and wait until it runs."""
    task_group.start_soon(limiter.run, "test", lambda models: release.wait())
    with anyio.fail_after(5):
        while limiter.running == 0:
            await anyio.sleep(0.01)


def _limiter(**options) -> Limiter:
    """A limiter whose jobs run in its threads, with no models."""
    return Limiter(workers=ThreadWorkers(Registry([])), metrics=Metrics(), **options)


async def test_limiter_runs_at_most_concurrency_jobs_at_once():
    limiter = _limiter(concurrency=2, queue_size=10, queue_timeout=5, compute_timeout=5, retry_after=1)
    lock = threading.Lock()
    active, peak = 0, 0

    def job(models: Registry) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(limiter.run, "test", job)
    limiter.close()
    assert peak == 2 and limiter.running == limiter.waiting == 0


async def test_a_burst_beyond_the_queue_gets_429_and_the_queued_requests_complete(model_dir, make_image):
    image = {"image": ("a.png", encode(make_image(20, 20)))}
    release = threading.Event()
    answers = []

    async def post(client) -> None:
        answers.append(await client.post("/compress", files=image))

    async with running(settings(model_dir, concurrency=1, queue_size=2, retry_after=7)) as (app, client):
        limiter = app.state.runtime.limiter
        try:
            async with anyio.create_task_group() as group:
                await _occupy(limiter, release, group)
                for _ in range(6):
                    group.start_soon(post, client)
                with anyio.fail_after(5):
                    while len(answers) < 4:  # two wait in the queue, four are refused at once
                        await anyio.sleep(0.01)
                assert limiter.waiting == 2
                assert_problem(await client.get("/readyz"), "not-ready")
                release.set()
        finally:
            release.set()
        ready = await client.get("/readyz")
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 200, 429, 429, 429, 429]
    for refused in answers[:4]:
        assert_problem(refused, "overloaded")
        assert refused.headers["retry-after"] == "7"
    assert ready.status_code == 200


async def test_a_saturated_server_answers_oversized_slow_and_abandoned_bodies_413_408_and_499(model_dir):
    async def chunks(count: int, pause: float = 0.0):
        for _ in range(count):
            await anyio.sleep(pause)
            yield bytes(200)

    release = threading.Event()
    shedding = settings(model_dir, concurrency=1, queue_size=0, max_upload_bytes=1000, read_timeout=0.2)
    async with running(shedding) as (app, client):
        try:
            async with anyio.create_task_group() as group:
                await _occupy(app.state.runtime.limiter, release, group)
                oversized = await client.post("/decompress", content=chunks(10), headers=OCTET)
                slow = await client.post("/decompress", content=chunks(2, pause=0.5), headers=OCTET)
                abandoned = await abandon(app, "/decompress", OCTET["content-type"], bytes(200))
                still_saturated = app.state.runtime.limiter.saturated
                release.set()
        finally:
            release.set()
    assert still_saturated
    assert_problem(oversized, "upload-too-large")
    assert_problem(slow, "request-timeout")
    assert abandoned[0]["status"] == 499


async def test_waiting_too_long_for_a_worker_is_503(model_dir, make_image):
    release = threading.Event()
    async with running(settings(model_dir, concurrency=1, queue_timeout=0.2, retry_after=3)) as (app, client):
        try:
            async with anyio.create_task_group() as group:
                await _occupy(app.state.runtime.limiter, release, group)
                response = await client.post("/compress", files={"image": ("a.png", encode(make_image(20, 20)))})
                release.set()
        finally:
            release.set()
    assert_problem(response, "queue-timeout")
    assert response.headers["retry-after"] == "3"


async def test_a_job_overrunning_in_a_thread_is_answered_503_but_keeps_its_worker_until_it_ends(
    model_dir, make_image, monkeypatch
):
    release = threading.Event()

    def stuck(*args, **kwargs) -> bytes:
        release.wait()
        raise RuntimeError("finished after its request was answered")

    monkeypatch.setattr("service.api.routers.codec.compress", stuck)
    async with running(settings(model_dir, concurrency=1, compute_timeout=0.2)) as (app, client):
        limiter = app.state.runtime.limiter
        try:
            response = await client.post("/compress", files={"image": ("a.png", encode(make_image(20, 20)))})
            assert limiter.running == 1  # the thread still runs: its slot is not handed to another job
            while_stuck = await client.get("/readyz")
        finally:
            release.set()
        with anyio.fail_after(5):
            while limiter.running:
                await anyio.sleep(0.01)
        ready = await client.get("/readyz")
    assert_problem(response, "processing-timeout")
    assert "past their time limit" in assert_problem(while_stuck, "not-ready")["detail"]
    assert ready.status_code == 200


async def test_limiter_refuses_when_saturated_without_a_queue():
    limiter = _limiter(concurrency=1, queue_size=0, queue_timeout=5, compute_timeout=5, retry_after=2)
    release = threading.Event()
    try:
        async with anyio.create_task_group() as group:
            await _occupy(limiter, release, group)
            assert limiter.saturated
            with pytest.raises(Problem) as refused:
                await limiter.run("test", lambda models: None)
            release.set()
    finally:
        release.set()
        limiter.close()
    assert refused.value.kind.slug == "overloaded" and refused.value.headers == {"Retry-After": "2"}
    assert not limiter.saturated
