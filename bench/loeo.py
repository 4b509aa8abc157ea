"""Leave-one-event-out test of RainNet on ../shared/data/radar (the model card's test).

For each of the events (folder name without ``-wK``): train a RainNet with the named recipe
on all windows of the *other* events (fixed epochs: the held-out event chooses nothing), then
score it on the held-out event's windows ``-w0`` .. ``-w<windows-1>`` next to the references
on the same starts:

- ``rainnet``: the fold model's forecast with the recipe's probability matching (as the forecaster
  applies it to the shipped model);
- ``rainnet-raw``: the network's output before probability matching, and ``rainnet-pm<w>[-sm<s>]``
  with other matching weights and reference smoothings (the post-processing is chosen on these folds);
  for a direct network (``nowcast_core/rainnet/direct.py``) ``rainnet-raw`` only, and ``rainnet-rate-head``:
  its rate head alone, before the exceedance decisions;
- ``conditioning``: the network's own conditioning input alone (the smoothed, persistence-filled
  extrapolation: the ablation), and ``conditioning-pm``: the same with the recipe's matching;
- ``extrapolation-smoothed``: for a model that learns its own smoothing (recipe
  ``loeo-learned-smoothing``, unsmoothed conditioning), the extrapolation with the fixed smoothing it
  replaces (2 px per lead);
- ``sprog``, ``extrapolation-filled``, ``pysteps``, ``persistence``; ``steps-mean`` on every
  ``--steps-stride``-th start (a 12-member ensemble costs about 2 s a start).

Scores are pooled counts (CSI/POD/FAR, MAE, FSS, area at 5 mm/h) per lead, on all pixels and on
the pixels with an upstream source (where extrapolation can know the rain), per fold and over
all folds. ``check`` tests the issue's criteria per fold and pooled; ``table`` prints Markdown.

    python bench/loeo.py train --out /work/loeo/models [--recipe loeo-fss] [--events knmi ...]
    python bench/loeo.py train --out /work/loeo/nested/bom --exclude bom   # nested: without bom too
    python bench/loeo.py pack --out .devdata/samples.npz --recipe loeo-direct-exceedance
    KERAS_BACKEND=jax python bench/loeo.py train-packed --samples .devdata/samples.npz --out DIR \
        --recipe loeo-direct-exceedance --all      # any Keras backend: a GPU machine without TensorFlow
    python bench/loeo.py score --models /work/loeo/models --out docs/bench/loeo.json [--events E ...]
    python bench/loeo.py decide --models DIR --out DIR2 --recipe loeo-direct-heads-or-rate   # weights kept
    python bench/loeo.py merge docs/bench/loeo.json part1.json part2.json ...
    python bench/loeo.py check docs/bench/loeo.json
    python bench/loeo.py table docs/bench/loeo.json [--scope pooled|EVENT] [--methods ...]
    python bench/loeo.py criteria docs/bench/loeo.json --methods rainnet
    python bench/loeo.py robustness docs/bench/loeo.json --methods rainnet   # does a verdict rest on one event?
    python bench/loeo.py decisions docs/bench/loeo-direct-growth.json   # could any decision beat the input?
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "radar"
#: Post-processing variants scored on every fold: (name, matching weight, reference smoothing px per lead).
VARIANTS = (("rainnet-raw", 0.0, 0.0), ("rainnet-pm0.5", 0.5, 0.0), ("rainnet-pm1", 1.0, 0.0),
            ("rainnet-pm1-sm1", 1.0, 1.0), ("rainnet-pm1-sm2", 1.0, 2.0))
PIXEL_SETS = ("all", "upstream")
#: The fixed smoothing of the conditioning in the shipped recipe (px per lead); a model that learns its own
#: smoothing is also scored against the extrapolation smoothed so (``extrapolation-smoothed``).
FIXED_SMOOTHING_PX_PER_LEAD = 2.0


def events_of(data: Path) -> dict[str, list[Path]]:
    from nowcast_core.rainnet.dataset import event_name

    out: dict[str, list[Path]] = {}
    for folder in sorted(d for d in data.iterdir() if d.is_dir()):
        out.setdefault(event_name(folder), []).append(folder)
    return out


def train_folds(data: Path, out: Path, recipe: str, events: list[str] | None, threads: int,
                exclude: tuple[str, ...] = ()) -> None:
    """One model per held-out event, trained on all windows of the other events except ``exclude`` too
    (nested folds: the models that forecast a fold's calibration events without having seen its
    held-out event)."""
    from nowcast_core.rainnet.recipes import get_recipe
    from nowcast_core.rainnet.train import train_from_folders

    kwargs = get_recipe(recipe)
    by_event = events_of(data)
    unknown = sorted(set(exclude) - set(by_event))
    if unknown:
        raise SystemExit(f"--exclude: unknown events {unknown}; known: {sorted(by_event)}")
    out.mkdir(parents=True, exist_ok=True)
    for held_out in events or sorted(set(by_event) - set(exclude)):
        path = out / f"{held_out}.keras"
        if path.exists():
            print(f"{held_out}: {path} exists, skipped", flush=True)
            continue
        folders = [f for e, fs in sorted(by_event.items()) if e != held_out and e not in exclude for f in fs]
        started = time.perf_counter()
        history = train_from_folders(folders, path, threads=threads, progress=False, **kwargs)
        print(f"{held_out}: trained on {history['n_train_samples']} samples of {history['events']} "
              f"in {time.perf_counter() - started:.0f} s -> {path}", flush=True)


#: Quantisation step of the packed conditioning on ln(R + 0.01) (uint8 from ln(0.01) up: 0 .. 5.6, 270 mm/h).
PACK_STEP = 0.04
#: Quantisation step of the packed growth tendency (int8: -1.27 .. 1.27 on ln(1 + R) per 10 minutes).
GROWTH_PACK_STEP = 0.01


def pack(data: Path, out: Path, recipe: str) -> None:
    """All training samples of the recipe (every window of every event, the recipe's sample cap and
    conditioning smoothing) in one compressed file, for training where pysteps is not installed
    (``train-packed``): scans as the feed's uint8 pixels (exact), the conditioning quantised by
    :data:`PACK_STEP` on ln(R + 0.01), and for a recipe with ``growth_input`` the growth tendency
    quantised by :data:`GROWTH_PACK_STEP`."""
    from nowcast_core.contract import N_INPUTS, N_LEADS
    from nowcast_core.io import read_folder
    from nowcast_core.rainnet.dataset import event_name, samples_from_frames
    from nowcast_core.rainnet.preprocess import NO_RAIN_LOG
    from nowcast_core.rainnet.recipes import get_recipe

    settings = get_recipe(recipe)
    cap = settings.get("max_samples_per_folder")
    growth_input = bool(settings.get("growth_input"))
    pixels, nodata, index, conditioning, growth, events = [], [], [], [], [], []
    offset = 0
    for folders in events_of(data).values():
        for folder in folders:
            frames = read_folder(folder)
            samples = samples_from_frames(frames, event_name(folder), N_LEADS, True,
                                          settings.get("smoothing_px_per_lead", 0.0), cap, growth_input)
            position = {f.scan_time.isoformat(): i for i, f in enumerate(frames)}
            starts = [position[t] - (N_INPUTS - 1) for t in samples.issue_times]  # each sample's first scan
            pixels.append(np.stack([f.frame for f in frames]))
            nodata.append(np.stack([np.zeros(f.frame.shape, bool) if f.nodata is None else f.nodata for f in frames]))
            index.append(offset + np.asarray(starts, int)[:, None] + np.arange(N_INPUTS + N_LEADS))
            q = np.round((samples.conditioning[..., :N_LEADS] - NO_RAIN_LOG) / PACK_STEP)
            conditioning.append(np.clip(q, 0, 255).astype(np.uint8))
            if growth_input:
                g = np.round(samples.conditioning[..., N_LEADS:] / GROWTH_PACK_STEP)
                growth.append(np.clip(g, -127, 127).astype(np.int8))
            events += samples.events
            offset += len(frames)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, pixels=np.concatenate(pixels), nodata=np.concatenate(nodata),
                        index=np.concatenate(index), conditioning=np.concatenate(conditioning),
                        events=np.asarray(events), recipe=np.asarray(recipe),
                        **({"growth": np.concatenate(growth)} if growth_input else {}))
    print(f"wrote {out}: {len(events)} samples of {len(set(events))} events, {out.stat().st_size / 1e6:.1f} MB")


def unpack(path: Path):
    """The :class:`~nowcast_core.rainnet.dataset.Samples` of a :func:`pack` file (NumPy only, no pysteps)."""
    from nowcast_core.rainnet.dataset import Samples
    from nowcast_core.rainnet.preprocess import NO_RAIN_LOG, pixel_to_log

    with np.load(path, allow_pickle=False) as f:
        logs = pixel_to_log(f["pixels"], f["nodata"])
        frames = np.moveaxis(logs[f["index"]], 1, -1)
        conditioning = (f["conditioning"].astype(np.float32) * PACK_STEP + NO_RAIN_LOG).astype(np.float32)
        if "growth" in f.files:  # a growth_input recipe: the growth after the extrapolation
            conditioning = np.concatenate([conditioning, f["growth"].astype(np.float32) * GROWTH_PACK_STEP], axis=-1)
        events = [str(e) for e in f["events"]]
    return Samples(np.ascontiguousarray(frames, dtype=np.float32), conditioning, events, [""] * len(events))


def train_packed(samples_path: Path, out: Path, recipe: str, events: list[str] | None, with_all: bool,
                 epochs: int | None = None) -> None:
    """Fold models (and with ``with_all`` the model of all events, ``all.keras``) of a direct recipe from a
    :func:`pack` file, on whatever Keras backend is configured; timings and training histories in
    ``training.json`` (``split-reports`` writes them as the models' report files)."""
    import os

    import keras

    from nowcast_core.rainnet.config import TrainConfig, save_model
    from nowcast_core.rainnet.direct import train_direct
    from nowcast_core.rainnet.recipes import get_recipe

    settings = get_recipe(recipe)
    if not settings.get("direct"):
        raise SystemExit(f"recipe {recipe} is not a direct recipe: train it with `train`")
    fields = set(TrainConfig.__dataclass_fields__)
    if epochs is not None:
        settings["epochs"] = epochs
    config = TrainConfig(**{k: v for k, v in settings.items() if k in fields}, progress=True)
    samples = unpack(samples_path)
    names = sorted(set(samples.events))
    out.mkdir(parents=True, exist_ok=True)
    timings = {"backend": keras.backend.backend(), "devices": _devices(), "recipe": recipe, "folds": {},
               "n_samples": len(samples), "host_cpus": os.cpu_count()}
    for held_out in (events or names) + (["all"] if with_all else []):
        keep = [i for i, e in enumerate(samples.events) if e != held_out]
        started = time.perf_counter()
        model, history = train_direct(samples.subset(keep), None, config)
        path = save_model(model, out / f"{held_out}.keras", config.model_config(history["decision_probability"]))
        seconds = time.perf_counter() - started
        history.update(config=asdict(config), training_seconds=round(seconds, 1), backend=timings["backend"])
        timings["folds"][held_out] = {"seconds": round(seconds, 1), "n_train_samples": len(keep),
                                      "epoch_seconds": [e["seconds"] for e in history["epochs"]],
                                      "forecast_seconds_per_start": _forecast_seconds(model, samples), "history": history}
        print(f"{held_out}: {len(keep)} samples, {seconds:.0f} s -> {path}", flush=True)
        (out / "training.json").write_text(json.dumps(timings, indent=1, default=float))


def decide(data: Path, models: Path, out: Path, recipe: str, events: list[str] | None) -> None:
    """Fold models of a direct ``recipe`` that differs from the one they were trained with only in its
    decision rule: each model's weights kept, its decision probabilities chosen again under the recipe's
    rule on the samples it was trained on (``all.keras``: every event). Training is deterministic, so
    ``train`` with the recipe gives these weights again, at 10 minutes a fold instead of 1."""
    from dataclasses import replace

    from nowcast_core.contract import N_LEADS
    from nowcast_core.io.files import file_sha256
    from nowcast_core.rainnet import model_version
    from nowcast_core.rainnet.config import load_model, save_model
    from nowcast_core.rainnet.dataset import samples_from_folders
    from nowcast_core.rainnet.direct import choose_decisions
    from nowcast_core.rainnet.recipes import get_recipe

    settings = get_recipe(recipe)
    rule = settings.get("decision_rule", "heads")
    by_event = events_of(data)
    out.mkdir(parents=True, exist_ok=True)
    names = events or sorted(p.stem for p in models.glob("*.keras"))
    for held_out in names:
        model, config = load_model(models / f"{held_out}.keras")
        same = (config.direct, config.growth_input, tuple(config.exceedance_thresholds_mm_h),
                config.smoothing_px_per_lead, config.members)
        wanted = (True, bool(settings.get("growth_input")), tuple(settings.get("exceedance_thresholds_mm_h", ())),
                  settings.get("smoothing_px_per_lead", 0.0), settings.get("members", 1))
        if same != wanted or any(config.fine_tuning.get(k, v) != v for k, v in settings.items()):
            raise SystemExit(f"{held_out}: the model was not trained with recipe {recipe}'s settings")
        folders = [f for e, fs in sorted(by_event.items()) if e != held_out for f in fs]
        started = time.perf_counter()
        samples = samples_from_folders(folders, n_leads=N_LEADS, conditioning=True,
                                       smoothing_px_per_lead=config.smoothing_px_per_lead,
                                       max_samples_per_folder=settings.get("max_samples_per_folder"),
                                       growth=config.growth_input)
        decision = choose_decisions(model, samples, config.exceedance_thresholds_mm_h, rule)
        path = save_model(model, out / f"{held_out}.keras",
                          replace(config, decision_rule=rule, decision_probability=decision))
        report = models / f"{held_out}.report.json"
        if report.exists():
            history = json.loads(report.read_text())
            history.update(decision_probability=[list(r) for r in decision], decision_rule=rule,
                           decided_from=model_version(file_sha256(models / f"{held_out}.keras")),
                           model_bytes=path.stat().st_size)
            if isinstance(history.get("config"), dict):
                history["config"]["decision_rule"] = rule
            (out / report.name).write_text(json.dumps(history, indent=1))
        print(f"{held_out}: {len(samples)} samples, {rule} decisions {decision} "
              f"({time.perf_counter() - started:.0f} s) -> {path}", flush=True)


def cores(result: dict, models: Path | None, out: Path | None) -> tuple:
    """Core probabilities (:func:`nowcast_core.rainnet.direct.choose_core_probability`) from the held-out
    core counts of scored fold models: for each fold, chosen on the *other* folds' held-out events only (so
    the fold's score stays out of sample), and for the model of every event, on all five. Prints both;
    with ``models`` and ``out``, writes each fold model with its own choice into ``out`` (weights and
    decisions kept). Returns the choice of all folds (the recipe's)."""
    from dataclasses import replace

    from nowcast_core.rainnet.config import load_model, save_model
    from nowcast_core.rainnet.direct import (
        CORE_CHOICES,
        choose_core_probability,
        decision_csi,
    )

    counts = {e: np.asarray(f["held_out_core_counts"]) for e, f in result["folds"].items()
              if "held_out_core_counts" in f}
    if len(counts) < 2:
        raise SystemExit("need the held-out core counts of two folds or more: score direct fold models with this version")
    thresholds = result["folds"][next(iter(counts))]["config"]["exceedance_thresholds_mm_h"]
    total = sum(counts.values())
    print("CSI averaged over the leads, pooled over every held-out event, per core probability "
          f"({', '.join('none' if c is None else f'{c:g}' for c in CORE_CHOICES)}):")
    for i, t in enumerate(thresholds):
        print(f"  {t:g} mm/h: " + " / ".join(f"{v:.4f}" for v in decision_csi(total[i]).mean(axis=0)))
    fmt = lambda choice: "(" + ", ".join("none" if c is None else f"{c:g}" for c in choice) + ")"  # noqa: E731
    chosen = {}
    for event in counts:
        chosen[event] = choose_core_probability(sum(c for e, c in counts.items() if e != event))
        print(f"{event}: {fmt(chosen[event])} at {', '.join(f'{t:g}' for t in thresholds)} mm/h, "
              "chosen on the other folds' held-out events")
    every = choose_core_probability(total)
    print(f"all folds: {fmt(every)} (the model of every event)")
    if models is not None and out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for event, choice in chosen.items():
            model, config = load_model(models / f"{event}.keras")
            path = save_model(model, out / f"{event}.keras", replace(config, core_probability=choice))
            report = models / f"{event}.report.json"
            if report.exists():
                (out / report.name).write_text(report.read_text())
            print(f"{event}: -> {path}")
    return every


def split_reports(models: Path) -> None:
    """``<fold>.report.json`` beside each model, from the ``training.json`` of ``train-packed``."""
    training = json.loads((models / "training.json").read_text())
    for fold, entry in training["folds"].items():
        report = {**entry["history"], "training_seconds": entry["seconds"], "devices": training["devices"]}
        (models / f"{fold}.report.json").write_text(json.dumps(report, indent=1))
    print(f"wrote the reports of {sorted(training['folds'])} in {models}")


def _forecast_seconds(model, samples, n: int = 64) -> float:
    """Seconds per forecast start of the network alone (both heads, batches of 16), after a warm-up call."""
    from nowcast_core.contract import N_INPUTS
    from nowcast_core.rainnet.direct import direct_outputs
    from nowcast_core.rainnet.preprocess import log_to_rain_rate

    inputs = log_to_rain_rate(np.moveaxis(samples.frames[:n, ..., :N_INPUTS], -1, 1))
    direct_outputs(model, inputs[:16], samples.conditioning[:16])
    started = time.perf_counter()
    direct_outputs(model, inputs, samples.conditioning[:n])
    return round((time.perf_counter() - started) / len(inputs), 5)


def _devices() -> list[str]:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return [str(d) for d in jax.devices()]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices()]
    return []


