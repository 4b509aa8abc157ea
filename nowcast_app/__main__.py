"""``python -m nowcast_app``: the ``nowcast`` command line (the daemon starts retrainings this way)."""

from nowcast_app.cli import main

main()
