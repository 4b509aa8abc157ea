"""``python -m flows.retrain_child``: the embedded daemon's retraining, in a process of its own.

The daemon starts it at low priority on ``settings.retrain_cron``, so a cycle that falls due
during training runs on time. Exit code 0 when a candidate was judged (promoted or not),
1 when no retraining was possible.
"""

from __future__ import annotations

import logging
import sys


def main() -> int:
    from flows.embedded import configure
    from nowcast_core.config import load_settings
    from nowcast_core.db import upgrade

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    settings = load_settings()
    upgrade(settings.database_url)
    configure(settings.home, settings.prefect_startup_timeout_s)
    from flows.retrain import retrain

    try:
        entry = retrain()
    except (ValueError, LookupError) as exc:
        logging.getLogger("nowcast.retrain").warning("retraining not possible: %s", exc)
        return 1
    return 1 if "skipped" in entry else 0


if __name__ == "__main__":
    raise SystemExit(main())
