"""Latency of the running daemon: a scan's arrival in the inbox -> its production forecast stored.

    python bench/latency.py [--event knmi-w0] [--paced 30] [--interval 4] [--burst 500]

1. The bare model time, in this process before the daemon starts: the bundled RainNet (as the
   daemon loads it) times ``forecast`` on one issue time (best of 5 after a warm-up) and on a
   batch of 32 issue times (the batched model rate the backlog can reach at best).
2. ``nowcast run`` as a subprocess, on defaults (its own ``NOWCAST_HOME``; shipped RainNet in
   production, persistence and pysteps baselines, verification, Prefect's temporary server,
   the inbox watcher, a 60 s sweep), JSON logs.
3. Paced: the event's first three scans, then one scan every ``--interval`` seconds, each moved
   into the inbox with ``os.rename`` from a staging folder on the same file system.
4. Burst: ``--burst`` distinct valid scans (real frames of the event folders, re-timed to
   consecutive 10-minute times a day after the paced event) renamed into the inbox at once.
5. Figures from what any user sees: ``nowcast frames --format json`` (``arrived_at``) and
   ``nowcast forecasts --since .. --format json`` (``stored_at``); cycle start and end times from
   the flow runs in Prefect's database (every cycle is one flow run), which also shows whether
   two cycles ever overlapped.

With ``--deploy-smoke``, then ``scripts/deploy-smoke`` (PostgreSQL, a Prefect server, process
workers) and the arrival -> stored latency it reports. Writes ``docs/bench/latency.json`` and
prints the figures of ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RADAR = REPO.parent / "shared" / "data" / "radar"
NOWCAST = [sys.executable, "-m", "nowcast_app.cli"]
BATCH = 32


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=float)
    return {"n": len(values), "p50_s": round(float(np.percentile(a, 50)), 3),
            "p95_s": round(float(np.percentile(a, 95)), 3), "max_s": round(float(a.max()), 3)}


def model_time(frames: Path) -> dict:
    """Seconds per forecast of the bundled RainNet on one issue time and per issue time in a batch."""
    from nowcast_core.forecasters import get_method
    from nowcast_core.io.sequences import folder_sequences

    _, inputs, _ = folder_sequences(frames)
    one = inputs[:1]
    batch = np.concatenate([inputs] * (1 + BATCH // len(inputs)))[:BATCH]
    rainnet = get_method("rainnet")
    rainnet.forecast(one), rainnet.forecast(batch)  # warm-up: tracing
    singles, batched = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        rainnet.forecast(one)
        singles.append(time.perf_counter() - t0)
    for _ in range(2):
        t0 = time.perf_counter()
        rainnet.forecast(batch)
        batched.append(time.perf_counter() - t0)
    return {"s_per_forecast_one": round(min(singles), 4), "s_per_forecast_batched": round(min(batched) / BATCH, 4),
            "batched_forecasts_per_s": round(BATCH / min(batched), 2), "batch": BATCH}


def utc(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


class Daemon:
    def __init__(self, root: Path):
        self.home = root / "home"
        self.inbox = self.home / "inbox"
        self.log_path = root / "daemon.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("NOWCAST_", "PREFECT_"))}
        self.env.update(NOWCAST_HOME=str(self.home), NOWCAST_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 300) -> float:
        t0 = time.monotonic()
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([*NOWCAST, "run"], cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        while "daemon started" not in self.log_path.read_text():
            if self.proc.poll() is not None or time.monotonic() - t0 > timeout_s:
                raise RuntimeError("the daemon did not start:\n" + self.log_path.read_text()[-3000:])
            time.sleep(0.2)
        while self.cycles() < 1:  # the start sweep (Prefect's temporary server starts with it)
            time.sleep(0.2)
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def _query(self, db: Path, sql: str) -> list:
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                return con.execute(sql).fetchall()
            finally:
                con.close()
        except sqlite3.Error:
            return []

    def cycles(self) -> int:
        return len(self.flow_runs(final_only=True))

    def flow_runs(self, final_only: bool = False) -> list[tuple[datetime, datetime | None, str]]:
        """(start, end, parameters) of every forecast-cycle flow run, oldest first."""
        rows = self._query(self.home / "prefect" / "prefect.db",
                           "SELECT r.start_time, r.end_time, r.parameters FROM flow_run r JOIN flow f ON f.id = r.flow_id "
                           "WHERE f.name = 'forecast-cycle' AND r.start_time IS NOT NULL ORDER BY r.start_time")
        out = [(datetime.fromisoformat(s).replace(tzinfo=UTC), datetime.fromisoformat(e).replace(tzinfo=UTC) if e else None,
                p) for s, e, p in rows]
        return [r for r in out if r[1] is not None] if final_only else out

    def cli_json(self, *args: str) -> list[dict]:
        out = subprocess.run([*NOWCAST, *args, "--format", "json"], cwd=REPO, env=self.env, capture_output=True,
                             text=True, check=True, timeout=300)
        return json.loads(out.stdout)

    def wait_idle(self, timeout_s: float, idle_s: float = 10.0) -> None:
        """Until no scan is left in the inbox and no cycle has run for ``idle_s`` seconds."""
        deadline, since = time.monotonic() + timeout_s, time.monotonic()
        while time.monotonic() < deadline:
            runs = self.flow_runs()
            busy = any(self.inbox.glob("RDR_*.npz")) or (runs and runs[-1][1] is None)
            if busy:
                since = time.monotonic()
            elif time.monotonic() - since > idle_s:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the daemon did not catch up within {timeout_s:.0f} s")


def stage(src: Path, staging: Path, name: str | None = None) -> Path:
    dest = staging / (name or src.name)
    shutil.copyfile(src, dest)
    return dest


def make_burst(staging: Path, first_time: datetime, n: int) -> list[Path]:
    """``n`` valid scans with consecutive 10-minute times from ``first_time``: the real frames of the
    event folders (``*-w*``), folder by folder, in time order, re-timed."""
    from nowcast_core.io import frame_file_name

    sources = [p for event in sorted(RADAR.glob("*-w*")) for p in sorted(event.glob("RDR_*.npz"))][:n]
    paths = []
    for k, src in enumerate(sources):
        with np.load(src, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files if key in ("frame", "nodata")}
        path = staging / frame_file_name(first_time + timedelta(minutes=10 * k))
        np.savez_compressed(path, **arrays)
        paths.append(path)
    if len(paths) < n:
        raise RuntimeError(f"only {len(paths)} real scans under {RADAR}")
    return paths


def latencies(daemon: Daemon, since: datetime, until: datetime) -> dict:
    """Per production run of an issue time in [since, until]: arrival -> stored, arrival -> its cycle's end."""
    frames = {f["scan_time"]: f for f in daemon.cli_json("frames")}
    rows = daemon.cli_json("forecasts", "--since", since.isoformat(), "--until", until.isoformat())
    runs = {r["issue_time"]: r for r in rows}  # 42 rows per run, one stored_at each
    cycles = daemon.flow_runs(final_only=True)
    stored, done = [], []
    for issue, run in runs.items():
        arrived = utc(frames[issue]["arrived_at"])
        stored_at = utc(run["stored_at"])
        stored.append((stored_at - arrived).total_seconds())
        end = next((e for s, e, _ in cycles if s <= stored_at <= e), None)
        if end is not None:
            done.append((end - arrived).total_seconds())
    arrivals = [utc(frames[i]["arrived_at"]) for i in runs]
    stores = [utc(r["stored_at"]) for r in runs.values()]
    return {"arrival_to_stored": percentiles(stored), "arrival_to_cycle_done": percentiles(done),
            "first_arrival": min(arrivals).isoformat() if arrivals else None,
            "first_stored": min(stores).isoformat() if stores else None,
            "last_stored": max(stores).isoformat() if stores else None,
            "span_s": round((max(stores) - min(arrivals)).total_seconds(), 2) if stores else None}


