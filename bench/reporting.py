"""What the benchmark scripts share: the machine they ran on (timings mean nothing without it), and sections of a
Markdown report.

Several scripts write into one page (docs/robustness.md): each owns the text between its own markers,
`<!-- begin NAME -->` and `<!-- end NAME -->`, and leaves the rest of the page as it is.
"""

from __future__ import annotations

import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (elsewhere: what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_name() -> str:
    """One short line that names the machine, stored with every timed point: 'CPU, N logical cores, OS arch'."""
    return f"{cpu_model()}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}"


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: other work on the machine slows timings, so they are kept with them."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def total_memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def other_load() -> str:
    """The busiest other processes (by CPU since they started), so a reader can judge contended figures; those
    stopped (SIGSTOP, as the routines pause training for a quiet benchmark) are said to be."""
    busy = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        utime, stime, nice, start = int(fields[11]), int(fields[12]), int(fields[16]), int(fields[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
        elapsed = uptime - start / ticks
        if elapsed > 5 and command:
            share = (utime + stime) / ticks / elapsed
            if share > 0.2:
                stopped = ", stopped at the time" if fields[0] == "T" else ""
                busy.append((share, f"`{command[:90]}` (nice {nice}, {share:.0%} of a core on average{stopped})"))
    busy.sort(reverse=True)
    return "; ".join(description for _, description in busy)


def describe_machine() -> str:
    """One paragraph: CPU, cores, memory, OS, Python and what else was running."""
    memory = total_memory_gib()
    loads = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    text = (
        f"{cpu_model()}, {os.cpu_count()} logical cores, "
        f"{f'{memory:.0f} GiB' if memory else 'unknown'} memory; {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average {loads} at the end of the run"
    )
    busy = other_load()
    return text + (f". Also running: {busy}." if busy else ".")


def timestamp() -> str:
    """Minutes are enough to tell runs apart in a report."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def update_section(path: Path, name: str, body: str, title: str) -> None:
    """Replace the text between NAME's markers in `path` (appending the section if absent; creating the page)."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else f"# {title}\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    found = pattern.search(text)
    text = pattern.sub(lambda _: block, text) if found else text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