class Pool:
    """Pooled counts per (method, pixel set, lead)."""

    def __init__(self):
        self.counts: dict = {}
        self.structure: dict = {}

    def add(self, method: str, forecast: np.ndarray, observed: np.ndarray, upstream: np.ndarray) -> None:
        from nowcast_core.contract import LEAD_MINUTES
        from nowcast_core.verification.scores import LeadCounts, counts_per_lead
        from nowcast_core.verification.structure import (
            StructureSums,
            structure_per_lead,
        )

        for pixels in PIXEL_SETS:
            obs = observed if pixels == "all" else np.where(upstream, observed, np.nan)
            for lead, c in counts_per_lead(forecast, obs, LEAD_MINUTES).items():
                self.counts.setdefault((method, pixels, lead), LeadCounts()).add(c)
            if pixels != "all":
                continue  # structure scores (FSS, area) on all pixels only: they cost the most
            for lead, s in structure_per_lead(forecast, obs, LEAD_MINUTES).items():
                self.structure.setdefault((method, pixels, lead), StructureSums()).add(s)

    def merge(self, other: Pool) -> None:
        from nowcast_core.verification.scores import LeadCounts
        from nowcast_core.verification.structure import StructureSums

        for key, c in other.counts.items():
            self.counts.setdefault(key, LeadCounts()).add(c)
        for key, s in other.structure.items():
            self.structure.setdefault(key, StructureSums()).add(s)

    def to_json(self) -> list[dict]:
        """The additive counts, so folds pool exactly later (keys as strings for JSON)."""
        out = []
        for (m, p, lead), c in self.counts.items():
            entry = {"method": m, "pixels": p, "lead_minutes": lead,
                     "counts": {**c.__dict__, "contingency": {f"{t:g}": v for t, v in c.contingency.items()}}}
            s = self.structure.get((m, p, lead))
            if s is not None:
                entry["structure"] = {"n_forecasts": s.n_forecasts, "area_forecast_px": s.area_forecast_px,
                                      "area_observed_px": s.area_observed_px,
                                      "fss_sums": {f"{t:g}|{z}": v for (t, z), v in s.fss_sums.items()}}
            out.append(entry)
        return out

    @classmethod
    def from_json(cls, entries: list[dict]) -> Pool:
        from nowcast_core.verification.scores import LeadCounts
        from nowcast_core.verification.structure import StructureSums

        pool = cls()
        for e in entries:
            key = (e["method"], e["pixels"], e["lead_minutes"])
            c = dict(e["counts"])
            c["contingency"] = {float(t): v for t, v in c["contingency"].items()}
            pool.counts[key] = LeadCounts(**c)
            if "structure" in e:
                s = dict(e["structure"])
                s["fss_sums"] = {(float(k.split("|")[0]), int(k.split("|")[1])): v for k, v in s["fss_sums"].items()}
                pool.structure[key] = StructureSums(**s)
        return pool

    def rows(self) -> list[dict]:
        return [{"method": m, "pixels": p, "lead_minutes": lead, **c.summary(digits=4),
                 **(self.structure[m, p, lead].summary(digits=4) if (m, p, lead) in self.structure else {})}
                for (m, p, lead), c in sorted(self.counts.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2]))]


