"""Load, soak, overload, concurrency and shutdown checks against a real `gancodec serve` (uvicorn) on 127.0.0.1.

    nice -n 19 python -m bench.load --out docs/robustness.md            # ~10 minutes with the small model

Each phase starts its own server process (the settings differ) and drives it with httpx:

- sustained load: at each client concurrency (1, 2, 4, 8), --requests requests alternating POST /compress of a
  photo (--size, PNG) and POST /decompress of its bitstream; throughput, p50/p99 latency and answers by status;
- soak: --soak requests (at least 1,000) at concurrency 2 while the server's memory is sampled; the growth
  after the warm-up (the first quarter) and its slope per 1,000 requests;
- overload: a burst of --burst simultaneous requests, far past the workers and queue: how many are refused (429
  `overloaded`, 503) and how fast, whether every admitted one completes, and the server's peak memory;
- concurrency correctness: distinct images compressed (and their files decompressed) one at a time and then all
  at once by a server with two workers: the answers must be byte-identical;
- graceful shutdown: SIGTERM while requests are in flight; they must complete (200), and the process exit 0.

The functions are also what tests/test_load.py runs, smaller, in CI with the tiny test model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from service.codec import encode_png

ROOT = Path(__file__).resolve().parent.parent
OCTET = {"content-type": "application/octet-stream"}
LIMITER_PROBLEMS = {"queue-timeout", "processing-timeout"}


# --- the server ------------------------------------------------------------------------------------------------------


class Server:
    """`gancodec serve` as a child process on a free port of 127.0.0.1."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.process.returncode}:\n{self.log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the server was not ready within {timeout:g} s:\n{self.log.read_text()}")

    def resident_mib(self) -> float:
        """The server's memory now, its worker processes' included: the sum of their proportional set sizes (PSS),
        so that pages they share count once; NaN once it has exited."""
        if self.process.poll() is not None:
            return float("nan")
        kib = 0
        for pid in _process_tree(self.process.pid):
            with contextlib.suppress(OSError):  # a worker being replaced
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        kib += int(line.split()[1])
        return kib / 1024

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait for the exit (SIGKILL past the timeout); the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: the children of any of its threads (the worker processes are started from one
    of the server's threads, by a fork server that is its child)."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pending.extend(int(child) for child in children.read_text().split())
    return tree


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[Server]:
    server = Server(env, log)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def server_env(model_dir: Path, **settings: object) -> dict[str, str]:
    """Only the given model, and GANCODEC_<NAME> for each setting."""
    env = {"GANCODEC_MODEL_DIRS": str(model_dir), "GANCODEC_INCLUDE_ZOO": "false"}
    env |= {f"GANCODEC_{name.upper()}": str(value) for name, value in settings.items()}
    return env


class MemorySampler:
    """Samples a server's resident memory every `interval` seconds in a thread, while in the `with` block."""

    def __init__(self, server: Server, interval: float = 0.05) -> None:
        self.server, self.interval = server, interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.server.resident_mib())
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float:
        return max((s for s in self.samples if s == s), default=float("nan"))


# --- requests --------------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    operation: str
    status: int
    seconds: float
    body: bytes = b""
    problem: str = ""
    """The problem type's slug, for problem+json answers."""


@dataclass
class Run:
    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0

    def statuses(self) -> Counter[int]:
        return Counter(answer.status for answer in self.answers)

    def latency(self, q: float, status: int | None = 200) -> float:
        values = [a.seconds for a in self.answers if status is None or a.status == status]
        return float(np.percentile(values, q)) if values else float("nan")

    @property
    def server_errors(self) -> int:
        """Every 5xx answer."""
        return sum(1 for answer in self.answers if answer.status >= 500)

    @property
    def faults(self) -> int:
        """5xx answers other than the limiter's 503s (queue or compute timeout), which are how overload is told."""
        return sum(1 for a in self.answers if a.status >= 500 and a.problem not in LIMITER_PROBLEMS)

    @property
    def throughput(self) -> float:
        done = sum(1 for answer in self.answers if answer.status == 200)
        return done / self.seconds if self.seconds else float("nan")


async def request(client: httpx.AsyncClient, operation: str, payload: bytes) -> Answer:
    started = time.perf_counter()
    if operation == "compress":
        response = await client.post("/compress", files={"image": ("image.png", payload, "image/png")})
    else:
        response = await client.post("/decompress", content=payload, headers=OCTET)
    problem = ""
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        problem = str(response.json().get("type", "")).rsplit(":", 1)[-1]
    return Answer(operation, response.status_code, time.perf_counter() - started, response.content, problem)


