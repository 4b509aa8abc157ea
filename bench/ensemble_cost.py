"""Cost of the ensembles: seconds per run (one issue time) for each ensemble size, on the same frames
in the same run, as ratios to a 12-member STEPS.

Measured per size: the production ensemble as the cycle runs it (perturbing the stored production
forecast; ``members``), the STEPS ensemble its probability map pools (``pooled STEPS``, where it
pools one), all of it with the products (catchment quantiles and probabilities of every dam, the
exceedance counts; ``cycle``), the same from scratch (RainNet's forecast included; ``with centre``), publishing its exceedance fields through the probability map (neighbourhood, map,
never rising with the threshold: what reading a stored file costs; ``published`` against ``raw shares``),
and pysteps STEPS. Best of ``--repeats`` after a warm-up, median over ``--starts``
issue times of the event.

    nice -n 10 python bench/ensemble_cost.py [--frames ../shared/data/radar/knmi-w0] [--sizes 6,12,24]

Writes ``docs/bench/ensemble_cost.json`` and prints a Markdown table for ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
from bench_forecast import best_time  # bench/ is the script's folder, first on sys.path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=Path, default=REPO.parent / "shared" / "data" / "radar" / "knmi-w0")
    ap.add_argument("--sizes", default="6,12,24")
    ap.add_argument("--starts", type=int, default=3, help="issue times (spread over the event)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "ensemble_cost.json")
    args = ap.parse_args(argv)

    from nowcast_core.contract import THRESHOLDS_MM_H
    from nowcast_core.dams import load_dams
    from nowcast_core.ensembles import get_ensemble
    from nowcast_core.ensembles.products import (
        dam_pool_weight,
        dam_probabilities,
        exceedance_probability,
    )
    from nowcast_core.forecasters import get_method
    from nowcast_core.io.sequences import folder_sequences

    if not args.frames.is_dir():
        raise SystemExit(f"no frames folder {args.frames}")
    sizes = [int(s) for s in args.sizes.split(",")]
    times, x, _ = folder_sequences(args.frames)
    picks = np.linspace(len(x) // 4, len(x) - 1, args.starts).astype(int)
    dams = load_dams()
    rainnet = get_method("rainnet")
    rainnet.forecast(x[:1])  # warm-up: graph tracing
    results = []
    for size in sizes:
        production = get_ensemble("rainnet-ensemble", n_members=size)
        production._centre = rainnet  # the same loaded model for every size
        steps = get_ensemble("steps", n_members=size)
        weight = dam_pool_weight(production.probability_map)
        row = {"members": size, "members_s": [], "pooled_steps_s": [], "with_products_s": [], "with_centre_s": [],
               "steps_s": [], "raw_shares_s": [], "published_s": []}
        for k in picks:
            xi, ti = x[k:k + 1], [times[k]]
            centre = rainnet.forecast(xi)

            def products(m, pooled):  # what the cycle stores: dam rows and the member (and pooled STEPS) counts
                dam_probabilities(centre[0], m[0], dams, steps_members_mm_h=None if pooled is None else pooled[0],
                                  steps_weight=weight)
                exceedance_probability(m[0], THRESHOLDS_MM_H)
                if pooled is not None:
                    exceedance_probability(pooled[0], THRESHOLDS_MM_H)

            def cycle():  # members around the stored forecast, the pooled STEPS, the products
                products(production.members(xi, issue_times=ti, centre_mm_h=centre),
                         production.steps_members(xi, issue_times=ti))

            def from_scratch():  # as `predict --probabilistic`: RainNet's forecast too
                production.members(xi, issue_times=ti)
                production.steps_members(xi, issue_times=ti)

            production.members(xi, issue_times=ti, centre_mm_h=centre)  # warm-up
            production.steps_members(xi, issue_times=ti) if size == sizes[0] and k == picks[0] else None
            row["members_s"].append(best_time(lambda: production.members(xi, issue_times=ti, centre_mm_h=centre), args.repeats))
            row["pooled_steps_s"].append(best_time(lambda: production.steps_members(xi, issue_times=ti), args.repeats)
                                         if weight > 0 else 0.0)
            row["with_products_s"].append(best_time(cycle, args.repeats))
            m = production.members(xi, issue_times=ti, centre_mm_h=centre)[0]
            pooled = production.steps_members(xi, issue_times=ti)
            pooled = None if pooled is None else pooled[0]
            row["raw_shares_s"].append(best_time(lambda: exceedance_probability(m, THRESHOLDS_MM_H), args.repeats))
            row["published_s"].append(best_time(
                lambda: exceedance_probability(m, THRESHOLDS_MM_H, production.probability_map, pooled), args.repeats))
            row["with_centre_s"].append(best_time(from_scratch, args.repeats))
            steps.members(xi, issue_times=ti) if size == sizes[0] and k == picks[0] else None  # warm-up
            row["steps_s"].append(best_time(lambda: steps.members(xi, issue_times=ti), args.repeats))
        for key in ("members_s", "pooled_steps_s", "with_products_s", "with_centre_s", "steps_s", "raw_shares_s",
                    "published_s"):
            row[key] = round(float(np.median(row[key])), 4)
        results.append(row)
        print(row, flush=True)
    ref = next((r["steps_s"] for r in results if r["members"] == 12), results[0]["steps_s"])
    for r in results:
        for key in ("members_s", "with_products_s", "with_centre_s", "steps_s"):
            r[key.replace("_s", "_x_steps12")] = round(r[key] / ref, 3)
    report = {"frames": str(args.frames), "issue_times": [str(times[k]) for k in picks], "repeats": args.repeats,
              "cpu_count": os.cpu_count(), "machine": platform.machine(), "load_average": os.getloadavg(),
              "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    print("exceedance fields, raw shares / published through the map (neighbourhood "
          f"{getattr(production.probability_map, 'neighbourhood_px', None)} px): "
          + ", ".join(f"{r['members']} members {r['raw_shares_s'] * 1000:.1f} / {r['published_s'] * 1000:.1f} ms"
                      for r in results))
    print("| members | production: members (cycle) | pooled STEPS | cycle: members + pooled STEPS + products | "
          "with RainNet centre | STEPS | x STEPS-12: cycle / with centre / STEPS |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['members']} | {r['members_s']:.3f} s | {r['pooled_steps_s']:.3f} s | {r['with_products_s']:.3f} s | "
              f"{r['with_centre_s']:.3f} s | "
              f"{r['steps_s']:.3f} s | {r['with_products_x_steps12']:.3f} / {r['with_centre_x_steps12']:.3f} / "
              f"{r['steps_x_steps12']:.3f} |")


if __name__ == "__main__":
    main()