def score_event(event: str, model_path: Path, folders: list[Path], steps_stride: int,
                matching: tuple[float, float], max_starts: int) -> tuple[Pool, int, dict]:
    """The pooled counts of every method on the held-out event's starts, the number of starts, and for a
    direct network its counts there (empty otherwise): ``decisions``, its exceedance heads' for every grid
    probability (:func:`nowcast_core.rainnet.direct.decision_counts`; a diagnostic, nothing is chosen with
    it), and ``cores``, its decisions' with every candidate core probability
    (:func:`nowcast_core.rainnet.direct.core_counts`; :func:`cores` chooses with them for the other folds)."""
    from nowcast_core import extrapolation
    from nowcast_core.contract import N_LEADS
    from nowcast_core.forecasters import get_method
    from nowcast_core.forecasters.rainnet import network_forecast
    from nowcast_core.io.sequences import folder_sequences
    from nowcast_core.postprocessing import match_intensity
    from nowcast_core.rainnet.config import load_model

    model, config = load_model(model_path)
    references = {name: get_method(name) for name in ("sprog", "extrapolation-filled", "pysteps", "persistence")}
    steps = get_method("steps-mean", n_members=12, seed=42)
    pool, n_starts, held_out = Pool(), 0, {}
    for folder in folders:
        _, inputs, observed = folder_sequences(folder, N_LEADS)
        if not len(inputs):
            continue
        if len(inputs) > max_starts:  # evenly spread over the folder's span
            pick = np.unique(np.linspace(0, len(inputs) - 1, max_starts).round().astype(int))
            inputs, observed = inputs[pick], observed[pick]
        n_starts += len(inputs)
        upstream = np.stack([extrapolation.upstream_source(seq, N_LEADS) for seq in inputs])
        newest = inputs[:, -1]
        conditioning, growth, sharp = extrapolation.direct_inputs(
            inputs, N_LEADS, config.smoothing_px_per_lead, config.direct and config.growth_input, config.direct)
        if config.direct:  # its forecast, and its rate head alone, before the exceedance decisions
            from nowcast_core.rainnet.direct import (
                categorical_rates,
                conditioning_channels,
                core_counts,
                decision_counts,
                direct_outputs,
            )

            rate, prob = direct_outputs(model, inputs, conditioning_channels(conditioning, growth))
            pool.add("rainnet-rate-head", rate, observed, upstream)
            thresholds, decision, rule = config.exceedance_thresholds_mm_h, config.decision_probability, config.decision_rule
            for key, counts in (("decisions", decision_counts(prob, observed, thresholds, rate_mm_h=rate, rule=rule)),
                                ("cores", core_counts(rate, prob, sharp, observed, thresholds, decision, rule))):
                held_out[key] = held_out[key] + counts if key in held_out else counts
            raw = categorical_rates(rate, prob, thresholds, decision, rule, sharp, config.core_probability)
        else:
            raw = network_forecast(model, config, inputs, extrapolation_mm_h=conditioning)
        raw = np.nan_to_num(raw, nan=0.0).clip(0.0)
        for name, weight, smoothing in VARIANTS[:1] if config.direct else VARIANTS:
            pool.add(name, match_intensity(raw, newest, weight, smoothing), observed, upstream)
        pool.add("rainnet", match_intensity(raw, newest, *matching), observed, upstream)
        pool.add("conditioning", conditioning, observed, upstream)
        pool.add("conditioning-pm", match_intensity(conditioning, newest, *matching), observed, upstream)
        if config.smoothing_px_per_lead != FIXED_SMOOTHING_PX_PER_LEAD:  # the fixed smoothing the network replaces
            pool.add("extrapolation-smoothed", extrapolation.extrapolate_batch(
                inputs, N_LEADS, FIXED_SMOOTHING_PX_PER_LEAD), observed, upstream)
        for name, forecaster in references.items():
            pool.add(name, forecaster.forecast(inputs), observed, upstream)
        if steps_stride:
            pick = np.arange(0, len(inputs), steps_stride)
            pool.add("steps-mean", steps.forecast(inputs[pick]), observed[pick], upstream[pick])
        print(f"  {folder.name}: {len(inputs)} starts", flush=True)
    return pool, n_starts, held_out


