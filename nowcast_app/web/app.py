"""The ASGI application: dashboard pages, the API, /metrics, an offline /docs page, and the token check."""

from __future__ import annotations

import base64
import hmac
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from nowcast_app.web.api import router
from nowcast_app.web.context import WebContext, utc_now
from nowcast_app.web.metrics import metrics_text
from nowcast_app.web.params import ApiError, error_response
from nowcast_core.config import Settings
from nowcast_core.cycle.service import failure_reason

log = logging.getLogger("nowcast.web")
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Every page may load only what this server serves (no CDN, no web fonts): enforced by the browser.
CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'"
PAGES = {"/": "index.html", "/skill": "skill.html", "/docs": "docs.html"}


def token_ok(header: str | None, token: str) -> bool:
    """``Authorization: Bearer TOKEN`` (API clients), or HTTP Basic with TOKEN as the password (browsers)."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.strip().encode(), token.encode())
    if scheme.lower() == "basic":
        try:
            password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(password.encode(), token.encode())
    return False


def _page(file: Path):
    """A route serving one fixed file (takes no parameter at all)."""
    def page() -> FileResponse:
        return FileResponse(file, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})
    return page


def create_app(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> FastAPI:
    """The web application of one installation (read-only)."""
    ctx = WebContext(settings, clock)
    app = FastAPI(title="nowcast", version="1", docs_url=None, redoc_url=None, openapi_url="/openapi.json",
                  description="Precipitation nowcasts for hydro-power dams: status, dam rainfall forecasts, field maps, "
                              "verified skill and alerts. Times are ISO 8601 UTC. `format=csv` gives CSV.")
    app.state.ctx = ctx
    token = settings.api_token.get_secret_value() if settings.api_token else None

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token is not None and not token_ok(request.headers.get("authorization"), token):
            response = error_response(401, "missing or wrong token: send 'Authorization: Bearer <token>'")
            response.headers["WWW-Authenticate"] = 'Bearer realm="nowcast", Basic realm="nowcast"'
            return response
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        return error_response(exc.status, exc.message, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p not in ('query', 'path'))}: {e['msg']}"
                    for e in exc.errors()]
        return error_response(422, "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request, exc: StarletteHTTPException):
        return error_response(exc.status_code, "not found" if exc.status_code == 404 else str(exc.detail))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database(request: Request, exc: Exception):
        # an outage, not a bug: one line per request (the page polls), and the answer says what it is
        reason = failure_reason(exc)
        log.error("database unavailable on %s: %s", request.url.path, reason)
        return error_response(503, f"the database is unavailable: {reason}")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")

    app.include_router(router)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(metrics_text(ctx), media_type="text/plain; version=0.0.4; charset=utf-8",
                        headers={"Cache-Control": "no-store"})

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True}

    for path, name in PAGES.items():
        app.add_api_route(path, _page(STATIC_DIR / name), include_in_schema=False, methods=["GET"])

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.router.on_shutdown.append(ctx.close)
    return app
