"""Prefect flows: thin orchestration over ``nowcast_core``.

- ``forecast_cycle``: poll the inbox, ingest, forecast every complete scan (production and baselines).
- ``embedded``: run the flows in this process on a temporary local Prefect server (the default daemon).
"""