def score(data: Path, models: Path, out: Path, windows: int, steps_stride: int, events: list[str] | None,
          recipe: str, max_starts: int) -> None:
    from nowcast_core.io.files import file_sha256
    from nowcast_core.rainnet import model_version
    from nowcast_core.rainnet.config import read_config
    from nowcast_core.rainnet.recipes import get_recipe

    settings = get_recipe(recipe)
    matching = (settings.get("probability_matching", 0.0), settings.get("matching_smoothing_px_per_lead", 0.0))
    by_event = events_of(data)
    result = json.loads(out.read_text()) if out.exists() else {"folds": {}}
    if result.get("matching", list(matching)) != list(matching):
        result["folds"] = {}  # the production rows were scored with another matching: score again
    result.update(windows=windows, steps_stride=steps_stride, max_starts_per_folder=max_starts, data=str(data),
                  recipe=recipe, recipe_settings=settings, matching=list(matching))
    for event in events or sorted(by_event):
        model_path = models / f"{event}.keras"
        if not model_path.exists():
            print(f"{event}: no fold model {model_path}; skipped", file=sys.stderr)
            continue
        folders = [f for f in by_event[event] if int(f.name.rsplit("-w", 1)[1]) < windows]
        started = time.perf_counter()
        print(f"{event}: scoring {model_path.name} on {len(folders)} windows", flush=True)
        pool, n_starts, held_out = score_event(event, model_path, folders, steps_stride, matching, max_starts)
        report_path = model_path.with_suffix(".report.json")
        trained = json.loads(report_path.read_text()) if report_path.exists() else {}
        result["folds"][event] = {
            "model_version": model_version(file_sha256(model_path)),
            "config": read_config(model_path).__dict__,
            "train_events": trained.get("train_events"), "n_train_samples": trained.get("n_train_samples"),
            "training_seconds": trained.get("training_seconds"), "n_starts": n_starts,
            "seconds": round(time.perf_counter() - started, 1),
            "rows": pool.rows(), "counts": pool.to_json(),
        }
        for key, counts in held_out.items():
            result["folds"][event][f"held_out_{key[:-1]}_counts"] = counts.tolist()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
    result["pooled"] = pooled_rows(result)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


