"""Soak run: a day of scans through `nowcast run` at an accelerated pace.

Starts the embedded daemon with a short poll interval, drops one scan per interval into
its inbox (144 scans = 24 hours), and samples the daemon's resident memory (with its
children: Prefect's temporary server), open files, and the sizes of the app's and
Prefect's databases after every cycle. Writes the samples to ``docs/bench/soak.json``
and prints a Markdown summary for ``docs/BENCHMARKS.md``.

    python bench/soak.py [--scans 147] [--interval 4] [--source DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flows.daemon import stop_daemon

REPO = Path(__file__).resolve().parents[1]


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    except OSError:
        return []
    kids = [int(p) for p in out]
    return kids + [g for k in kids for g in _children(k)]


def _open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def _production_runs(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
        try:
            return con.execute("SELECT COUNT(*) FROM forecast_runs WHERE is_production").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, default=147, help="scans to deliver (147 = 144 cycles with forecasts)")
    ap.add_argument("--interval", type=float, default=4.0, help="seconds between scans and between cycles")
    ap.add_argument("--source", type=Path, help="folder of scans (default: a generated sample sequence)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "soak.json")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nowcast-soak-"))
    home, source = work / "home", work / "scans"
    nowcast = [sys.executable, "-m", "nowcast_app.cli"]
    if args.source:
        scans = sorted(args.source.glob("RDR_*.npz"))[: args.scans]
    else:
        subprocess.run([*nowcast, "sample", str(source), "--scans", str(args.scans), "--seed", "11"], check=True)
        scans = sorted(source.glob("RDR_*.npz"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOWCAST_", "PREFECT_"))}
    env.update(NOWCAST_HOME=str(home), NOWCAST_POLL_INTERVAL_S=str(args.interval), NOWCAST_SETTLE_SECONDS="0")
    (home / "inbox").mkdir(parents=True)
    log = open(work / "daemon.log", "w")
    daemon = subprocess.Popen([*nowcast, "run"], env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True, cwd=REPO)
    samples = []
    started = time.monotonic()
    try:
        for k, scan in enumerate(scans):
            tmp = home / "inbox" / f".{scan.name}.part"
            shutil.copyfile(scan, tmp)
            os.replace(tmp, home / "inbox" / scan.name)
            time.sleep(args.interval)
            pids = [daemon.pid, *_children(daemon.pid)]
            samples.append({
                "scan": k + 1,
                "seconds": round(time.monotonic() - started, 1),
                "rss_mb": round(sum(_rss_kb(p) for p in pids) / 1024, 1),
                "daemon_rss_mb": round(_rss_kb(daemon.pid) / 1024, 1),
                "open_files": sum(_open_files(p) for p in pids),
                "app_db_kb": _size(home / "nowcast.db") // 1024,
                "prefect_db_kb": _size(home / "prefect" / "prefect.db") // 1024,
                "production_runs": _production_runs(home / "nowcast.db"),
            })
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon died (exit {daemon.returncode}); see {work / 'daemon.log'}")
        deadline = time.monotonic() + 120
        while _production_runs(home / "nowcast.db") < len(scans) - 3 and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        stop_daemon(daemon, 120)
        log.close()

    runs = _production_runs(home / "nowcast.db")
    warm = [s for s in samples if s["scan"] > len(samples) // 6]
    first, last = warm[0], warm[-1]
    n = len(warm)
    xs = [s["scan"] for s in warm]
    ys = [s["rss_mb"] for s in warm]
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(1e-9, sum((x - mx) ** 2 for x in xs))
    result = {
        "scans": len(scans), "interval_s": args.interval, "production_runs": runs,
        "daemon_exit_code": daemon.returncode, "wall_seconds": round(time.monotonic() - started, 1),
        "rss_mb_after_warmup": first["rss_mb"], "rss_mb_end": last["rss_mb"],
        "rss_slope_mb_per_100_cycles": round(100 * slope, 2), "rss_mb_max": max(s["rss_mb"] for s in samples),
        "open_files_after_warmup": first["open_files"], "open_files_end": last["open_files"],
        "app_db_kb_end": last["app_db_kb"], "prefect_db_kb_end": last["prefect_db_kb"],
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print("| scans | cycles with forecasts | RSS after warm-up (MB) | RSS at end (MB) | slope (MB / 100 cycles) "
          "| open files after warm-up / end | app DB (KB) | Prefect DB (KB) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {len(scans)} | {runs} | {first['rss_mb']} | {last['rss_mb']} | {result['rss_slope_mb_per_100_cycles']} "
          f"| {first['open_files']} / {last['open_files']} | {last['app_db_kb']} | {last['prefect_db_kb']} |")
    print(f"samples: {args.out}; daemon log: {work / 'daemon.log'}")
    shutil.rmtree(home / "archive", ignore_errors=True)
    return 0 if runs >= len(scans) - 3 and daemon.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
