"""The event-driven inbox without Prefect: the watcher, the cycle runner and the settle rule.

A daemon-like loop is the service's steps run by :class:`CycleRunner` with a 60 s sweep and
the inbox watcher wired as the daemon wires it (``announcer``).
"""

from __future__ import annotations

import os
import threading
import time

import helpers_frames as hf
import pytest
from sqlalchemy import select
from watchdog.events import FileClosedEvent, FileCreatedEvent, FileMovedEvent

from nowcast_core.cycle.runner import CycleRunner
from nowcast_core.db.schema import ForecastRun, FrameRecord
from nowcast_core.inbox.watch import InboxEventHandler, announcer, start_watcher
from nowcast_core.io.sample import write_sequence

SWEEP_S = 60.0


class Loop:
    """The daemon's wiring around a service: cycles recorded as (start, end, reason)."""

    def __init__(self, svc):
        self.svc = svc
        self.cycles: list[tuple[float, float, str]] = []
        self.runner = CycleRunner(self._cycle, SWEEP_S)
        self.watcher = start_watcher(svc.settings.inbox, announcer(svc.announced, self.runner.request,
                                                                   svc.settings.settle_seconds))
        self.runner.start()
        self.wait(lambda: len(self.cycles) >= 1, 30)  # the start sweep

    def _cycle(self, reason: str) -> None:
        start = time.monotonic()
        self.svc.ingest()
        self.svc.forecast(production=True)
        self.cycles.append((start, time.monotonic(), reason))

    @staticmethod
    def wait(condition, timeout_s: float) -> float:
        t0 = time.monotonic()
        while not condition():
            assert time.monotonic() - t0 < timeout_s, f"not within {timeout_s} s"
            time.sleep(0.05)
        return time.monotonic() - t0

    def close(self) -> None:
        self.watcher.stop()
        self.runner.stop(30)
        self.watcher.join(5)


def _production_runs(svc) -> list[ForecastRun]:
    with svc.sessions() as s:
        return list(s.scalars(select(ForecastRun).where(ForecastRun.is_production).order_by(ForecastRun.issue_time)))


def _arrived(svc) -> dict:
    with svc.sessions() as s:
        return dict(s.execute(select(FrameRecord.scan_time, FrameRecord.arrived_at)).all())


@pytest.mark.parametrize("delivery", ["renamed_in", "written_in_place"])
def test_a_scan_landing_in_the_inbox_is_forecast_in_seconds_not_at_the_sweep(make_sqlite_service, shared_radar,
                                                                              tmp_path, delivery):
    svc = make_sqlite_service(settle_seconds=2)  # the default settle time: it must not apply to announced scans
    files = hf.event_files(shared_radar, 0, 4)
    hf.deliver(files[:3], svc.settings.inbox)  # there before the start: the start sweep takes them
    loop = Loop(svc)
    try:
        assert len(_arrived(svc)) == 3 and _production_runs(svc) == []
        data = files[3].read_bytes()
        arrived = time.time()
        if delivery == "renamed_in":  # from a staging folder outside the inbox, on the same file system
            staged = tmp_path / "staging" / files[3].name
            staged.parent.mkdir()
            staged.write_bytes(data)
            arrived = time.time()
            os.rename(staged, svc.settings.inbox / files[3].name)
        else:
            with open(svc.settings.inbox / files[3].name, "wb") as fh:
                fh.write(data[:1000])
                fh.flush()
                time.sleep(0.3)  # a slow writer: nothing may be read before the close
                fh.write(data[1000:])
        waited = loop.wait(lambda: len(_production_runs(svc)) == 1, 10.0)
    finally:
        loop.close()
    [run] = _production_runs(svc)
    arrived_at = _arrived(svc)[run.issue_time]
    assert waited < 10.0 < SWEEP_S
    assert abs(arrived_at.timestamp() - arrived) < 1.0  # the file's arrival, not its registration
    assert 0 < (run.finished_at - arrived_at).total_seconds() < 10.0
    assert [reason for *_, reason in loop.cycles][:2] == ["sweep", "event"]
    with svc.sessions() as s:
        assert s.scalar(select(FrameRecord.checksum).where(FrameRecord.scan_time == run.issue_time)) == hf.sha256(data)


