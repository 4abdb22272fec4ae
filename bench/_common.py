"""Shared helpers for the benchmarks: processes, ports, memory, percentiles."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the Kong harness and mocks are test support

from support.aggregator_fixtures import free_port, wait_http_ok  # noqa: E402


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set, from the kernel."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def rss_split_mb(pid: int) -> dict[str, float]:
    """VmRSS and its parts: RssAnon is the process's own memory (Python, gRPC, the engine's
    allocator); RssFile is mapped files, mostly chDB's library (~150 MB of clean pages that
    every process using that file shares and the kernel may drop)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


class RssSampler:
    """Samples a process's RSS split every `interval_s` in a thread: VmHWM gives the peak
    but not what it was made of. `peak()` is the split at the largest VmRSS seen, and the
    largest RssAnon."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self._at_peak: dict[str, float] = {}
        self._max_anon = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            split = rss_split_mb(self.pid)
            if split.get("VmRSS", 0.0) > self._at_peak.get("VmRSS", 0.0):
                self._at_peak = split
            self._max_anon = max(self._max_anon, split.get("RssAnon", 0.0))
            if self._stop.wait(self.interval_s):
                return

    def peak(self) -> dict[str, float]:
        return {"rss_at_peak_anon_mb": round(self._at_peak.get("RssAnon", float("nan")), 1),
                "rss_at_peak_file_mb": round(self._at_peak.get("RssFile", float("nan")), 1),
                "rss_anon_max_mb": round(self._max_anon, 1)}  # fmt: skip


def _stat_cpu_s(stat: str) -> float:
    """User + system CPU seconds from a /proc .../stat line (fields 14 and 15, after the name)."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) by thread name, from /proc: where a process's time went.
    Python threads are all named after the interpreter; the embedded engine names its own."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        out[name] = out.get(name, 0.0) + _stat_cpu_s(stat)
    return out


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a whole process so far, threads that have ended included
    (a sum over /proc/<pid>/task would miss them: kong-pdk's threads mode runs each event on its own)."""
    return _stat_cpu_s(Path(f"/proc/{pid}/stat").read_text())


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3) if ms else float("nan"),
    }


def start_aggregator(store_dir: Path, *, env: dict[str, str] | None = None,
                     cpus: set[int] | None = None) -> tuple[subprocess.Popen[bytes], str, str]:  # fmt: skip
    """``cpus``: hold the process (every thread it will start) to these cores."""
    grpc_listen, http_listen = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    pinned = ["taskset", "--cpu-list", ",".join(map(str, sorted(cpus)))] if cpus else []
    process = subprocess.Popen(
        [*pinned, sys.executable, "-m", "ai_chargeback_aggregator.cli.main", "serve", "--store-dsn", f"chdb://{store_dir}",
         "--grpc-listen", grpc_listen, "--http-listen", http_listen, "--log-level", "WARNING"],
        env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=open(store_dir.parent / f"{store_dir.name}.log", "ab"),  # noqa: SIM115
    )  # fmt: skip
    wait_http_ok(f"http://{http_listen}/readyz")
    return process, grpc_listen, http_listen


def metric(http_listen: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{http_listen}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0