def merge(out: Path, parts: list[Path]) -> None:
    """One result with the folds of ``parts`` (scored separately, e.g. in parallel) and their pool."""
    result = None
    for part in parts:
        data = json.loads(part.read_text())
        if result is None:
            result = data
        else:
            if data["matching"] != result["matching"]:
                raise SystemExit(f"{part} was scored with matching {data['matching']}, not {result['matching']}")
            result["folds"].update(data["folds"])
    result["pooled"] = pooled_rows(result)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}: folds {sorted(result['folds'])}")


def pooled_rows(result: dict) -> list[dict]:
    """Scores over all folds, from the folds' additive counts (exact pooling)."""
    pooled = Pool()
    for fold in result["folds"].values():
        pooled.merge(Pool.from_json(fold["counts"]))
    return pooled.rows()


#: The issue's criteria: (name, score key, comparison, reference method or fixed value).
CRITERIA = (
    ("CSI 1 >= S-PROG", "csi_1", ">=", "sprog"),
    ("CSI 5 >= S-PROG", "csi_5", ">=", "sprog"),
    ("MAE <= S-PROG", "mae_mm_h", "<=", "sprog"),
    ("area 5 >= half observed", "area_ratio_5", ">=", 0.5),
    ("CSI 1 > conditioning", "csi_1", ">", "conditioning"),
    ("CSI 5 > conditioning", "csi_5", ">", "conditioning"),
)


