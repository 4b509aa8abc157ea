"""Probabilistic skill on held-out events: the production ensemble against a 12-member STEPS.

Leave-one-event-out. For each held-out event E, the production ensemble is centred on the
RainNet trained without E and its perturbations are calibrated on the other events only
(:func:`nowcast_core.ensembles.calibration.calibrate`); both ensembles forecast the same starts of
E's windows. Scores, pixel by pixel, against the scans observed at each lead:

- Brier score at 1 and 5 mm/h per lead (production and STEPS), with the decomposition and ROC area;
- the production ensemble's reliability diagram (10 bins) pooled over leads, and each bin's
  deviation from the diagonal where it holds at least ``--min-bin-pixels`` pixels;
- the dam products an operator reads (``nowcast_core.ensembles.products.dam_probabilities``, as the
  cycle stores them: the members pooled with STEPS at the map's weight): the probability of each
  catchment's mean rate reaching 1, 5 and 10 mm/h per lead, and of its depth over the next hour reaching
  5, 10, 20 and 50 mm, against the catchment means of the observed scans; Brier score, its skill over
  the held-out events' own base rate, and reliability (``dams`` in the result).

``--fold-models DIR`` holds ``<event>.keras`` per held-out event (trained without it). Without it,
the shipped model is used for the events it was not trained on (its training report names them), calibrated on
the events it was trained on. ``--write-calibration`` stores the calibration of the shipped model
(on its training events) as the production calibration ``nowcast_core/data/ensemble_calibration.json``.

    nice -n 10 python bench/probabilistic_skill.py [--fold-models /work/loeo/models] [--windows 0-3] [--stride 3]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EVENTS = ("bom", "fmi-20160928", "knmi", "mch-20150515", "mch-20170131")
EVAL_THRESHOLDS_MM_H = (1.0, 5.0)
#: A dam reliability bin is drawn with at least this many forecasts (dam x start, and lead where pooled).
DAM_MIN_BIN_FORECASTS = 30


def windows(radar: Path, event: str, first: int, last: int) -> list[Path]:
    return [radar / f"{event}-w{k}" for k in range(first, last + 1) if (radar / f"{event}-w{k}").is_dir()]


def load_starts(folders: list[Path], stride: int) -> tuple[list, np.ndarray, np.ndarray]:
    """Issue times, inputs (n, 4, H, W) and observations (n, 6, H, W) of every ``stride``-th start."""
    from nowcast_core.contract import N_LEADS
    from nowcast_core.io.sequences import folder_sequences

    times, xs, ys = [], [], []
    for folder in folders:
        t, x, y = folder_sequences(folder, N_LEADS)
        times += [(folder.name, tt) for tt in t[::stride]]
        xs.append(x[::stride])
        ys.append(y[::stride])
    return times, np.concatenate(xs), np.concatenate(ys)


def centres(model_path: Path, x: np.ndarray) -> np.ndarray:
    from nowcast_core.forecasters import get_method
    from nowcast_core.forecasters.batch import forecast_batched

    return forecast_batched(get_method("rainnet", model_path=model_path), x, 16)


def map_models_centres(template: str, held_out: str, train_events: list[str], data, stride: int):
    """Forecasts of each calibration event by the model ``template`` names for it (one it was not trained
    on), concatenated in ``train_events`` order; and a description naming the models and, from their
    training reports, any that saw the held-out event (a leak, reported, not hidden)."""
    parts, used, leaks = [], {}, []
    for event in train_events:
        path = Path(template.format(held_out=held_out, event=event))
        if not path.is_file():
            raise SystemExit(f"--map-models: no model {path} for calibration event {event} of {held_out}")
        report = path.with_suffix(".report.json")
        trained_on = json.loads(report.read_text()).get("events", []) if report.is_file() else None
        if trained_on is not None and event in trained_on:
            raise SystemExit(f"--map-models: {path} was trained on {event}, the event it would forecast")
        if trained_on is None or held_out in trained_on:
            leaks.append(path.name)
        parts.append(centres(path, data(event, stride)[1]))
        used[event] = str(path)
    return np.concatenate(parts), {"models": used, "saw_held_out_or_unknown": leaks}


def dam_scores(counts: dict) -> dict:
    """Per (method, kind, threshold, lead) key of ``counts`` (:class:`ProbCounts`): forecasts, events,
    Brier score, Brier skill over the sample's base rate (1 - Brier / uncertainty; None without events)
    and the reliability diagram."""
    out = {}
    for key, c in counts.items():
        decomposition = c.decomposition()
        uncertainty = decomposition["brier_uncertainty"]
        out[key] = {"n": c.n, "events": int(sum(c.bin_events)), "brier": round(c.brier(), 5),
                    "brier_skill": round(1 - c.brier() / uncertainty, 4) if uncertainty > 0 else None,
                    "reliability": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in b.items()}
                                    for b in c.reliability_diagram()]}
    return out


def add_dam_counts(counts: dict, method: str, rows: list[dict], observed_mm_h: np.ndarray, dams) -> None:
    """Add one start's dam products (``dam_probabilities`` rows) to ``counts`` against the observed fields
    (6, H, W): the catchment-mean rate per lead and the depth over the hour (at +60)."""
    from nowcast_core.dams import accumulated_depth_mm, catchment_mean_rates
    from nowcast_core.verification.probabilistic import ProbCounts

    rate = catchment_mean_rates(observed_mm_h, dams)  # (6, n_dams)
    depth = accumulated_depth_mm(rate)
    column = {d.id: j for j, d in enumerate(dams)}
    for r in rows:
        j, k = column[r["dam_id"]], r["lead_minutes"] // 10 - 1
        items = [("rate", float(t), p, rate[k, j]) for t, p in r["prob_rate_ge"].items()]
        if r["lead_minutes"] == 60:
            items += [("depth_1h", float(t), p, depth[k, j]) for t, p in r["prob_accum_ge"].items()]
        for kind, threshold, probability, observed in items:
            key = f"{method}|{kind}|{threshold:g}|{r['lead_minutes']}"
            counts.setdefault(key, ProbCounts()).add(
                ProbCounts.of(np.array([probability]), np.array([observed]), threshold))


#: Where an observed depth stands against the members' 10 .. 90 % range (``accum_mm_p10`` .. ``_p90``).
RANGE_SIDES = ("below", "inside", "above")


def add_dam_ranges(ranges: dict, method: str, rows: list[dict], observed_mm_h: np.ndarray, dams,
                   wet_mm: float = 1.0) -> None:
    """Count, per lead, where the observed catchment depth since the issue time fell against the 10 .. 90 %
    range of one start's dam products (``dam_probabilities`` rows): below it, inside it (ends included, to
    the rows' rounding) or above it; ``all`` the forecasts, ``wet`` those where the observed depth or the
    range's top reaches ``wet_mm`` (a dry hour forecast dry is inside any range)."""
    from nowcast_core.dams import accumulated_depth_mm, catchment_mean_rates
    from nowcast_core.ensembles.products import pool_members

    depth = accumulated_depth_mm(catchment_mean_rates(observed_mm_h, dams))  # (6, n_dams)
    column = {d.id: j for j, d in enumerate(dams)}
    for r in rows:
        observed = float(depth[r["lead_minutes"] // 10 - 1, column[r["dam_id"]]])
        side = 0 if observed < r["accum_mm_p10"] - 1e-3 else 2 if observed > r["accum_mm_p90"] + 1e-3 else 1
        wet = max(observed, r["accum_mm_p90"]) >= wet_mm
        for scope in ("all", "wet") if wet else ("all",):
            ranges.setdefault(f"{method}|{r['lead_minutes']}|{scope}", [0, 0, 0])[side] += 1
        if wet:  # where the observation falls in the members' distribution (weighted as published; ties halved)
            steps = r.get("steps_accum_mm_members")
            values, weights = pool_members(np.asarray(r["accum_mm_members"]), None if steps is None else np.asarray(steps),
                                           r.get("steps_weight"))
            weights = np.full(len(values), 1.0 / len(values)) if weights is None else weights
            pit = float(weights @ (values < observed - 1e-3) + 0.5 * weights @ (np.abs(values - observed) <= 1e-3))
            ranges.setdefault(f"{method}|{r['lead_minutes']}|pit", []).append(round(pit, 4))


def print_dam_ranges(ranges: dict) -> None:
    """Per lead: the share of observed depths below, inside and above the 10 .. 90 % range, production
    against STEPS, all forecasts and the wet ones (80 % inside and 10 % on each side when calibrated)."""
    print("| lead | forecasts (wet) | production: below / inside / above, all (wet) | STEPS: below / inside / above, "
          "all (wet) |")
    print("|---|---|---|---|")
    for lead in (10, 20, 30, 40, 50, 60):
        cells = []
        for method in ("production", "steps"):
            parts = []
            for scope in ("all", "wet"):
                c = ranges.get(f"{method}|{lead}|{scope}", [0, 0, 0])
                parts.append(" / ".join(f"{100 * v / max(sum(c), 1):.0f} %" for v in c))
            cells.append(f"{parts[0]} ({parts[1]})")
        n = ranges.get(f"production|{lead}|all", [0])
        wet = ranges.get(f"production|{lead}|wet", [0])
        print(f"| +{lead} | {sum(n)} ({sum(wet)}) | {cells[0]} | {cells[1]} |")


def range_levels(folds: dict, method: str = "production", nominal=(0.1, 0.9)) -> dict:
    """Member quantile levels that would make the published range hold the observation as often as its
    name says (``nominal``), from where wet observations fell in the members' distribution (the ``pit``
    lists of :func:`add_dam_ranges`), per lead: chosen for each fold on the *other* folds (so its coverage
    is out of sample) and on all of them; with the coverage each fold gets below, inside and above."""
    out = {}
    for lead in (10, 20, 30, 40, 50, 60):
        pits = {e: np.asarray(f["dam_ranges"].get(f"{method}|{lead}|pit", [])) for e, f in folds.items()}
        every = np.concatenate(list(pits.values()))
        nested = np.zeros(3)
        for event, own in pits.items():
            others = np.concatenate([p for e, p in pits.items() if e != event])
            low, high = np.quantile(others, nominal)
            nested += [np.sum(own < low), np.sum((own >= low) & (own <= high)), np.sum(own > high)]
        out[lead] = {"levels": [round(float(v), 3) for v in np.quantile(every, nominal)],
                     "as_published": [round(float(np.mean(every < nominal[0])), 3), round(float(np.mean(every > nominal[1])), 3)],
                     "nested_coverage": [round(float(v), 3) for v in nested / max(nested.sum(), 1)], "n": int(every.size)}
    return out


def write_range_levels(result_path: Path) -> None:
    """Put the dam range levels of a leave-one-event-out result (:func:`range_levels`, on all its folds)
    into the production calibration file, the rest of it kept; its provenance says where they came from."""
    from dataclasses import replace

    from nowcast_core.ensembles.perturbed import CALIBRATION_FILE, Perturbations

    result = json.loads(Path(result_path).read_text())
    levels = result.get("dam_range_levels")
    if not levels:
        raise SystemExit(f"{result_path} has no dam_range_levels: run the leave-one-event-out bench with --fold-models")
    leads = sorted(levels, key=int)
    current = Perturbations.load()
    provenance = {**current.provenance, "dam_range_levels": {
        "from": str(result_path), "centre_models": sorted({f["centre_model"] for f in result["folds"].values()}),
        "wet_forecasts": [levels[k]["n"] for k in leads],
        "held_out_below_inside_above": [levels[k]["nested_coverage"] for k in leads]}}
    updated = replace(current, dam_range_levels=tuple(tuple(levels[k]["levels"]) for k in leads), provenance=provenance)
    CALIBRATION_FILE.write_text(updated.to_json())
    print(f"dam range levels {updated.dam_range_levels}; wrote {CALIBRATION_FILE}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--radar", type=Path, default=REPO.parent / "shared" / "data" / "radar")
    ap.add_argument("--fold-models", type=Path, default=None)
    ap.add_argument("--events", default=None, help="comma-separated held-out events (default: all with a model)")
    ap.add_argument("--windows", default="0-3", help="window numbers, e.g. 0-3")
    ap.add_argument("--stride", type=int, default=3, help="every stride-th start of a window (evaluation)")
    ap.add_argument("--calibration-stride", type=int, default=4, help="every stride-th start (calibration)")
    ap.add_argument("--members", type=int, default=24, help="production ensemble members")
    ap.add_argument("--steps-members", type=int, default=12)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--min-bin-pixels", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "probabilistic_skill.json")
    ap.add_argument("--plot", type=Path, default=REPO / "docs" / "reliability.png")
    ap.add_argument("--write-calibration", action="store_true")
    ap.add_argument("--gain-grid", default=None, help="comma-separated per-lead gains to search (default the "
                    "calibration's grid; '1' keeps the perturbations mean-preserving)")
    ap.add_argument("--perturbations-from", type=Path, nargs="*", default=None,
                    help="earlier result files of this bench (same protocol), or a calibration file: reuse each "
                    "fold's perturbations, chosen there on the same calibration events, instead of searching the "
                    "grid again (the probability map is fitted anew)")
    ap.add_argument("--map-models", default=None, metavar="TEMPLATE",
                    help="fit the probability map on forecasts each calibration event has not been trained on: "
                    "the model for calibration event {event} of held-out event {held_out}, e.g. "
                    "'/work/loeo/nested/{held_out}/{event}.keras' (trained on neither). Default: the centre model's "
                    "own forecasts of its training events (in-sample)")
    ap.add_argument("--pool-steps", action="store_true",
                    help="let the map pool the STEPS ensemble's shares, its weight chosen on the calibration events "
                    "(each held out in turn); the production ensemble then runs that STEPS too")
    ap.add_argument("--map-events", default=None, help="with --write-calibration: fit the production map (and STEPS "
                    "weights) on these events ('all' or comma-separated) around the shipped model, keeping the "
                    "perturbations of --perturbations-from, write the calibration and stop (the leave-one-event-out "
                    "run is the test of this procedure)")
    ap.add_argument("--no-recalibration", action="store_true", help="publish the members' raw exceedance shares "
                    "(no probability map fitted on the calibration events)")
    ap.add_argument("--no-match-cdf", action="store_true", help="perturb RainNet's forecast as it is (no probability "
                    "matching to the newest scan)")
    ap.add_argument("--write-range-levels", type=Path, default=None, metavar="RESULT",
                    help="write the dam range levels of an earlier leave-one-event-out result of this bench "
                    "(dam_range_levels, chosen on all its folds) into the production calibration, and stop")
    args = ap.parse_args(argv)
    if args.write_range_levels is not None:
        write_range_levels(args.write_range_levels)
        return

    from nowcast_core.contract import THRESHOLDS_MM_H
    from nowcast_core.dams import load_dams
    from nowcast_core.ensembles import get_ensemble
    from nowcast_core.ensembles.calibration import calibrate, recalibrate
    from nowcast_core.ensembles.perturbed import CALIBRATION_FILE, Perturbations
    from nowcast_core.ensembles.products import (
        dam_pool_weight,
        dam_probabilities,
        exceedance_probability,
    )
    from nowcast_core.ensembles.recalibration import member_shares
    from nowcast_core.rainnet import bundled_model_path, training_events
    from nowcast_core.verification.probabilistic import (
        ProbCounts,
        reliability_deviations,
    )

    if args.pool_steps and (not args.perturbations_from or args.no_recalibration):
        raise SystemExit("--pool-steps refits the map of earlier perturbations: give --perturbations-from, "
                         "without --no-recalibration")
    if args.map_models and (not args.perturbations_from or args.no_recalibration):
        raise SystemExit("--map-models refits the map of earlier perturbations: give --perturbations-from, "
                         "without --no-recalibration")
    first, last = (int(v) for v in args.windows.split("-"))
    if not args.radar.is_dir():
        raise SystemExit(f"no radar folder {args.radar}")
    wanted = EVENTS if args.events is None else tuple(args.events.split(","))
    unknown = sorted(set(wanted) - set(EVENTS))
    if unknown:
        raise SystemExit(f"unknown events {unknown}; known: {list(EVENTS)}")
    if args.fold_models is not None:
        folds = {e: (args.fold_models / f"{e}.keras", [o for o in EVENTS if o != e]) for e in wanted}
        missing = [str(p) for p, _ in folds.values() if not p.is_file()]
        if missing:
            raise SystemExit(f"fold models missing: {', '.join(missing)}")
        protocol = "leave-one-event-out with fold models"
    else:
        shipped = bundled_model_path()
        trained_on = training_events(shipped)  # from its training report
        folds = {e: (shipped, trained_on) for e in wanted if e not in trained_on}
        if not folds and not args.map_events:
            raise SystemExit(f"the shipped model was trained on {', '.join(trained_on)}: no event is left to score "
                             "it on; give --fold-models (or --map-events with --write-calibration)")
        protocol = "shipped model on the events it was not trained on; calibrated on its training events"

    earlier: dict[str, Perturbations] = {}
    for path in args.perturbations_from or ():
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"--perturbations-from {path}: {exc}") from None
        if "displacement_px" in doc:  # a calibration file (the shipped one): its perturbations for every fold
            p = Perturbations.load(path)
            earlier.update({e: p for e in wanted})
            continue
        this_run = {"windows": args.windows, "calibration_stride": args.calibration_stride, "members": args.members,
                    "seed": args.seed, "match_cdf": not args.no_match_cdf}
        for key, value in this_run.items():
            if doc.get(key) != value:
                raise SystemExit(f"--perturbations-from {path}: its {key} {doc.get(key)!r} differs from this run's")
        for event, fold in doc["folds"].items():
            p = fold["perturbations"]
            earlier[event] = Perturbations(tuple(p["displacement_px"]), tuple(p["log_sigma"]), float(p["corr_px"]),
                                           tuple(p["gain"]), bool(p["match_cdf"]),
                                           {"chosen_in": str(path), "centre_model": fold["centre_model"],
                                            "calibrated_on": fold["calibrated_on"]})
    cache: dict[tuple, tuple] = {}
    steps = get_ensemble("steps", n_members=args.steps_members, seed=args.seed)

    def data(event: str, stride: int):
        if (event, stride) not in cache:
            cache[event, stride] = load_starts(windows(args.radar, event, first, last), stride)
        return cache[event, stride]

    methods = ("production", "steps")
    dams = load_dams()
    dam_pooled: dict = {}
    range_pooled: dict = {}
    pooled = {m: {k: {t: ProbCounts() for t in EVAL_THRESHOLDS_MM_H} for k in range(6)} for m in methods}
    report = {"protocol": protocol, "match_cdf": not args.no_match_cdf, "recalibration": not args.no_recalibration, "gain_grid": args.gain_grid or "default", "windows": args.windows, "stride": args.stride,
              "calibration_stride": args.calibration_stride, "members": args.members,
              "steps_members": args.steps_members, "pool_steps": args.pool_steps, "seed": args.seed, "folds": {}}
    seconds = {"production": 0.0, "steps": 0.0}
    def fit_map(p, model_path: Path, train_events: list[str], held_out: str):
        """``p`` with its probability map (and, with --pool-steps, its STEPS weights) fitted anew on
        ``train_events``' calibration starts."""
        train_x = np.concatenate([data(e, args.calibration_stride)[1] for e in train_events])
        train_y = np.concatenate([data(e, args.calibration_stride)[2] for e in train_events])
        map_centres, map_from = centres(model_path, train_x), "the centre model (in-sample)"
        if args.map_models:
            map_centres, map_from = map_models_centres(args.map_models, held_out, train_events, data,
                                                       args.calibration_stride)
        pool = {}
        if args.pool_steps:
            t_pool = time.perf_counter()
            groups = [e for e in train_events for _ in range(len(data(e, args.calibration_stride)[1]))]
            calib_times = [t for e in train_events for _, t in data(e, args.calibration_stride)[0]]
            pool = {"steps_members": args.steps_members, "groups": groups, "steps_shares": np.stack([
                member_shares(steps.members(train_x[i:i + 1], issue_times=[calib_times[i]])[0],
                              THRESHOLDS_MM_H).astype(np.float32) for i in range(len(train_x))])}
            print(f"[{held_out}] STEPS on {len(train_x)} calibration starts: "
                  f"{time.perf_counter() - t_pool:.0f} s", flush=True)
        return recalibrate(replace(p, provenance={**p.provenance, "starts": len(train_x),
                                                  "map_fitted_on_forecasts_of": map_from,
                                                  "map_fitted_on_events": list(train_events)}),
                           map_centres, train_y, n_members=args.members, seed=args.seed,
                           newest_scans_mm_h=train_x[:, -1], scored_thresholds_mm_h=EVAL_THRESHOLDS_MM_H, **pool)

    if args.map_events:  # the production map on these events; no event is left to score it on
        events = list(EVENTS) if args.map_events == "all" else args.map_events.split(",")
        if sorted(set(events) - set(EVENTS)) or args.fold_models is not None or not args.write_calibration \
                or len(earlier) == 0:
            raise SystemExit("--map-events takes 'all' or known events, with --write-calibration, "
                             "--perturbations-from a calibration file and no --fold-models")
        params = fit_map(next(iter(earlier.values())), bundled_model_path(), events, "production")
        CALIBRATION_FILE.write_text(params.to_json())
        print(f"map fitted on {events}: neighbourhood_px {params.probability_map.neighbourhood_px}, steps_weight "
              f"{params.probability_map.steps_weight}; wrote {CALIBRATION_FILE}")
        return

    calibrations: dict[tuple, object] = {}
    for held_out, (model_path, train_events) in folds.items():
        t0 = time.perf_counter()
        key = (str(model_path), tuple(train_events))
        if key not in calibrations:  # the shipped model calibrates once for both its held-out events
            train_x = np.concatenate([data(e, args.calibration_stride)[1] for e in train_events])
            train_y = np.concatenate([data(e, args.calibration_stride)[2] for e in train_events])
            if held_out in earlier and not args.no_recalibration:
                p = earlier[held_out]
                if p.provenance["calibrated_on"] != list(train_events):
                    raise SystemExit(f"{held_out}: the earlier perturbations were calibrated on "
                                     f"{p.provenance['calibrated_on']}, not {list(train_events)}")
                calibrations[key] = fit_map(p, model_path, train_events, held_out)
        if key not in calibrations:
            calibrations[key] = calibrate(
                centres(model_path, train_x), train_y, n_members=args.members, seed=args.seed,
                newest_scans_mm_h=None if args.no_match_cdf else train_x[:, -1],
                **({"recalibration_thresholds_mm_h": None} if args.no_recalibration else {}),
                **({"gain_grid": tuple(float(g) for g in args.gain_grid.split(","))} if args.gain_grid else {}),
                provenance={"centre_model": model_path.name, "calibrated_on": train_events, "windows": args.windows,
                            "stride": args.calibration_stride, "starts": len(train_x)})[0]
        params = calibrations[key]
        if params.probability_map is not None:
            report.setdefault("probability_maps", {})[held_out] = params.probability_map.as_dict()
        print(f"[{held_out}] calibrated on {train_events} ({params.provenance['starts']} starts, "
              f"{time.perf_counter() - t0:.0f} s, match_cdf {params.match_cdf}): "
              f"displacement_px {params.displacement_px}, log_sigma {params.log_sigma}, gain {params.gain}, "
              f"neighbourhood_px {getattr(params.probability_map, 'neighbourhood_px', None)}, "
              f"steps_weight {getattr(params.probability_map, 'steps_weight', None)}", flush=True)
        if args.write_calibration and args.fold_models is None and held_out == next(iter(folds)):
            CALIBRATION_FILE.write_text(params.to_json())
            print(f"wrote {CALIBRATION_FILE}")
        production = get_ensemble("rainnet-ensemble", n_members=args.members, seed=args.seed,
                                  model_path=model_path, calibration=params)
        times, x, y = data(held_out, args.stride)
        fold = {m: {k: {t: ProbCounts() for t in EVAL_THRESHOLDS_MM_H} for k in range(6)} for m in methods}
        c = centres(model_path, x)
        dam_fold: dict = {}
        range_fold: dict = {}
        for i in range(len(x)):
            t1 = time.perf_counter()
            issued = [times[i][1]]  # each start draws as the cycle would at its issue time
            members = {"production": production.members(x[i:i + 1], issue_times=issued, centre_mm_h=c[i:i + 1])[0]}
            t2 = time.perf_counter()
            members["steps"] = steps.members(x[i:i + 1], issue_times=issued)[0]
            seconds["production"] += t2 - t1
            seconds["steps"] += time.perf_counter() - t2
            # the production map pools this same STEPS ensemble (same seed, members and draws) where it pools one
            pooled_steps = members["steps"] if getattr(production.probability_map, "pools", False) else None
            if pooled_steps is not None:
                seconds["production"] += time.perf_counter() - t2  # it runs that STEPS too
            for m in methods:
                prob = exceedance_probability(members[m], EVAL_THRESHOLDS_MM_H,  # (6, T, H, W)
                                              production.probability_map if m == "production" else None,
                                              pooled_steps if m == "production" else None)
                for k in range(6):
                    for j, thr in enumerate(EVAL_THRESHOLDS_MM_H):
                        counts = ProbCounts.of(prob[k, j], y[i, k], thr)
                        fold[m][k][thr].add(counts)
                        pooled[m][k][thr].add(ProbCounts.from_dict(counts.as_dict()))
            # the dam products as the cycle stores them (pooled with STEPS at the map's weight), and STEPS alone
            steps_weight = dam_pool_weight(production.probability_map)
            dam_rows = {"production": dam_probabilities(
                c[i], members["production"], dams, steps_members_mm_h=members["steps"] if steps_weight else None,
                steps_weight=steps_weight),
                "steps": dam_probabilities(members["steps"].mean(axis=0), members["steps"], dams)}
            for m, rows in dam_rows.items():
                add_dam_counts(dam_fold, m, rows, y[i], dams)
                add_dam_ranges(range_fold, m, rows, y[i], dams)
        report["folds"][held_out] = {
            "centre_model": str(model_path), "calibrated_on": train_events, "starts": len(x),
            "perturbations": {"displacement_px": params.displacement_px, "log_sigma": params.log_sigma,
                              "corr_px": params.corr_px, "gain": params.gain, "match_cdf": params.match_cdf},
            "recalibration": params.provenance.get("recalibration"),
            "map_fitted_on_forecasts_of": params.provenance.get("map_fitted_on_forecasts_of"),
            "brier": {m: {f"{thr:g}": [round(fold[m][k][thr].brier(), 5) for k in range(6)]
                          for thr in EVAL_THRESHOLDS_MM_H} for m in methods},
            # the additive counts, so folds scored in separate runs pool exactly
            "counts": {m: {f"{thr:g}": [fold[m][k][thr].as_dict() for k in range(6)]
                           for thr in EVAL_THRESHOLDS_MM_H} for m in methods},
            "dam_counts": {key: value.as_dict() for key, value in dam_fold.items()},
            "dam_ranges": range_fold}
        for key, value in range_fold.items():
            range_pooled[key] = range_pooled.get(key, []) + value if key.endswith("|pit") else [
                a + b for a, b in zip(range_pooled.get(key, [0, 0, 0]), value)]
        for key, value in dam_fold.items():
            dam_pooled.setdefault(key, ProbCounts()).add(ProbCounts.from_dict(value.as_dict()))
        print(json.dumps({held_out: report["folds"][held_out]["brier"]}), flush=True)

    lead_rows = []
    for k in range(6):
        row = {"lead_minutes": 10 * (k + 1)}
        for thr in EVAL_THRESHOLDS_MM_H:
            for m in methods:
                s = pooled[m][k][thr].summary(5)
                row[f"{m}_brier_{thr:g}"] = s["brier"]
                row[f"{m}_roc_area_{thr:g}"] = s["roc_area"]
                row[f"{m}_reliability_{thr:g}"] = s["brier_reliability"]
            row[f"production_better_{thr:g}"] = row[f"production_brier_{thr:g}"] < row[f"steps_brier_{thr:g}"]
        lead_rows.append(row)
    reliability, totals = {}, {}
    for m in methods:
        for thr in EVAL_THRESHOLDS_MM_H:
            total = ProbCounts()
            for k in range(6):
                total.add(ProbCounts.from_dict(pooled[m][k][thr].as_dict()))
            totals[m, thr] = total
            devs = reliability_deviations(total, args.min_bin_pixels)
            reliability[f"{m}_{thr:g}"] = {"bins": total.reliability_diagram(), "deviations": devs,
                                           "max_abs_deviation": max((abs(d["deviation"]) for d in devs), default=None)}
    n_starts = sum(f["starts"] for f in report["folds"].values())
    report["dams"] = dam_scores(dam_pooled)
    report["dam_ranges"] = {"sides": list(RANGE_SIDES), "counts": range_pooled}
    report.update({"leads": lead_rows, "reliability": reliability, "min_bin_pixels": args.min_bin_pixels,
                   "seconds_per_start": {m: round(s / max(n_starts, 1), 3) for m, s in seconds.items()},
                   "all_better": all(r[f"production_better_{t:g}"] for r in lead_rows for t in EVAL_THRESHOLDS_MM_H)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    print("| lead (min) | Brier 1 mm/h production | STEPS | Brier 5 mm/h production | STEPS |")
    print("|---|---|---|---|---|")
    for r in lead_rows:
        print(f"| {r['lead_minutes']} | {r['production_brier_1']:.4f} | {r['steps_brier_1']:.4f} | "
              f"{r['production_brier_5']:.4f} | {r['steps_brier_5']:.4f} |")
    for key, rel in reliability.items():
        print(key, "max |deviation| over bins with >=", args.min_bin_pixels, "pixels:", rel["max_abs_deviation"])
    print_dam_table(report["dams"])
    print_dam_ranges(range_pooled)
    if len(report["folds"]) > 1:
        report["dam_range_levels"] = range_levels(report["folds"])
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        for lead, r in report["dam_range_levels"].items():
            print(f"+{lead}: {r['n']} wet; below p10 / above p90 as published {r['as_published']}; levels for 10 / 90 % "
                  f"{r['levels']}; chosen on the other folds, below / inside / above {r['nested_coverage']}")
    if args.plot:
        from nowcast_core.plots import plot_reliability

        plot_reliability(totals, args.plot, min_pixels=args.min_bin_pixels,
                         title=f"Held-out events ({protocol}); bins with >= {args.min_bin_pixels} pixels",
                         labels={"production": f"RainNet ensemble, {args.members} members"
                                 + (f", pooled with STEPS-{args.steps_members}" if args.pool_steps else ""),
                                 "steps": f"STEPS, {args.steps_members} members"})
        print(f"wrote {args.plot}")
        panels = (("rate", 1.0, "catchment mean >= 1 mm/h, all leads"),
                  ("rate", 5.0, "catchment mean >= 5 mm/h, all leads"),
                  ("depth_1h", 5.0, "catchment depth over the hour >= 5 mm"))
        dam_totals = {}
        for key, c in dam_pooled.items():
            method, kind, threshold, _ = key.split("|")
            if (kind, float(threshold)) in {(k, t) for k, t, _ in panels}:
                dam_totals.setdefault((method, f"{kind} {threshold}"), ProbCounts()).add(
                    ProbCounts.from_dict(c.as_dict()))
        dam_plot = args.plot.with_name(f"{args.plot.stem}_dams{args.plot.suffix}")
        plot_reliability(dam_totals, dam_plot, thresholds_mm_h=[f"{k} {t:g}" for k, t, _ in panels],
                         panel_titles=[title for *_, title in panels], min_pixels=DAM_MIN_BIN_FORECASTS,
                         title=f"Dam products on held-out events ({protocol}); bins with >= {DAM_MIN_BIN_FORECASTS} "
                         "forecasts (dam x start x lead)",
                         labels={"production": "production (RainNet ensemble pooled with STEPS, as stored)",
                                 "steps": f"STEPS, {args.steps_members} members"})
        print(f"wrote {dam_plot}")


def print_dam_table(scores: dict) -> None:
    """The dam products' Brier score and skill, production against STEPS, per kind, threshold and lead."""
    print("| dam product | threshold | lead | forecasts (events) | Brier production / STEPS | skill over base rate "
          "production / STEPS |")
    print("|---|---|---|---|---|---|")
    def order(key: str):
        _, kind, threshold, lead = key.split("|")
        return kind != "depth_1h", kind, float(threshold), int(lead)

    for key in sorted((k for k in scores if k.startswith("production|")), key=order):
        _, kind, threshold, lead = key.split("|")
        mine, ref = scores[key], scores.get(key.replace("production|", "steps|", 1), {})
        unit = "mm/h" if kind == "rate" else "mm"
        print(f"| {kind} | {threshold} {unit} | +{lead} | {mine['n']} ({mine['events']}) | {mine['brier']:.4f} / "
              f"{ref.get('brier', float('nan')):.4f} | {mine['brier_skill']} / {ref.get('brier_skill')} |")


if __name__ == "__main__":
    main()