def client(url: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(600.0), limits=limits)


async def drive(url: str, jobs: Sequence[tuple[str, bytes]], concurrency: int, on_done=None) -> Run:
    """Send the jobs (operation, payload) in order with `concurrency` requests in flight at once."""
    run = Run()
    answers: list[Answer | None] = [None] * len(jobs)
    position = 0

    async with client(url, concurrency) as http:

        async def worker() -> None:
            nonlocal position
            while position < len(jobs):
                index, position = position, position + 1
                answers[index] = await request(http, *jobs[index])
                if on_done is not None:
                    on_done(index)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.seconds = time.perf_counter() - started
    run.answers = [answer for answer in answers if answer is not None]
    return run


async def burst(url: str, jobs: Sequence[tuple[str, bytes]]) -> Run:
    """Every job at once, each on its own connection."""
    run = Run()
    async with client(url, len(jobs)) as http:
        started = time.perf_counter()
        run.answers = list(await asyncio.gather(*(request(http, *job) for job in jobs)))
        run.seconds = time.perf_counter() - started
    return run


def mixed_jobs(image: bytes, bitstream: bytes, count: int) -> list[tuple[str, bytes]]:
    return [("compress", image) if i % 2 == 0 else ("decompress", bitstream) for i in range(count)]


def compress_once(url: str, image: bytes) -> bytes:
    response = httpx.post(f"{url}/compress", files={"image": ("image.png", image, "image/png")}, timeout=600)
    response.raise_for_status()
    return response.content


# --- the phases ----------------------------------------------------------------------------------------------------


def sustained(server: Server, image: bytes, requests: int, concurrencies: Sequence[int]) -> list[tuple[int, Run]]:
    bitstream = compress_once(server.url, image)
    return [(c, asyncio.run(drive(server.url, mixed_jobs(image, bitstream, requests), c))) for c in concurrencies]


@dataclass
class Soak:
    run: Run
    samples: list[tuple[int, float]]
    """(requests done, resident MiB)."""

    @property
    def warm(self) -> int:
        """Requests after which the server counts as warm: a quarter of them. Resident memory grows while the
        allocators' arenas and onnxruntime's reach their working size (measured with gc-small at 512x512: for
        about the first 250 requests, then within 2 MiB for the next 750)."""
        return len(self.run.answers) // 4

    @property
    def baseline(self) -> float:
        """Resident memory once the server is warm."""
        return next(mib for done, mib in self.samples if done >= self.warm)

    @property
    def final(self) -> float:
        return self.samples[-1][1]

    @property
    def peak(self) -> float:
        return max(mib for _, mib in self.samples)

    @property
    def slope(self) -> float:
        """MiB per 1,000 requests, a least-squares line through the samples after the warm-up."""
        points = np.array([(done, mib) for done, mib in self.samples if done >= self.warm], dtype=np.float64)
        if len(points) < 2:
            return float("nan")
        return float(np.polyfit(points[:, 0], points[:, 1], 1)[0] * 1000)


def soak(server: Server, image: bytes, requests: int, concurrency: int = 2, every: int = 25) -> Soak:
    bitstream = compress_once(server.url, image)
    samples = [(0, server.resident_mib())]
    done = 0

    def sample(_: int) -> None:
        nonlocal done
        done += 1
        if done % every == 0:
            samples.append((done, server.resident_mib()))

    run = asyncio.run(drive(server.url, mixed_jobs(image, bitstream, requests), concurrency, sample))
    samples.append((done, server.resident_mib()))
    return Soak(run, samples)


def overload(server: Server, image: bytes, count: int) -> tuple[Run, float, float]:
    """A burst of `count` compress and decompress requests at once: the run, memory before and at the peak."""
    bitstream = compress_once(server.url, image)
    before = server.resident_mib()
    with MemorySampler(server) as memory:
        run = asyncio.run(burst(server.url, mixed_jobs(image, bitstream, count)))
    return run, before, memory.peak


def identical(server: Server, images: Sequence[bytes]) -> tuple[bool, bool]:
    """Compress the images one at a time, then all at once; the same for their files' decompression. Whether
    each pair of runs gave byte-identical answers (all of them 200)."""

    def answers(jobs: list[tuple[str, bytes]], concurrency: int) -> list[bytes]:
        run = asyncio.run(drive(server.url, jobs, concurrency))
        assert all(a.status == 200 for a in run.answers), run.statuses()
        return [a.body for a in run.answers]

    one_by_one = answers([("compress", image) for image in images], 1)
    together = answers([("compress", image) for image in images], len(images))
    files = [("decompress", data) for data in one_by_one]
    return one_by_one == together, answers(files, 1) == answers(files, len(files))