def test_a_burst_of_files_is_a_few_cycles_never_overlapping(make_sqlite_service, tmp_path):
    svc = make_sqlite_service(max_scan_age_h=100)
    staged = write_sequence(tmp_path / "staging", n_scans=150, seed=5)
    loop = Loop(svc)
    try:
        for p in staged:
            os.rename(p, svc.settings.inbox / p.name)
        loop.wait(lambda: len(_production_runs(svc)) == 147, 60.0)
        time.sleep(0.5)
    finally:
        loop.close()
    cycles = loop.cycles
    assert len(cycles) <= 6, f"{len(cycles)} cycles for 150 files"
    assert all(end1 <= start2 for (_, end1, _), (start2, _, _) in zip(cycles, cycles[1:])), "cycles overlapped"
    assert len(_arrived(svc)) == 150 and not any(svc.settings.inbox.iterdir())


def test_requests_during_a_cycle_give_exactly_one_follow_up():
    release, started = threading.Event(), threading.Event()
    reasons: list[str] = []

    def cycle(reason: str) -> None:
        reasons.append(reason)
        started.set()
        release.wait(10)

    runner = CycleRunner(cycle, SWEEP_S).start()
    try:
        assert started.wait(5)  # the start sweep is running
        for _ in range(50):
            runner.request()
        release.set()
        time.sleep(0.5)
    finally:
        runner.stop(5)
    assert reasons == ["sweep", "event"]


def test_a_delayed_request_runs_after_its_delay():
    times: list[float] = []
    runner = CycleRunner(lambda reason: times.append(time.monotonic()), SWEEP_S).start()
    try:
        Loop.wait(lambda: len(times) == 1, 5)
        t0 = time.monotonic()
        runner.request("event", delay_s=0.6)
        Loop.wait(lambda: len(times) == 2, 5)
    finally:
        runner.stop(5)
    assert 0.55 <= times[1] - t0 < 2.0


def test_settle_time_applies_only_to_files_found_by_the_sweep(make_sqlite_service, shared_radar):
    svc = make_sqlite_service(settle_seconds=30)
    fresh = []
    for f in hf.event_files(shared_radar, 0, 2):  # both just written (mtime now)
        fresh.append(hf.write_file(svc.settings.inbox, f.name, f.read_bytes(), age_s=0))
    svc.announced.add(fresh[0].name)  # as the watcher does for a closed or renamed-in file
    report = svc.ingest()
    assert len(report.registered) == 1 and report.waiting == [fresh[1].name]
    assert svc.ingest().waiting == [fresh[1].name]  # an announcement is used once


def test_the_handler_tells_complete_scans_from_created_ones(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    seen: list[tuple[str, bool]] = []
    handler = InboxEventHandler(inbox, lambda name, complete: seen.append((name, complete)))
    name = "RDR_201008260000.npz"
    for event in (FileCreatedEvent(str(inbox / name)),  # being written
                  FileClosedEvent(str(inbox / name)),  # closed after writing
                  FileMovedEvent("", str(inbox / name)),  # renamed in from outside the inbox
                  FileMovedEvent(str(inbox / f".{name}.tmp"), str(inbox / name)),  # renamed inside it
                  FileClosedEvent(str(inbox / f".{name}.tmp")),  # a producer's temporary file
                  FileClosedEvent(str(inbox / "sub" / name)),  # not in the inbox itself
                  FileMovedEvent(str(inbox / name), "")):  # moved out
        handler.dispatch(event)
    assert seen == [(name, False), (name, True), (name, True), (name, True)]


def test_the_watcher_is_a_setting(tmp_path, monkeypatch):
    from flows.daemon import _watch
    from nowcast_core.config import load_settings

    monkeypatch.setenv("NOWCAST_WATCH", "0")
    settings = load_settings(home=tmp_path / "home")
    assert settings.watch is False and _watch(settings, lambda *a: None) is None
    monkeypatch.delenv("NOWCAST_WATCH")
    assert load_settings(home=tmp_path / "home").watch is True