def _by_key(rows: list[dict], pixels: str) -> dict:
    return {(r["method"], r["lead_minutes"]): r for r in rows if r["pixels"] == pixels}


def check(result: dict, method: str = "rainnet", pixels: str = "all") -> dict:
    """Per criterion: the (fold, lead) pairs where ``method`` fails it (fold ``pooled`` too)."""
    scopes = {**{e: f["rows"] for e, f in result["folds"].items()}, "pooled": result["pooled"]}
    failures = {name: [] for name, *_ in CRITERIA}
    for scope, rows in scopes.items():
        table = _by_key(rows, pixels)
        for lead in sorted({lead for m, lead in table if m == method}):
            mine = table[method, lead]
            for name, key, op, ref in CRITERIA:
                if key not in mine:  # not measured on this pixel set (the area: all pixels only)
                    continue
                a = mine[key]
                b = ref if isinstance(ref, float) else table.get((ref, lead), {}).get(key)
                if a is None or b is None:
                    ok = b is None and a is not None  # no reference value: nothing to lose to
                else:
                    ok = a >= b if op == ">=" else a <= b if op == "<=" else a > b
                if not ok:
                    failures[name].append((scope, lead, a, b))
    return failures


def print_check(result: dict, methods: list[str], pixels: str) -> None:
    for method in methods:
        if not any(r["method"] == method and r["pixels"] == pixels for r in result["pooled"]):
            print(f"## {method} ({pixels} pixels): not scored in this result, nothing checked")
            continue
        failures = check(result, method, pixels)
        n_fail = sum(len(v) for v in failures.values())
        print(f"## {method} ({pixels} pixels): {n_fail} failed (scope, lead) checks")
        for name, fails in failures.items():
            where = ", ".join(f"{s} +{lead} ({a} vs {b})" for s, lead, a, b in fails) or "passes everywhere"
            print(f"- {name}: {where}")


def print_check_table(result: dict, method: str, pixels: str) -> None:
    """One Markdown row per fold (and pooled): per criterion, the leads where ``method`` fails it."""
    failures = check(result, method, pixels)
    scopes = list(result["folds"]) + ["pooled"]
    measured = {key for row in _by_key(result["pooled"], pixels).values() for key in row}
    print(f"| held-out event ({pixels} pixels) | " + " | ".join(name for name, *_ in CRITERIA) + " |")
    print("|---|" + "---|" * len(CRITERIA))
    for scope in scopes:
        cells = []
        for name, key, *_ in CRITERIA:
            leads = [f"+{lead}" for s, lead, _, _ in failures[name] if s == scope]
            cells.append("not measured" if key not in measured else
                         "pass" if not leads else "**fails " + ", ".join(leads) + "**")
        print(f"| {scope} | " + " | ".join(cells) + " |")