@dataclass
class Shutdown:
    run: Run
    status: int
    seconds: float
    """From the signal to the exit."""
    refused: bool
    """Whether a request sent after the signal was refused."""
    log: str

    @property
    def graceful(self) -> bool:
        """Every request answered 200, then the normal end: uvicorn finishes, then re-raises the SIGTERM it caught
        (exit status -15, as a process without a handler would end; 0 if it came some other way)."""
        finished = "Application shutdown complete" in self.log and "Finished server process" in self.log
        answered = all(answer.status == 200 for answer in self.run.answers)
        return finished and answered and self.status in (0, -signal.SIGTERM)


def graceful_shutdown(server: Server, jobs: Sequence[tuple[str, bytes]]) -> Shutdown:
    """SIGTERM once the jobs are running, and what came of them."""
    result: dict[str, Run] = {}
    thread = threading.Thread(target=lambda: result.setdefault("run", asyncio.run(burst(server.url, jobs))))
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until a job is on a worker (the others queue behind it)
        readiness = httpx.get(f"{server.url}/readyz", timeout=5)
        if readiness.status_code != 200 or readiness.json().get("jobs_running", 0) >= 1:
            break  # a job runs (503 here means saturated: running too)
        time.sleep(0.01)
    signalled = time.perf_counter()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    refused = False
    try:
        late = httpx.get(f"{server.url}/healthz", timeout=5)
        refused = late.status_code >= 500
    except httpx.TransportError:
        refused = True
    thread.join()
    status = server.process.wait(timeout=120)
    seconds = time.perf_counter() - signalled
    return Shutdown(result["run"], status, seconds, refused, server.log.read_text(errors="replace"))


# --- inputs ----------------------------------------------------------------------------------------------------------


png = encode_png
"""The service's PNG writer (fast zlib level, as the benchmark has always used)."""


def photos(width: int, height: int, count: int) -> list[bytes]:
    """`count` different width x height crops of the benchmark's photo, as PNG."""
    from bench.speed import default_source, photo

    big = photo(default_source(), width * 2, height * 2)
    rng = np.random.default_rng(0)
    crops = []
    for _ in range(count):
        top, left = rng.integers(0, height + 1), rng.integers(0, width + 1)
        crops.append(png(np.ascontiguousarray(big[top : top + height, left : left + width])))
    return crops


# --- the report ------------------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}"


