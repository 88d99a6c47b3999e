"""Bounded concurrency and a bounded queue for the blocking codec work, run off the event loop on the workers."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from service.api.metrics import Metrics
from service.api.problems import Problem, ProblemType
from service.api.workers import Job, Workers

T = TypeVar("T")


class Limiter:
    """Runs jobs on `workers`: at most `concurrency` at once, at most `queue_size` more waiting for a slot.

    Beyond that a request is refused at once (429) instead of queueing without bound; one that waits past
    `queue_timeout` or runs past `compute_timeout` is answered 503. Both carry Retry-After. A job that
    overruns keeps its slot until its worker is free again (a worker process is killed and replaced; a thread
    runs on to the end), so the bound on running work always holds.
    """

    def __init__(
        self,
        *,
        workers: Workers,
        concurrency: int,
        queue_size: int,
        queue_timeout: float,
        compute_timeout: float,
        retry_after: int,
        metrics: Metrics,
    ) -> None:
        self.concurrency = concurrency
        self.queue_size = queue_size
        self.queue_timeout = queue_timeout
        self.compute_timeout = compute_timeout
        self._retry = {"Retry-After": str(retry_after)}
        self._metrics = metrics
        self._workers = workers
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="gancodec-job")
        self._slots = asyncio.Semaphore(concurrency)
        self.running = 0
        self.waiting = 0
        self.overrun = 0
        """Slots whose job was answered 503 past compute_timeout and whose worker is not free yet."""
        metrics.in_flight.set_function(lambda: self.running)
        metrics.queued.set_function(lambda: self.waiting)

    @property
    def saturated(self) -> bool:
        """Every slot busy and the queue full: the next request would be refused."""
        return self._slots.locked() and self.waiting >= self.queue_size

    @property
    def stalled(self) -> bool:
        """Every worker is running a job past its time, or being replaced after one."""
        return self.overrun >= self.concurrency

    def refusal(self) -> Problem | None:
        """The 429 to answer now if the server is saturated, else None."""
        if not self.saturated:
            return None
        detail = f"{self.running} jobs are running and {self.waiting} waiting, the most this server takes"
        return Problem(ProblemType.OVERLOADED, detail, self._retry)

    async def run(self, operation: str, job: Job[T]) -> T:
        """`job(models)` on a worker once a slot is free; queue and compute time are measured apart, per operation."""
        refusal = self.refusal()
        if refusal is not None:
            raise refusal
        await self._acquire(operation)
        self.running += 1
        started = time.perf_counter()
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._workers.run, job)
        future.add_done_callback(lambda done: self._release(operation, started, done))
        try:
            async with asyncio.timeout(self.compute_timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            self.overrun += 1
            future.add_done_callback(self._recovered)
            detail = f"the {operation} did not finish within {self.compute_timeout:g} s"
            raise Problem(ProblemType.PROCESSING_TIMEOUT, detail, self._retry) from None

    async def _acquire(self, operation: str) -> None:
        queued = time.perf_counter()
        self.waiting += 1
        try:
            async with asyncio.timeout(self.queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            detail = f"no worker became free within {self.queue_timeout:g} s"
            raise Problem(ProblemType.QUEUE_TIMEOUT, detail, self._retry) from None
        finally:
            self.waiting -= 1
            self._metrics.queue_seconds.labels(operation).observe(time.perf_counter() - queued)

    def _release(self, operation: str, started: float, done: asyncio.Future[T]) -> None:
        self._metrics.compute_seconds.labels(operation).observe(time.perf_counter() - started)
        self.running -= 1
        self._slots.release()
        if not done.cancelled():
            done.exception()  # retrieved here, so an overrun job's error is not reported as never retrieved

    def _recovered(self, _: asyncio.Future[T]) -> None:
        self.overrun -= 1

    def close(self) -> None:
        """Wait for running jobs, drop queued ones, stop the workers (at shutdown, once no request can arrive)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._workers.close()