def robustness(result: dict, method: str = "rainnet", pixels: str = "all", n_boot: int = 2000,
               seed: int = 0) -> list[dict]:
    """How much each pooled criterion's verdict rests on which events were held out: per criterion and
    lead, the pooled margin (``method`` minus the reference; for MAE the reference minus ``method``, so a
    pass is always > 0, or >= 0 where the criterion allows a tie), its smallest value with any one event
    left out of the pool, and over ``n_boot`` resamples of the held-out events with replacement the
    5th .. 95th percentile of the margin and the share of resamples in which the criterion holds."""
    folds = sorted(result["folds"])
    pools = {e: Pool.from_json(result["folds"][e]["counts"]) for e in folds}
    pooled: dict[tuple, dict] = {}  # a resample is a multiset of events: 126 of them for five, not n_boot

    def scores(events) -> dict:
        key = tuple(sorted(events))
        if key not in pooled:
            pool = Pool()
            for e in key:
                pool.merge(pools[e])
            pooled[key] = _by_key(pool.rows(), pixels)
        return pooled[key]

    def margin(table, key, op, ref, lead):
        mine = table.get((method, lead), {}).get(key)
        other = ref if isinstance(ref, float) else table.get((ref, lead), {}).get(key)
        if mine is None or other is None:
            return None
        return (other - mine) if op == "<=" else (mine - other)

    full = scores(folds)
    rng = np.random.default_rng(seed)
    boots = [scores([folds[i] for i in rng.integers(len(folds), size=len(folds))]) for _ in range(n_boot)]
    jack = [scores([e for e in folds if e != out]) for out in folds]
    rows = []
    for name, key, op, ref in CRITERIA:
        for lead in sorted({lead for m, lead in full if m == method}):
            m = margin(full, key, op, ref, lead)
            if m is None:
                continue
            holds = (lambda v: v >= 0) if op in (">=", "<=") else (lambda v: v > 0)
            b = np.array([v for v in (margin(t, key, op, ref, lead) for t in boots) if v is not None])
            j = [margin(t, key, op, ref, lead) for t in jack]
            rows.append({"criterion": name, "lead_minutes": lead, "margin": m,
                         "min_margin_one_event_out": min((v for v in j if v is not None), default=float("nan")),
                         "margin_p05": float(np.percentile(b, 5)), "margin_p95": float(np.percentile(b, 95)),
                         "share_holding": float(np.mean([holds(v) for v in b]))})
    return rows


def print_robustness(result: dict, method: str, pixels: str) -> None:
    rows = robustness(result, method, pixels)
    print(f"{method} ({pixels} pixels): pooled margin over the criterion's reference (> 0: passes), its smallest "
          "value with one event left out, its 5th .. 95th percentile over resamples of the held-out events, "
          "and the share of resamples in which the criterion holds\n")
    print("| criterion | lead | margin | one event out, smallest | resampled 5 .. 95 % | holds in |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['criterion']} | +{r['lead_minutes']} | {r['margin']:+.4f} | {r['min_margin_one_event_out']:+.4f} | "
              f"{r['margin_p05']:+.4f} .. {r['margin_p95']:+.4f} | {100 * r['share_holding']:.0f} % |")


def print_table(result: dict, methods: list[str], pixels: str, scope: str) -> None:
    rows = result["pooled"] if scope == "pooled" else result["folds"][scope]["rows"]
    print("| method | lead | CSI 1 | CSI 5 | CSI 10 | MAE mm/h | FSS 5 mm/h 5 km | area ratio 5 mm/h | forecasts |")
    print("|---|---|---|---|---|---|---|---|---|")
    table = _by_key(rows, pixels)
    for method in methods:
        for lead in (10, 20, 30, 40, 50, 60):
            r = table.get((method, lead))
            if r:
                print(f"| {method} | +{lead} | {r['csi_1']} | {r['csi_5']} | {r['csi_10']} | {r['mae_mm_h']} | "
                      f"{r.get('fss_5_5km', '-')} | {r.get('area_ratio_5', '-')} | {r['n_forecasts']} |")


def print_decisions(result: dict) -> None:
    """Per threshold, fold and lead: the CSI of the conditioning input; of the direct network at the decision
    probability its training chose; at the one best on the *other* folds' held-out events (out-of-sample
    behaviour of models that saw this event in training: a near-nested choice); and the best it could have
    had on the held-out event with any grid probability (a diagnostic: could a decision rule beat the input
    at all?). The last line per threshold counts the (fold, lead) pairs where each choice beats the input."""
    from nowcast_core.rainnet.direct import DECISION_GRID, decision_csi

    folds = {e: f for e, f in result["folds"].items() if "held_out_decision_counts" in f}
    if not folds:
        raise SystemExit("no held-out decision counts in this result: score a direct network with this version")
    for i, threshold in enumerate(folds[next(iter(folds))]["config"]["exceedance_thresholds_mm_h"]):
        print(f"\nCSI {threshold:g} mm/h: conditioning / network at its decision probability (p) / at the "
              "other folds' best (p) / best on the held-out event (p)\n")
        print("| held-out event | " + " | ".join(f"+{10 * (k + 1)}" for k in range(6)) + " |")
        print("|---|" + "---|" * 6)
        counts = {e: np.asarray(f["held_out_decision_counts"], float)[i] for e, f in folds.items()}  # (L, grid, 3)
        wins = np.zeros(3, int)
        for event, fold in folds.items():
            csi = decision_csi(counts[event])
            others = decision_csi(sum((c for e, c in counts.items() if e != event), np.zeros_like(counts[event])))
            conditioning = _by_key(fold["rows"], "all")
            cells = []
            for k in range(csi.shape[0]):
                chosen = fold["config"]["decision_probability"][i][k]
                picks = (int(np.argmin(np.abs(np.asarray(DECISION_GRID) - chosen))), int(np.argmax(others[k])),
                         int(np.argmax(csi[k])))
                base = conditioning[("conditioning", 10 * (k + 1))][f"csi_{threshold:g}"]
                wins += [csi[k, g] > base and (j != 1 or len(folds) > 1) for j, g in enumerate(picks)]
                cells.append(f"{base:.3f} / " + " / ".join(
                    "-" if j == 1 and len(folds) == 1 else f"{csi[k, g]:.3f} ({DECISION_GRID[g]:g})"
                    for j, g in enumerate(picks)))
            print(f"| {event} | " + " | ".join(cells) + " |")
        print(f"\nabove the input, of {len(folds) * 6}: its decision {wins[0]}, the other folds' {wins[1]}, "
              f"the held-out event's best {wins[2]}")