def overlaps(cycles: list[tuple[datetime, datetime | None, str]]) -> int:
    return sum(1 for (_, e1, _), (s2, _, _) in zip(cycles, cycles[1:]) if e1 is not None and s2 < e1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--event", default="knmi-w0", help="event folder under ../shared/data/radar for the paced part")
    ap.add_argument("--paced", type=int, default=30, help="scans delivered one at a time (after 3 to start with)")
    ap.add_argument("--interval", type=float, default=4.0, help="seconds between two paced scans")
    ap.add_argument("--burst", type=int, default=500)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "latency.json")
    ap.add_argument("--keep", action="store_true", help="keep the temporary home (logs, databases)")
    ap.add_argument("--deploy-smoke", action="store_true",
                    help="afterwards, run scripts/deploy-smoke (Prefect server and worker) and report its latency")
    args = ap.parse_args()

    results: dict = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
                     "settings": "defaults (nowcast run), NOWCAST_LOG_FORMAT=json", "event": args.event,
                     "interval_s": args.interval, "load_average_at_start": load_average()}
    results["model"] = model_time(RADAR / args.event)
    print(f"bare model time: {results['model']}", flush=True)

    root = Path(tempfile.mkdtemp(prefix="nowcast-latency-", dir="/tmp"))
    staging = root / "staging"
    staging.mkdir()
    daemon = Daemon(root)
    scans = sorted((RADAR / args.event).glob("RDR_*.npz"))[: 3 + args.paced]
    staged = [stage(p, staging) for p in scans]
    from nowcast_core.io import scan_time_from_name

    last_paced = scan_time_from_name(scans[-1].name)
    burst_start = last_paced + timedelta(days=1)
    burst = make_burst(staging, burst_start, args.burst) if args.burst else []
    try:
        results["daemon_start_s"] = round(daemon.start(), 1)
        print(f"daemon started in {results['daemon_start_s']} s", flush=True)
        daemon.inbox.mkdir(parents=True, exist_ok=True)
        for p in staged[:3]:
            os.rename(p, daemon.inbox / p.name)
        time.sleep(args.interval)
        for p in staged[3:]:
            os.rename(p, daemon.inbox / p.name)
            time.sleep(args.interval)
        daemon.wait_idle(timeout_s=300)
        results["load_average_after_paced"] = load_average()
        results["paced"] = latencies(daemon, scan_time_from_name(scans[3].name), last_paced)
        print(f"paced: {results['paced']}", flush=True)

        if burst:
            cycles_before = len(daemon.flow_runs())
            t0 = time.monotonic()
            for p in burst:
                os.rename(p, daemon.inbox / p.name)
            results["burst_rename_s"] = round(time.monotonic() - t0, 3)
            daemon.wait_idle(timeout_s=1800)
            results["load_average_after_burst"] = load_average()
            b = latencies(daemon, burst_start, burst_start + timedelta(minutes=10 * args.burst))
            n_runs = b["arrival_to_stored"]["n"]
            b["production_runs"] = n_runs
            b["issue_times_complete"] = args.burst - 3
            b["cycles"] = len(daemon.flow_runs()) - cycles_before
            b["skipped_too_old"] = args.burst - 3 - n_runs  # older than NOWCAST_MAX_SCAN_AGE_H behind the newest
            b["backlog_issue_times_per_s"] = round(n_runs / b["span_s"], 2) if b["span_s"] else None
            results["burst"] = b
            print(f"burst: {b}", flush=True)
        cycles = daemon.flow_runs()
        results["cycles"] = len(cycles)
        results["overlapping_cycles"] = overlaps(cycles)
        log = daemon.log_path.read_text().splitlines()
        results["daemon_info_lines"] = sum(1 for line in log if '"level": "INFO"' in line)
        results["daemon_warnings"] = [line for line in log if '"level": "WARNING"' in line or '"level": "ERROR"' in line][:20]
    finally:
        daemon.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    if args.deploy_smoke:
        results["deploy_smoke"] = deploy_smoke()
        print(f"deploy-smoke: {results['deploy_smoke']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print_table(results)
    return 0


def deploy_smoke() -> dict:
    """``scripts/deploy-smoke`` (PostgreSQL, Prefect server, process workers; its 30 sample scans
    replayed at once, a forecast-cycle deployment every 20 s): the latency it reports."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "latency.json"
        env = {**os.environ, "DEPLOY_SMOKE_LATENCY_JSON": str(out)}
        t0 = time.monotonic()
        proc = subprocess.run([str(REPO / "scripts" / "deploy-smoke")], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=1200)
        if not out.exists():
            return {"error": f"exit {proc.returncode}: {proc.stdout[-2000:]}"}
        figures = json.loads(out.read_text())
    figures.update(wall_s=round(time.monotonic() - t0), exit_code=proc.returncode, load_average_after=load_average())
    return figures


def print_table(r: dict) -> None:
    m = r["model"]
    print(f"\nload average (1, 5, 15 min): start {r['load_average_at_start']}, after the paced part "
          f"{r.get('load_average_after_paced')}, after the burst {r.get('load_average_after_burst')}")
    print("| part | scans | arrival -> production stored p50 / p95 / max (s) | arrival -> cycle done p50 / p95 / max (s) |")
    print("|---|---|---|---|")
    for part in ("paced", "burst"):
        if part in r:
            s, d = r[part]["arrival_to_stored"], r[part]["arrival_to_cycle_done"]
            print(f"| {part} | {s['n']} | {s.get('p50_s')} / {s.get('p95_s')} / {s.get('max_s')} "
                  f"| {d.get('p50_s')} / {d.get('p95_s')} / {d.get('max_s')} |")
    print(f"\nbare RainNet: {m['s_per_forecast_one']} s per forecast (one issue time), "
          f"{m['batched_forecasts_per_s']} forecasts/s batched ({m['batch']})")
    if "burst" in r:
        b = r["burst"]
        print(f"backlog: {b['production_runs']} production runs in {b['span_s']} s = {b['backlog_issue_times_per_s']} "
              f"issue times/s, {b['cycles']} cycles")
    print(f"cycles: {r['cycles']}, overlapping: {r['overlapping_cycles']}, daemon INFO lines: {r['daemon_info_lines']}")
    if "deploy_smoke" in r:
        d = r["deploy_smoke"]
        print(f"deploy-smoke (Prefect server + process worker, {d.get('n')} runs, {d.get('delivery')}, deployment every "
              f"{d.get('poll_interval_s')} s): arrival -> stored p50 {d.get('p50_s')} / p95 {d.get('p95_s')} / "
              f"max {d.get('max_s')} s")


if __name__ == "__main__":
    raise SystemExit(main())
