"""Shared helpers for the benchmarks: processes, timing, RSS, synthetic media, reporting."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "RESULTS.md")


def env(cpu: int | None = None) -> dict[str, str]:
    """The helpers' environment; *cpu* pins a ``bench.procs`` helper to that core."""
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    if cpu is not None:
        e["BENCH_CPU"] = str(cpu)
    return e


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def start(*argv: str, cpu: int | None = None) -> subprocess.Popen[bytes]:
    """A helper process (``python -m bench.procs ...``), pinned to core *cpu* if given."""
    return subprocess.Popen([sys.executable, "-m", "bench.procs", *argv], env=env(cpu), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a running process, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stop(p: subprocess.Popen[bytes]) -> str:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return (p.stderr.read() if p.stderr else b"").decode(errors="replace")


def timed_run(argv: list[str], cpu: int | None = None, **kw: Any) -> tuple[float, float, str]:
    """Run a command; (seconds, peak RSS in MB, output) using /usr/bin/time when present;
    *cpu* pins a ``bench.procs`` helper to that core."""
    time_bin = "/usr/bin/time"
    if os.path.exists(time_bin):
        argv = [time_bin, "-f", "MAXRSS %M", *argv]
    t0 = time.monotonic()
    r = subprocess.run(argv, env=env(cpu), cwd=ROOT, capture_output=True, **kw)
    elapsed = time.monotonic() - t0
    out = (r.stdout + r.stderr).decode(errors="replace")
    if r.returncode != 0:
        raise RuntimeError(f"{argv} failed ({r.returncode}):\n{out[-2000:]}")
    rss = float("nan")
    for line in out.splitlines():
        if line.startswith("MAXRSS "):
            rss = int(line.split()[1]) / 1024
    return elapsed, rss, out


def make_file(path: str, size: int, header: bytes = b"") -> None:
    """*size* bytes: *header* then a repeated 1 MiB random block (written once; page cache after)."""
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        f.write(header)
        left = size - len(header)
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    import twisted
    return (f"{cpu}, {os.cpu_count()} cores, {mem} RAM; Linux {platform.release()}; "
            f"Python {platform.python_version()}; Twisted {twisted.__version__}")


def record(name: str, rows: list[tuple[str, str]], verdicts: list[str]) -> None:
    """Print a result and append it to bench/RESULTS.md."""
    stamp = time.strftime("%Y-%m-%d %H:%M")
    lines = [f"### {name} — {stamp}", "", f"Machine: {machine()}", "", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += [""] + [f"- {v}" for v in verdicts] + ["", ""]
    text = "\n".join(lines)
    print(text)
    new = not os.path.exists(RESULTS)
    with open(RESULTS, "a") as f:
        if new:
            f.write("# Benchmark results\n\nEach run appends a section; ratios are measured side by side "
                    "in one run.\n\n")
        f.write(text)


def check(ok: bool, text: str) -> str:
    return f"{'✔ holds' if ok else '✘ missed'}: {text}"


def dumps(obj: Any) -> str:
    return json.dumps(obj)
