"""Load on the web server: N concurrent clients for S seconds against `nowcast serve` on 127.0.0.1.

Fills a home with a real cycle on real scans (20 KNMI scans, pysteps beside persistence, as the
web tests do) unless ``--home`` names a filled one, starts ``nowcast serve`` on a free port of
127.0.0.1, and lets each client request, in turn, what the dashboard asks for: status, dams,
forecasts, alerts, alert history, series, skill, a field image and /metrics. Every request
counts; an error is any exception or any status but 200. Writes ``docs/bench/load.json`` and
prints a Markdown table for ``docs/BENCHMARKS.md``. Sends traffic to 127.0.0.1 only and stops
by itself.

    python bench/load.py [--clients 50] [--seconds 30] [--home DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fill(home: Path) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from web_home import fill_home

    fill_home(home, REPO.parent / "shared" / "data" / "radar").close()


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


async def _client(base: str, paths: list[str], until: float, k: int, out: dict) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        i = k
        while time.perf_counter() < until:
            path = paths[i % len(paths)]
            i += 1
            t0 = time.perf_counter()
            try:
                r = await client.get(path)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            name = "/api/v1/fields/{issue_time}/30.png" if path.endswith(".png") else path.split("?")[0]
            out.setdefault(name, []).append((time.perf_counter() - t0) * 1000)
            if not ok:
                out.setdefault("_errors", []).append(path)


async def _run(base: str, clients: int, seconds: float) -> dict:
    async with httpx.AsyncClient(base_url=base) as c:
        issue = (await c.get("/api/v1/status")).json()["last_run_issue_time"]
    paths = ["/api/v1/status", "/api/v1/dams", "/api/v1/forecasts", "/api/v1/alerts", "/api/v1/alerts/history",
             "/api/v1/series?hours=3", "/api/v1/skill", f"/api/v1/fields/{issue}/30.png", "/metrics"]
    out: dict = {}
    until = time.perf_counter() + seconds
    await asyncio.gather(*(_client(base, paths, until, k, out) for k in range(clients)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--home", type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "load.json")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="nowcast-load-")
    home = args.home or Path(tmp.name) / "home"
    if args.home is None:
        _fill(home)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOWCAST_", "PREFECT_"))}
    env.update({"NOWCAST_HOME": str(home), "NOWCAST_METHOD": "pysteps"})
    server = subprocess.Popen([sys.executable, "-m", "nowcast_app", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(base + "/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        t0 = time.perf_counter()
        out = asyncio.run(_run(base, args.clients, args.seconds))
        wall = time.perf_counter() - t0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    errors = out.pop("_errors", [])
    every = [ms for v in out.values() for ms in v]
    result = {
        "clients": args.clients, "seconds": round(wall, 1), "requests": len(every), "errors": len(errors),
        "requests_per_s": round(len(every) / wall, 1),
        "p50_ms": round(statistics.median(every), 1), "p95_ms": round(_pct(every, 95), 1),
        "p99_ms": round(_pct(every, 99), 1), "max_ms": round(max(every), 1),
        "by_path": {p: {"n": len(v), "p50_ms": round(statistics.median(v), 1), "p95_ms": round(_pct(v, 95), 1)}
                    for p, v in sorted(out.items())},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "note": "client and server on the same machine",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['clients']} clients, {result['seconds']} s: {result['requests']} requests "
          f"({result['requests_per_s']}/s), {result['errors']} errors; p50 {result['p50_ms']} ms, "
          f"p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms\n")
    print("| request | n | p50 (ms) | p95 (ms) |\n|---|---|---|---|")
    for p, s in result["by_path"].items():
        print(f"| `{p}` | {s['n']} | {s['p50_ms']} | {s['p95_ms']} |")
    tmp.cleanup()
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