def _statuses(run: Run) -> str:
    return ", ".join(f"{count}x {status}" for status, count in sorted(run.statuses().items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="model directory (default: the zoo's default model)")
    parser.add_argument("--random", action="store_true", help="a random-weight export of the shipped configuration")
    parser.add_argument("--size", default="512x512", help="image size of the requests (default 512x512)")
    parser.add_argument("--concurrency", default="1,2,4,8", help="client concurrencies of the sustained runs")
    parser.add_argument("--requests", type=int, default=60, help="requests per sustained run")
    parser.add_argument("--soak", type=int, default=1000, help="requests in the soak run")
    parser.add_argument("--burst", type=int, default=200, help="simultaneous requests in the overload burst")
    parser.add_argument("--threads", type=int, default=0, help="GANCODEC_THREADS of the servers")
    parser.add_argument("--out", type=Path, help="Markdown page whose `load` section gets the results")
    args = parser.parse_args(argv)
    from bench.reporting import describe_machine, timestamp

    workdir = Path(tempfile.mkdtemp(prefix="gancodec-load-"))
    if args.random:
        from bench.random_models import export_random_model
        from models.config import SHIPPED

        args.model_dir = export_random_model(workdir / "gc-small", SHIPPED, "gc-small")
    if args.model_dir is None:
        from service.codec.registry import ZOO, Registry

        args.model_dir = Registry.discover().get(None).manifest.directory
        assert args.model_dir.parent == ZOO
    width, height = (int(v) for v in args.size.lower().split("x"))
    images = photos(width, height, 8)
    image = images[0]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    base = {"threads": args.threads}
    log = workdir / "server.log"
    started = time.perf_counter()

    print("sustained load", file=sys.stderr)
    with serving(server_env(args.model_dir, **base), log) as server:
        loads = sustained(server, image, args.requests, concurrencies)
        print("soak", file=sys.stderr)
        soaked = soak(server, image, args.soak)
    print("overload", file=sys.stderr)
    with serving(server_env(args.model_dir, **base), log) as server:
        burst_run, burst_before, burst_peak = overload(server, image, args.burst)
        alive = server.process.poll() is None and httpx.get(f"{server.url}/healthz").status_code == 200
    print("concurrency correctness", file=sys.stderr)
    threads = args.threads or max(1, (os.cpu_count() or 2) // 2)
    with serving(server_env(args.model_dir, concurrency=2, threads=threads), log) as server:
        same_files, same_images = identical(server, images)
    print("graceful shutdown", file=sys.stderr)
    server = Server(server_env(args.model_dir, **base), log)
    server.wait_ready()
    bitstream = compress_once(server.url, image)
    shutdown = graceful_shutdown(server, mixed_jobs(image, bitstream, 4))
    total = time.perf_counter() - started

    rows = "\n".join(
        f"| {c} | {len(run.answers)} | {run.throughput:.2f} | {_ms(run.latency(50))} | {_ms(run.latency(99))} | "
        f"{_statuses(run)} | {run.server_errors} |"
        for c, run in loads
    )
    refusals = [a for a in burst_run.answers if a.status in (429, 503)]
    admitted = [a for a in burst_run.answers if a.status not in (429, 503)]
    refusal_p = [np.percentile([a.seconds for a in refusals], q) if refusals else float("nan") for q in (50, 99)]
    report = f"""## Load, soak, overload and shutdown

`python -m bench.load {" ".join(sys.argv[1:] if argv is None else argv)}` ({timestamp()}; {total / 60:.1f} minutes in
all). Machine: {describe_machine()}

A real `gancodec serve` (uvicorn) on 127.0.0.1 with model `{args.model_dir.name}`, driven by httpx; every request is
a {width}x{height} photo to POST /compress or its bitstream to POST /decompress, alternately. Server settings are the
defaults (1 worker, a queue of 16) unless said.

Sustained load ({args.requests} requests per concurrency):

| clients | requests | throughput (requests/s) | p50 (ms) | p99 (ms) | answers | 5xx |
|---|---|---|---|---|---|---|
{rows}

Soak: {len(soaked.run.answers)} requests at 2 clients, {_statuses(soaked.run)}, {soaked.run.server_errors} 5xx,
{soaked.run.throughput:.2f} requests/s. Server memory (PSS, workers included): {soaked.samples[0][1]:.0f} MiB at start,
{soaked.baseline:.0f} MiB after the first quarter (warm-up), {soaked.final:.0f} MiB at the end, {soaked.peak:.0f} MiB at
most: growth after the warm-up **{soaked.final - soaked.baseline:+.1f} MiB** (a fitted slope of
{soaked.slope:+.2f} MiB per 1,000 requests).

Overload: {args.burst} requests at once: {_statuses(burst_run)}; refusals answered in {_ms(refusal_p[0])} ms (p50) and
{_ms(refusal_p[1])} ms (p99); {sum(1 for a in admitted if a.status == 200)} of {len(admitted)} admitted requests
completed with 200 (slowest {_ms(max((a.seconds for a in admitted), default=float("nan")))} ms), {burst_run.faults}
other 5xx. Server memory {burst_before:.0f} MiB before, {burst_peak:.0f} MiB at the peak; alive and healthy after the
burst: {"yes" if alive else "NO"}.

Concurrency correctness (2 workers): {len(images)} different photos compressed one at a time and all at once gave
{"byte-identical" if same_files else "DIFFERENT"} bitstreams; their decompression one at a time and all at once gave
{"byte-identical" if same_images else "DIFFERENT"} PNGs.

Graceful shutdown: SIGTERM with 4 requests in flight (one running, three queued): {_statuses(shutdown.run)}; a new
request after the signal was {"refused" if shutdown.refused else "ANSWERED"}; the process ended
{shutdown.seconds:.1f} s after the signal with status {shutdown.status} (uvicorn re-raises the SIGTERM once it has
finished): {"graceful" if shutdown.graceful else "NOT graceful"}.
"""
    print(report)
    if args.out:
        from bench.reporting import update_section

        update_section(args.out, "load", report, "Robustness")
    ok = (
        all(run.server_errors == 0 for _, run in loads)
        and soaked.run.server_errors == 0
        and burst_run.faults == 0
        and all(a.status == 200 for a in admitted)
        and alive
        and same_files
        and same_images
        and shutdown.graceful
        and shutdown.refused
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
