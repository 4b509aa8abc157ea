"""What ``nowcast run --demo`` replays: a real event the model has not seen, else a generated sequence,
and the log says which and why."""

from __future__ import annotations

import logging

from nowcast_core.inbox.replay import demo_source
from nowcast_core.io.sample import write_sequence


def test_the_demo_replays_an_unseen_event_else_says_why_it_generates_one(tmp_path, monkeypatch, caplog):
    work, home = tmp_path / "project", tmp_path / "home"
    work.mkdir()
    monkeypatch.chdir(work)  # ../shared/data/radar is looked for beside the working directory
    caplog.set_level(logging.INFO, logger="nowcast_core.inbox.replay")

    assert demo_source(home) == home / "sample" and len(list((home / "sample").glob("RDR_*.npz"))) == 72
    assert "no ../shared/data/radar here" in caplog.text

    radar = tmp_path / "shared" / "data" / "radar"
    write_sequence(radar / "alpha-w0", n_scans=10)
    write_sequence(radar / "beta-w0", n_scans=10)
    caplog.clear()
    assert demo_source(home, {"alpha"}).resolve() == (radar / "beta-w0").resolve()  # alpha was trained on
    assert caplog.text == ""

    assert demo_source(home, {"alpha", "beta"}) == home / "sample"  # trained on every event there
    assert "trained on every event" in caplog.text
