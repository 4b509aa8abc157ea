"""Scoring forecasters on folders of scans offline (``nowcast evaluate``, the model card)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nowcast_core.contract import LEAD_MINUTES, N_LEADS
from nowcast_core.forecasters.base import Forecaster
from nowcast_core.forecasters.batch import forecast_batched
from nowcast_core.io.sequences import folder_sequences
from nowcast_core.verification.scores import (
    LeadCounts,
    competition_score,
    counts_per_lead,
)
from nowcast_core.verification.structure import StructureSums, structure_per_lead


def evaluate_folders(folders: Sequence[str | Path], forecasters: Sequence[Forecaster],
                     dam_pixels: Sequence[tuple[int, int]], progress=None) -> list[dict]:
    """Per method and lead: CSI/POD/FAR at 0.1, 1, 5, 10 mm/h, MAE, FSS and the area at 5 mm/h
    (:mod:`nowcast_core.verification.structure`), and the competition score at +10.

    Every scan with three predecessors and six successors in its folder is a forecast start;
    counts are pooled over all starts of all folders.
    """
    pooled = {(f.name, lead): LeadCounts() for f in forecasters for lead in LEAD_MINUTES}
    structure = {(f.name, lead): StructureSums() for f in forecasters for lead in LEAD_MINUTES}
    first_lead: dict[str, tuple[list, list]] = {f.name: ([], []) for f in forecasters}
    n_starts = 0
    for folder in folders:
        _, inputs, observed = folder_sequences(folder, N_LEADS)
        if not len(inputs):
            continue
        n_starts += len(inputs)
        for forecaster in forecasters:
            forecast = forecast_batched(forecaster, inputs)
            for lead, counts in counts_per_lead(forecast, observed, LEAD_MINUTES).items():
                pooled[forecaster.name, lead].add(counts)
            for lead, sums in structure_per_lead(forecast, observed, LEAD_MINUTES).items():
                structure[forecaster.name, lead].add(sums)
            first_lead[forecaster.name][0].append(forecast[:, 0])
            first_lead[forecaster.name][1].append(observed[:, 0])
        if progress is not None:
            progress(folder)
    rows = []
    for forecaster in forecasters:
        f10, o10 = first_lead[forecaster.name]
        comp = competition_score(np.concatenate(f10), np.nan_to_num(np.concatenate(o10)), dam_pixels) if f10 else None
        for lead in LEAD_MINUTES:
            c = pooled[forecaster.name, lead]
            row = {"method": forecaster.name, "model_version": forecaster.version, "lead_minutes": lead,
                   **c.summary(digits=4), **structure[forecaster.name, lead].summary(digits=4)}
            row["competition_score"] = round(comp["score"], 4) if comp and lead == 10 else None
            rows.append(row)
    return rows
