"""The operators' window: a read-only web page, HTTP API and Prometheus metrics, and webhook delivery.

``create_app(settings)`` builds the ASGI application; :mod:`.server` runs it with uvicorn
(``nowcast serve``, or a thread of ``nowcast run``); :mod:`.webhooks` delivers alert changes.
"""

from nowcast_app.web.app import create_app

__all__ = ["create_app"]