def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", type=Path, default=DEFAULT_DATA)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--recipe", default="loeo-fss")
    t.add_argument("--events", nargs="*")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--exclude", nargs="*", default=(), help="events left out of every model's training too")
    s = sub.add_parser("score")
    s.add_argument("--data", type=Path, default=DEFAULT_DATA)
    s.add_argument("--models", type=Path, required=True)
    s.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "loeo.json")
    s.add_argument("--windows", type=int, default=4)
    s.add_argument("--steps-stride", type=int, default=4)
    s.add_argument("--events", nargs="*")
    s.add_argument("--recipe", default="loeo-fss", help="its matching settings make the production rows")
    s.add_argument("--max-starts-per-folder", type=int, default=40,
                   help="at most this many forecast starts per window, evenly spread (bom has 135)")
    k = sub.add_parser("pack", help="the recipe's training samples in one file, for train-packed")
    k.add_argument("--data", type=Path, default=DEFAULT_DATA)
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--recipe", default="loeo-direct-exceedance")
    tp = sub.add_parser("train-packed", help="fold models of a direct recipe from a pack file, any Keras backend")
    tp.add_argument("--samples", type=Path, required=True)
    tp.add_argument("--out", type=Path, required=True)
    tp.add_argument("--recipe", default="loeo-direct-exceedance")
    tp.add_argument("--events", nargs="*")
    tp.add_argument("--all", action="store_true", help="also the model of all events (all.keras)")
    tp.add_argument("--epochs", type=int, help="instead of the recipe's (a dry run)")
    sr = sub.add_parser("split-reports", help="the models' report files from train-packed's training.json")
    sr.add_argument("models", type=Path)
    g = sub.add_parser("merge", help="join the folds of several score outputs into one")
    g.add_argument("out", type=Path)
    g.add_argument("parts", nargs="+", type=Path)
    dc = sub.add_parser("decide", help="fold models' decisions chosen again under a recipe's decision rule, "
                                         "weights kept")
    dc.add_argument("--data", type=Path, default=DEFAULT_DATA)
    dc.add_argument("--models", type=Path, required=True)
    dc.add_argument("--out", type=Path, required=True)
    dc.add_argument("--recipe", required=True)
    dc.add_argument("--events", nargs="*", help="fold names (all: the model of every event)")
    co = sub.add_parser("cores", help="core probabilities chosen on held-out events: per fold on the other folds', "
                                        "and on all folds for the model of every event")
    co.add_argument("result", type=Path)
    co.add_argument("--models", type=Path, help="the fold models scored in RESULT")
    co.add_argument("--out", type=Path, help="where to write them with their own fold's choice")
    d = sub.add_parser("decisions", help="a direct network's decision probabilities against the best on "
                                          "each held-out event (a diagnostic)")
    d.add_argument("result", type=Path)
    for name in ("check", "table", "criteria", "robustness"):
        c = sub.add_parser(name)
        c.add_argument("result", type=Path)
        c.add_argument("--methods", default=",".join(["rainnet"] + [v[0] for v in VARIANTS]))
        c.add_argument("--pixels", default="all", choices=PIXEL_SETS)
        c.add_argument("--scope", default="pooled")
    args = p.parse_args(argv)
    for name in ("result", "models", "data", "samples"):
        path = getattr(args, name, None)
        if path is not None and not path.exists():
            p.error(f"{path} does not exist")
    if args.command == "train":
        train_folds(args.data, args.out, args.recipe, args.events, args.threads, tuple(args.exclude))
    elif args.command == "score":
        score(args.data, args.models, args.out, args.windows, args.steps_stride, args.events, args.recipe,
              args.max_starts_per_folder)
    elif args.command == "pack":
        pack(args.data, args.out, args.recipe)
    elif args.command == "train-packed":
        train_packed(args.samples, args.out, args.recipe, args.events, args.all, args.epochs)
    elif args.command == "split-reports":
        split_reports(args.models)
    elif args.command == "decide":
        decide(args.data, args.models, args.out, args.recipe, args.events)
    elif args.command == "merge":
        merge(args.out, args.parts)
    elif args.command == "check":
        print_check(json.loads(args.result.read_text()), args.methods.split(","), args.pixels)
    elif args.command == "criteria":
        for method in args.methods.split(","):
            print(f"\n{method}:\n")
            print_check_table(json.loads(args.result.read_text()), method, args.pixels)
    elif args.command == "robustness":
        for method in args.methods.split(","):
            print_robustness(json.loads(args.result.read_text()), method, args.pixels)
    elif args.command == "cores":
        cores(json.loads(args.result.read_text()), args.models, args.out)
    elif args.command == "decisions":
        print_decisions(json.loads(args.result.read_text()))
    else:
        print_table(json.loads(args.result.read_text()), args.methods.split(","), args.pixels, args.scope)


if __name__ == "__main__":
    main()
