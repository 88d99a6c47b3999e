"""Where the codec jobs run: worker processes, killed and replaced when a job overruns; or the limiter's threads.

A job decodes an untrusted image or bitstream, runs the graphs and codes the entropy; nothing in onnxruntime or
Pillow can be interrupted from another thread, so a job that runs past its time in a thread keeps its worker until
it ends. A process can be killed. Its replacement loads and warms up the models again; it is forked from a fork
server that imported the libraries once, so that costs the models' loading alone (docs/service.md).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import traceback
from collections.abc import Callable
from functools import cache
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from typing import Any, Protocol, TypeVar

import numpy as np

from service.api.settings import Settings
from service.codec import CodecError, InvalidModel, Model, Registry, compress, reconstruct, unpack

logger = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[Registry], T]
"""Given its worker's models, a job returns its answer. For worker processes both go through pickle: a
module-level function (or a partial of one) whose arguments are plain data, bytes and model ids."""

WARMUP_SIZE = 64
"""Side of the image each model compresses and decodes once at start: creates its sessions, proves it works."""
STOP_SECONDS = 5.0
"""How long an idle worker process has to end when the server stops, before it is killed."""


def find_models(settings: Settings) -> Registry:
    """Every model's manifest, sessions not yet created; no model at all or a missing default stops the start."""
    registry = Registry.discover(
        settings.model_dirs,
        include_zoo=settings.include_zoo,
        default_id=settings.model,
        options=settings.runtime_options,
    )
    if not len(registry):
        raise InvalidModel("no models found: set GANCODEC_MODEL_DIRS or install a model in service/zoo")
    if settings.model is not None:
        registry.get(settings.model)
    return registry


def load_models(settings: Settings) -> Registry:
    """find_models, then run each model once: a model that cannot run stops the start."""
    registry = find_models(settings)
    for model in registry:
        warm_up(model)
        logger.info("model %s (%s) loaded and warmed up", model.id, model.fingerprint.hex())
    return registry


def warm_up(model: Model) -> None:
    y, x = np.mgrid[0:WARMUP_SIZE, 0:WARMUP_SIZE]
    image = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    data = compress(image, model)
    reconstruct(unpack(data, max_pixels=WARMUP_SIZE**2), model)
    for graph in model.manifest.graphs:  # measured once per model, so the first large image does not wait
        model.halo(graph)


