"""Training samples from archived scan folders or the competition's ``train_*.npy`` files.

A sample is ``4 + n_leads`` consecutive 10-minute scans: inputs t-30 .. t and targets
t+10 .. t+10*n_leads, kept on the network's scale ln(R + 0.01), channels last (120 x 120).
Optionally each sample carries the optical-flow extrapolation of its inputs for every lead
(the conditioning of the shipped model), computed once here, not per epoch.

The event of a folder is its name without the ``-wK`` window suffix; validation data are
split by event, never by window, since windows of one event share their weather.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nowcast_core.contract import N_INPUTS
from nowcast_core.io import consecutive_windows, read_folder
from nowcast_core.rainnet.preprocess import (
    log_to_rain_rate,
    pad_tf,
    pixel_to_log,
    stack_scans,
)

_WINDOW_SUFFIX = re.compile(r"-w\d+$")


@dataclass
class Samples:
    """A set of training samples.

    Attributes
    ----------
    frames : float32 (n, 120, 120, 4 + n_leads), ln(R + 0.01), oldest scan first.
    conditioning : float32 (n, 120, 120, n_leads) extrapolations on the same scale, or None.
    events : event name of every sample.
    issue_times : ISO time of the newest input scan of every sample ('' if unknown).
    """

    frames: np.ndarray
    conditioning: np.ndarray | None = None
    events: list[str] = field(default_factory=list)
    issue_times: list[str] = field(default_factory=list)

    @property
    def n_leads(self) -> int:
        return self.frames.shape[-1] - N_INPUTS

    def __len__(self) -> int:
        return len(self.frames)

    def subset(self, index) -> "Samples":
        index = np.asarray(index, dtype=int)
        return Samples(
            frames=self.frames[index],
            conditioning=None if self.conditioning is None else self.conditioning[index],
            events=[self.events[i] for i in index],
            issue_times=[self.issue_times[i] for i in index],
        )


def event_name(folder: str | Path) -> str:
    """Event of a folder: its name without the ``-wK`` window suffix (``knmi-w2`` -> ``knmi``)."""
    return _WINDOW_SUFFIX.sub("", Path(folder).name)


def add_conditioning(samples: Samples, smoothing_px_per_lead: float = 0.0, growth: bool = False) -> Samples:
    """Compute the extrapolation of every sample's inputs for each of its leads (in place); with
    ``growth`` the growth tendency for each lead follows (the direct network's ``growth`` input)."""
    from nowcast_core.extrapolation import extrapolate_with_growth
    from nowcast_core.rainnet.direct import conditioning_channels

    rain = log_to_rain_rate(np.moveaxis(samples.frames[..., :N_INPUTS], -1, 1))
    samples.conditioning = conditioning_channels(*extrapolate_with_growth(rain, samples.n_leads, smoothing_px_per_lead,
                                                                          growth))
    return samples


def concat_samples(parts: list[Samples]) -> Samples:
    """Join sample sets with the same number of leads."""
    parts = [p for p in parts if len(p)]
    if not parts:
        raise ValueError("no samples")
    cond = None if any(p.conditioning is None for p in parts) else np.concatenate([p.conditioning for p in parts])
    return Samples(
        frames=np.concatenate([p.frames for p in parts]),
        conditioning=cond,
        events=[e for p in parts for e in p.events],
        issue_times=[t for p in parts for t in p.issue_times],
    )


def samples_from_frames(
    frames,
    event: str,
    n_leads: int = 6,
    conditioning: bool = True,
    smoothing_px_per_lead: float = 0.0,
    max_samples: int | None = None,
    growth: bool = False,
) -> Samples:
    """Every run of ``4 + n_leads`` consecutive scans among ``frames`` is a sample.

    Parameters
    ----------
    frames : :class:`nowcast_core.io.Frame` objects in time order (gaps allowed: no
        sample spans a missing scan).
    event : event name given to every sample (validation is split by event).
    n_leads : number of target scans after the issue time.
    conditioning : also compute the optical-flow extrapolation (see :func:`add_conditioning`).
    smoothing_px_per_lead : smoothing of the extrapolation (see ``extrapolation.smooth_leads``).
    max_samples : keep at most this many windows, evenly spread over the span (memory bound).
    growth : add the growth tendency to the conditioning (see :func:`add_conditioning`).
    """
    length = N_INPUTS + n_leads
    starts = consecutive_windows([f.scan_time for f in frames], length)
    if max_samples is not None and len(starts) > max_samples:
        starts = [starts[i] for i in np.unique(np.linspace(0, len(starts) - 1, max_samples).round().astype(int))]
    needed = sorted({s + k for s in starts for k in range(length)})
    logs = {i: pixel_to_log(frames[i].frame, frames[i].nodata) for i in needed}
    stacks = (np.stack([stack_scans(np.stack([logs[s + k] for k in range(length)])) for s in starts])
              if starts else np.zeros((0, 120, 120, length), np.float32))
    samples = Samples(
        frames=stacks.astype(np.float32),
        events=[event] * len(starts),
        issue_times=[frames[s + N_INPUTS - 1].scan_time.isoformat() for s in starts],
    )
    if conditioning and len(samples):
        add_conditioning(samples, smoothing_px_per_lead, growth)
    elif conditioning:
        samples.conditioning = np.zeros((0, 120, 120, n_leads * (2 if growth else 1)), np.float32)
    return samples


def samples_from_folder(
    folder: str | Path, n_leads: int = 6, conditioning: bool = True, smoothing_px_per_lead: float = 0.0,
    max_samples: int | None = None, growth: bool = False,
) -> Samples:
    """:func:`samples_from_frames` of the valid scans of one folder (invalid files are skipped);
    the event is the folder's name without its ``-wK`` suffix."""
    return samples_from_frames(read_folder(folder), event_name(folder), n_leads, conditioning, smoothing_px_per_lead,
                               max_samples, growth)


def samples_from_folders(
    folders, n_leads: int = 6, conditioning: bool = True, smoothing_px_per_lead: float = 0.0,
    max_samples_per_folder: int | None = None, growth: bool = False,
) -> Samples:
    """:func:`samples_from_folder` over many folders, joined."""
    return concat_samples([samples_from_folder(f, n_leads, conditioning, smoothing_px_per_lead, max_samples_per_folder,
                                               growth) for f in folders])


def samples_from_competition(
    paths, conditioning: bool = True, event: str = "competition", smoothing_px_per_lead: float = 0.0
) -> Samples:
    """Samples from the competition's ``train_NNNNN.npy`` files (uint8 (120, 120, 5) each).

    Each file holds scans t-30 .. t+10 on the feed's pixel scale: a 4 + 1 sample.
    Files are loaded without pickle; a file of another shape or dtype raises ValueError.
    """
    stacks = []
    for p in paths:
        arr = np.load(p, allow_pickle=False)
        if arr.shape != (120, 120, 5) or arr.dtype != np.uint8:
            raise ValueError(f"{p}: expected uint8 (120, 120, 5), got {arr.dtype} {arr.shape}")
        stacks.append(pixel_to_log(arr))
    samples = Samples(
        frames=np.stack(stacks).astype(np.float32), events=[event] * len(stacks), issue_times=[""] * len(stacks)
    )
    return add_conditioning(samples, smoothing_px_per_lead) if conditioning else samples


def split_by_event(samples: Samples, val_events) -> tuple[Samples, Samples]:
    """(training, validation): samples of ``val_events`` go to validation, whole events only."""
    val_events = set(val_events)
    is_val = np.array([e in val_events for e in samples.events], dtype=bool)
    return samples.subset(np.flatnonzero(~is_val)), samples.subset(np.flatnonzero(is_val))


def _augment(x, seed):
    """Random flip and 90-degree rotation of a (120, 120, C) tensor, the same for all channels."""
    import tensorflow as tf

    k = tf.random.stateless_uniform((), seed=seed, minval=0, maxval=4, dtype=tf.int32)
    flip = tf.random.stateless_uniform((), seed=seed + 1, minval=0, maxval=2, dtype=tf.int32)
    x = tf.image.rot90(x, k)
    return tf.cond(flip > 0, lambda: tf.image.flip_left_right(x), lambda: x)


def make_tf_dataset(
    samples: Samples,
    batch_size: int = 8,
    *,
    shuffle: bool = True,
    augment: bool = True,
    seed: int = 42,
    teacher_forced_lead: bool = False,
):
    """A tf.data pipeline of padded (128 x 128) batches.

    Parameters
    ----------
    samples : the samples.
    batch_size : samples per batch.
    shuffle, augment : reshuffle every epoch; random flips and 90-degree rotations.
    seed : seed of shuffling and augmentation (deterministic).
    teacher_forced_lead : if True, every element is a one-step problem at a random lead k:
        inputs are the *observed* scans t-30+10(k-1) .. t+10(k-1), the conditioning is the
        extrapolation for lead k, the target is the scan at t+10k.

    Returns
    -------
    tf.data.Dataset of dicts ``{"frames": (b,128,128,4+L'), "conditioning": (b,128,128,L')}``
    with L' = 1 for teacher-forced elements, else n_leads (conditioning absent if the samples
    have none).
    """
    import tensorflow as tf

    n_leads = samples.n_leads
    has_cond = samples.conditioning is not None
    data = samples.frames if not has_cond else np.concatenate([samples.frames, samples.conditioning], axis=-1)
    n_frames = samples.frames.shape[-1]
    ds = tf.data.Dataset.from_tensor_slices(data)
    if shuffle:
        ds = ds.shuffle(len(samples), seed=seed, reshuffle_each_iteration=True)
    randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, randoms))

    def prepare(x, r):
        s = tf.stack([tf.cast(r % 1_000_003, tf.int32), tf.cast((r // 1_000_003) % 1_000_003, tf.int32)])
        if augment:
            x = _augment(x, s)
        frames = x[..., :n_frames]
        cond = x[..., n_frames:] if has_cond else None
        if teacher_forced_lead:
            k = tf.random.stateless_uniform((), seed=s + 2, minval=0, maxval=n_leads, dtype=tf.int32)
            frames = frames[..., k : k + N_INPUTS + 1]
            frames = tf.ensure_shape(frames, (120, 120, N_INPUTS + 1))
            if has_cond:
                cond = tf.ensure_shape(cond[..., k : k + 1], (120, 120, 1))
        out = {"frames": frames}
        if has_cond:
            out["conditioning"] = cond
        return out

    ds = ds.map(prepare, num_parallel_calls=2, deterministic=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda d: {k: pad_tf(v) for k, v in d.items()})
    return ds.prefetch(2)
