"""The HTTP API under ``/api/v1``: read-only, JSON by default, CSV with ``format=csv``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select

from nowcast_app.web import data
from nowcast_app.web.context import WebContext
from nowcast_app.web.maps import render_png, title_for
from nowcast_app.web.params import (
    IMMUTABLE_MAX_AGE_S,
    ApiError,
    check_format,
    check_range,
    parse_time,
    rows_response,
)
from nowcast_core.contract import LEAD_MINUTES
from nowcast_core.db.queries import forecast_rows
from nowcast_core.db.schema import ForecastRun, FrameRecord
from nowcast_core.io import read_frame
from nowcast_core.io.fields import load_field
from nowcast_core.io.scale import pixel_to_rain_rate
from nowcast_core.plots import COLOURS, DRY_COLOUR, LEVELS_MM_H, NO_DATA_COLOUR
from nowcast_core.verification.probabilistic_stored import probabilistic_skill_rows, without_lists
from nowcast_core.verification.stored import skill_rows

router = APIRouter(prefix="/api/v1")
Fmt = Annotated[str, Query(description="json or csv")]
Time = Annotated[str | None, Query(description="ISO 8601, UTC unless an offset is given, e.g. 2020-10-31T12:00Z")]


def ctx_of(request: Request) -> WebContext:
    return request.app.state.ctx


Ctx = Annotated[WebContext, Depends(ctx_of)]


@router.get("/status", summary="Newest scan and its age, last run, method in use, fallback reason, open alerts")
def get_status(ctx: Ctx) -> JSONResponse:
    return JSONResponse(data.status(ctx), headers={"Cache-Control": "no-cache, max-age=0"})


@router.get("/dams", summary="Dams: name, pixel, catchment, alert thresholds")
def get_dams(ctx: Ctx, format: Fmt = "json") -> Response:
    return rows_response(ctx.live.get("dams", lambda: data.dams(ctx)), format, max_age=300, filename="dams")


@router.get("/forecasts", summary="Dam rainfall rows, exactly as `nowcast forecasts` (default: latest production run)")
def get_forecasts(ctx: Ctx, dam: str | None = None, method: str | None = None, issue_time: Time = None,
                  since: Time = None, until: Time = None,
                  lead_minutes: Annotated[int | None, Query(description="one of 10 .. 60")] = None,
                  format: Fmt = "json") -> Response:
    check_format(format)
    t, t0, t1 = parse_time(issue_time, "issue_time"), parse_time(since, "since"), parse_time(until, "until")
    check_range(t0, t1)
    data.check_dam(ctx, dam)
    data.check_method(ctx, method)
    data.check_lead(lead_minutes)
    def query():
        with ctx.sessions() as session:
            return forecast_rows(session, dam=dam, issue_time=t, since=t0, until=t1, method=method)
    rows = ctx.live.get(("forecasts", dam, t, t0, t1, method), query)
    if lead_minutes is not None:
        rows = [r for r in rows if r["lead_minutes"] == lead_minutes]
    return rows_response(rows, format, filename="forecasts")


@router.get("/skill", summary="Verified skill by lead, dam or method, as `nowcast skill` (with probabilistic=true: "
            "the ensembles' Brier score, reliability and CRPS, as `nowcast skill --probabilistic`)")
def get_skill(ctx: Ctx, by: str = "lead", since: Time = None, until: Time = None, format: Fmt = "json",
              probabilistic: bool = False) -> Response:
    check_format(format)
    if by not in ("lead", "dam", "method"):
        raise ApiError(422, f"by: {by!r} is not one of lead, dam, method")
    t0, t1 = parse_time(since, "since"), parse_time(until, "until")
    check_range(t0, t1)
    if probabilistic:
        with ctx.sessions() as session:
            rows = ctx.live.get(("probabilistic skill", by, t0, t1),
                                lambda: probabilistic_skill_rows(session, since=t0, until=t1, by=by))
        if format == "csv":
            rows = without_lists(rows)
        return rows_response(rows, format, max_age=60, filename=f"probabilistic-skill-by-{by}")
    with ctx.sessions() as session:
        rows = ctx.live.get(("skill", by, t0, t1), lambda: skill_rows(session, since=t0, until=t1, by=by))
    return rows_response(rows, format, max_age=60, filename=f"skill-by-{by}")


@router.get("/alerts", summary="Current alert level per dam (the newest production run)")
def get_alerts(ctx: Ctx, dam: str | None = None, format: Fmt = "json") -> Response:
    check_format(format)
    data.check_dam(ctx, dam)
    return rows_response(ctx.live.get(("alerts", dam), lambda: data.alerts_current(ctx, dam)), format, filename="alerts")


@router.get("/alerts/history", summary="Changes of alert levels, newest first, with their webhook deliveries")
def get_alert_history(ctx: Ctx, dam: str | None = None, since: Time = None, until: Time = None,
                      limit: Annotated[int, Query(ge=1, le=5000)] = 200, format: Fmt = "json") -> Response:
    check_format(format)
    t0, t1 = parse_time(since, "since"), parse_time(until, "until")
    check_range(t0, t1)
    data.check_dam(ctx, dam)
    rows = ctx.live.get(("history", dam, t0, t1, limit),
                        lambda: data.alerts_history(ctx, dam=dam, since=t0, until=t1, limit=limit))
    return rows_response(rows, format, filename="alert-history")


@router.get("/series", summary="Observed catchment rain of the last hours and the latest forecast, per dam")
def get_series(ctx: Ctx, hours: Annotated[float, Query(gt=0, le=24)] = 3.0) -> JSONResponse:
    return JSONResponse(ctx.live.get(("series", hours), lambda: data.series(ctx, hours)),
                        headers={"Cache-Control": "public, max-age=10"})


@router.get("/legend", summary="Rain-rate classes (mm/h) and colours of the map images")
def get_legend() -> JSONResponse:
    return JSONResponse({"levels_mm_h": list(LEVELS_MM_H), "colours": list(COLOURS), "dry_colour": DRY_COLOUR,
                         "no_data_colour": NO_DATA_COLOUR},
                        headers={"Cache-Control": f"public, max-age={IMMUTABLE_MAX_AGE_S}"})


_LEAD_PNG = re.compile(r"^(-?\d+)\.png$")


def _inside(root: Path, path: Path) -> Path:
    """``path`` resolved, if it lies inside ``root``; a stored path never points elsewhere, but check."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(Path(root).resolve()):
        raise ApiError(404, "no such field")
    return resolved


