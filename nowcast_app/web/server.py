"""Running the web application with uvicorn: in the foreground (``nowcast serve``) or in a thread (``nowcast run``)."""

from __future__ import annotations

import ipaddress
import logging
import threading

log = logging.getLogger("nowcast.web")


class ServeError(Exception):
    """The server must not start (e.g. a public address without a token)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings, host: str) -> None:
    """Listening beyond this machine needs ``NOWCAST_API_TOKEN``."""
    if not is_loopback(host) and not (settings.api_token and settings.api_token.get_secret_value()):
        raise ServeError(f"refusing to listen on {host} without a token: set NOWCAST_API_TOKEN "
                         "(every request must then send 'Authorization: Bearer <token>'), or use --host 127.0.0.1")


def url_of(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/"


def build_server(settings, host: str, port: int, **app_kwargs):
    import uvicorn

    from nowcast_app.web.app import create_app

    check_bind(settings, host)
    config = uvicorn.Config(create_app(settings, **app_kwargs), host=host, port=port, log_level="warning",
                            access_log=False, lifespan="on", server_header=False)
    return uvicorn.Server(config)


def check_port(host: str, port: int) -> None:
    """Raise :class:`ServeError` when ``host:port`` cannot be listened on (in use, or not this machine's)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServeError(f"could not listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as exc:
            raise ServeError(f"could not listen on {host}:{port}: {exc.strerror or exc} "
                             "(another server on that port? choose one with --port)") from None


def serve(settings, host: str, port: int) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (then exit cleanly, status 0)."""
    import signal

    check_port(host, port)  # one clear line, before uvicorn would log its own traceback
    web = WebThread(settings, host, port)
    if not web.start():
        raise ServeError(f"could not listen on {host}:{port} (address in use?)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5) and web.thread.is_alive():
        pass
    web.stop()


class WebThread:
    """The web server in a daemon thread; ``stop()`` ends it. A failure to start is logged, never raised:
    the forecasts matter more than the page."""

    def __init__(self, settings, host: str, port: int, **app_kwargs):
        self.url = url_of(host, port)
        self.server = build_server(settings, host, port, **app_kwargs)
        self.thread = threading.Thread(target=self._run, name="nowcast-web", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except SystemExit:  # uvicorn's way out when it cannot bind: it has logged why
            log.error("the web server stopped: it could not listen on %s", self.url)
        except BaseException:  # noqa: BLE001
            log.exception("the web server stopped")

    def start(self, timeout_s: float = 10.0) -> bool:
        self.thread.start()
        for _ in range(int(timeout_s * 20)):
            if self.server.started or not self.thread.is_alive():
                break
            threading.Event().wait(0.05)
        if self.server.started:
            log.info("web page, API and /metrics on %s", self.url)
        else:
            log.error("the web server did not start on %s; forecasting goes on without it", self.url)
        return self.server.started

    def stop(self, timeout_s: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)
