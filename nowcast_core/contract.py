"""The grid in space and time that every part of the system shares (see the feed's spec).

One place for these constants: the scan grid, the scan interval, how many scans a forecast
reads and which leads it makes.
"""

from __future__ import annotations

from datetime import timedelta

#: Rows x columns of every scan and forecast field (row 0 north).
GRID_SHAPE = (120, 120)
#: Time between two scans.
SCAN_INTERVAL = timedelta(minutes=10)
#: Scans a forecast reads: t-30, t-20, t-10 and t.
N_INPUTS = 4
#: Leads a forecast makes: t+10 .. t+60.
N_LEADS = 6
LEAD_MINUTES = tuple(10 * (k + 1) for k in range(N_LEADS))
#: A pixel is wet at or above this rain rate (mm/h): the competition's CSI threshold.
WET_MM_H = 0.1
#: Rain-rate thresholds (mm/h) of verification and of the exceedance fields.
THRESHOLDS_MM_H = (0.1, 1.0, 5.0, 10.0)