def _png(request: Request, etag: str, make) -> Response:
    headers = {"Cache-Control": f"public, max-age={IMMUTABLE_MAX_AGE_S}, immutable", "ETag": f'"{etag}"'}
    if request.headers.get("if-none-match") == f'"{etag}"':
        return Response(status_code=304, headers=headers)
    return Response(make(), media_type="image/png", headers=headers)


def _observed_png(ctx: WebContext, request: Request, record: FrameRecord) -> Response:
    def make():
        path = _inside(ctx.settings.archive, record.archived_file(ctx.settings.archive))
        frame = read_frame(path)
        rain = pixel_to_rain_rate(frame.frame)
        rain[frame.nodata] = float("nan")
        return render_png(rain, ctx.dams, title_for("observed", record.scan_time, 0))
    key = ("scan", record.checksum)
    return _png(request, f"scan-{record.checksum[:20]}", lambda: ctx.images.get(key, make))


@router.get("/fields/{issue_time}/{lead_png}", summary="Map of one lead of a stored forecast (lead 0: the observed scan)",
            response_class=Response, responses={200: {"content": {"image/png": {}}},
                                                410: {"description": "the forecast's file was deleted by the retention "
                                                                     "(NOWCAST_KEEP_FORECAST_FILES_DAYS)"}})
def get_field(ctx: Ctx, request: Request, issue_time: str, lead_png: str, method: str | None = None) -> Response:
    m = _LEAD_PNG.match(lead_png)
    if not m:
        raise ApiError(404, f"{lead_png!r}: expected LEAD.png, e.g. 30.png")
    lead = int(m.group(1))
    t = parse_time(issue_time, "issue_time")
    data.check_lead(lead, allow_zero=True)
    data.check_method(ctx, method)
    with ctx.sessions() as session:
        if lead == 0:
            record = session.scalar(select(FrameRecord).where(FrameRecord.scan_time == t))
            if record is None:
                raise ApiError(404, f"no scan at {issue_time}")
            return _observed_png(ctx, request, record)
        q = select(ForecastRun).where(ForecastRun.issue_time == t, ForecastRun.status == "ok")
        q = q.where(ForecastRun.method == method) if method else q.where(ForecastRun.is_production)
        run = session.scalar(q.limit(1))
    if run is None or not run.field_path:
        raise ApiError(404, f"no stored {method or 'production'} forecast issued at {issue_time}")
    if run.files_pruned_at is not None:
        raise ApiError(410, f"the map of the {run.method} forecast issued at {issue_time} is no longer kept: its file "
                            f"was deleted by the retention on {run.files_pruned_at:%Y-%m-%d} "
                            f"(NOWCAST_KEEP_FORECAST_FILES_DAYS); its dam results and verification are kept")
    k = LEAD_MINUTES.index(lead)

    def make():
        path = _inside(ctx.settings.forecasts, Path(ctx.settings.forecasts) / run.field_path)
        try:
            field = load_field(path.parent, path.name, run.field_checksum)
        except FileNotFoundError:
            raise ApiError(404, f"the file of the {run.method} forecast issued at {issue_time} is missing from the "
                                f"forecasts folder, though not pruned (deleted by hand?)") from None
        return render_png(field[k], ctx.dams, title_for("forecast", run.issue_time, lead, run.method))
    key = ("field", run.field_checksum, lead)
    return _png(request, f"{run.field_checksum[:20]}-{lead}", lambda: ctx.images.get(key, make))


@router.get("/scans/{scan_png}", summary="Map of one observed scan", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def get_scan(ctx: Ctx, request: Request, scan_png: str) -> Response:
    if not scan_png.endswith(".png"):
        raise ApiError(404, f"{scan_png!r}: expected SCAN_TIME.png, e.g. 2020-10-31T12:00Z.png")
    t = parse_time(scan_png[:-4], "scan_time")
    with ctx.sessions() as session:
        record = session.scalar(select(FrameRecord).where(FrameRecord.scan_time == t))
    if record is None:
        raise ApiError(404, f"no scan at {scan_png[:-4]}")
    return _observed_png(ctx, request, record)