def worker_settings(settings: Settings, workers: int) -> Settings:
    """The settings worker processes load their models with. With threads left to onnxruntime (0) it would give
    every worker a thread per core; several workers get an equal share of the cores instead."""
    if settings.threads or workers == 1:
        return settings
    return settings.model_copy(update={"threads": max(1, (os.cpu_count() or 1) // workers)})


class Workers(Protocol):
    def run(self, job: Job[T]) -> T:
        """`job(models)` on a worker; blocks, so the limiter calls it from its threads, one job per worker."""
        ...

    def close(self) -> None:
        """Stop the workers, once no job runs."""
        ...


def start(settings: Settings) -> tuple[Registry, Workers]:
    """The models requests are checked against, and the `settings.concurrency` workers that run the jobs."""
    if settings.isolation == "thread":
        registry = load_models(settings)
        return registry, ThreadWorkers(registry)
    # Only the workers run graphs: this process needs the manifests, not sessions.
    registry, workers = find_models(settings), ProcessWorkers(settings)
    ids = ", ".join(sorted({model.id for model in registry}))
    logger.info(
        "started %d worker process(es), each with these models loaded and warmed up: %s", settings.concurrency, ids
    )
    return registry, workers


class ThreadWorkers:
    """Jobs run in the calling thread on the server's own models: nothing to start, but a job that overruns cannot
    be stopped and holds its thread until it ends (GANCODEC_ISOLATION=thread; the fast choice for tests)."""

    def __init__(self, models: Registry) -> None:
        self.models = models

    def run(self, job: Job[T]) -> T:
        return job(self.models)

    def close(self) -> None:
        """Nothing to stop: the jobs ran in the limiter's threads."""


class WorkerLost(RuntimeError):
    """The worker process ended during a job (killed from outside, out of memory, a crash in native code)."""


class ProcessWorkers:
    """`settings.concurrency` worker processes, each loading and warming up its own models once, when it starts.

    A job that runs past `settings.compute_timeout` is stopped by killing its process (the limiter has answered
    503 by then); a job whose process dies fails with WorkerLost. Either way a fresh process is started at once,
    in the thread that ran the job, so the limiter's slot stays taken until a warm worker stands in again. Should
    that start fail, the next job on the slot tries again.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = worker_settings(settings, settings.concurrency)
        self._timeout = settings.compute_timeout
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        """A worker per slot; None where a replacement failed to start."""
        workers = [_Worker(self._settings) for _ in range(settings.concurrency)]  # they load their models at once
        try:
            for worker in workers:
                worker.wait_ready()
        except BaseException:
            for worker in workers:
                worker.kill()
            raise
        for worker in workers:
            self._idle.put(worker)

    def run(self, job: Job[T]) -> T:
        worker = self._idle.get()  # one is there: the limiter runs at most one job per worker
        if worker is not None and not worker.alive:  # it died while idle
            worker.kill()
            worker = None
        try:
            if worker is None:
                worker = self._start()
            return worker.run(job, self._timeout)
        finally:
            if worker is not None and not worker.alive:
                worker = self._replace()
            self._idle.put(worker)

    def close(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                worker = self._idle.get_nowait()
                if worker is not None:
                    worker.stop()

    def _start(self) -> _Worker:
        worker = _Worker(self._settings)
        try:
            worker.wait_ready()
        except BaseException:
            worker.kill()
            raise
        return worker

    def _replace(self) -> _Worker | None:
        try:
            return self._start()
        except Exception:
            logger.exception("a worker process could not start; the next job on its slot tries again")
            return None


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, settings: Settings) -> None:
        context = _context()
        self._connection, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(theirs, settings), name="gancodec-worker", daemon=True)
        self._process.start()
        theirs.close()  # so that the process's end, however it comes, reads as end of file here

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def wait_ready(self) -> None:
        """Until the process has loaded and warmed up its models; what stopped it, if it could not."""
        self._receive()

    def run(self, job: Job[T], timeout: float) -> T:
        try:
            self._connection.send(job)
        except OSError:
            raise self._lost() from None
        if not self._connection.poll(timeout):
            self.kill()
            raise TimeoutError(f"the job ran past {timeout:g} s; its worker process was killed")
        return self._receive()

    def _receive(self) -> Any:
        try:
            ok, value = self._connection.recv()
        except (EOFError, OSError):
            raise self._lost() from None
        if not ok:
            raise value
        return value

    def _lost(self) -> WorkerLost:
        self.kill()  # reaps the process and closes the pipe
        return WorkerLost(f"the worker process ended (exit code {self._process.exitcode})")

    def stop(self) -> None:
        """Ask the idle process to end; kill it if it has not within STOP_SECONDS."""
        with contextlib.suppress(OSError):
            self._connection.send(None)
        self._process.join(STOP_SECONDS)
        self.kill()

    def kill(self) -> None:
        """Idempotent: a process that has ended is only reaped."""
        self._process.kill()
        self._process.join()
        self._connection.close()


@cache
def _context() -> ForkServerContext:
    """Worker processes fork from a server process that imported this module (numpy, onnxruntime, Pillow) once,
    so a replacement costs its models' loading alone; the service itself, which has threads, never forks."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _serve(connection: Connection, settings: Settings) -> None:
    """A worker process: load the models and say so (or what failed), then run jobs until told to stop or the
    server has gone. Every answer is (True, result) or (False, exception)."""
    # Ctrl-C signals the whole process group: the server decides when to stop, and lets running jobs finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        models = load_models(settings)
    except Exception as error:
        connection.send((False, _portable(error)))
        return
    connection.send((True, None))
    while True:
        try:
            job = connection.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            answer = (True, job(models))
        except Exception as error:
            answer = (False, _portable(error))
        connection.send(answer)


def _portable(error: Exception) -> Exception:
    """`error` as the server can unpickle it. The codec's errors go as they are: the API answers them by type.
    Others carry the worker's traceback as a note for the server's log, and one that pickle cannot carry whole is
    sent as a RuntimeError naming its type."""
    if not isinstance(error, CodecError):
        error.add_note("raised in a worker process:\n" + "".join(traceback.format_exception(error)).rstrip())
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        notes = "".join(f"\n{note}" for note in getattr(error, "__notes__", ()))
        return RuntimeError(f"{type(error).__qualname__}: {error}{notes}")
    return error
