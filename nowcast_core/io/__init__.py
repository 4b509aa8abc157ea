"""Files in and out: the radar feed's scan contract (``frames``, ``scale``), forecast windows
(``sequences``), stored forecast fields (``fields``), synthetic scans (``sample``) and
crash-safe writes (``files``)."""

from nowcast_core.io.errors import (
    FAULT_KINDS,
    MAYBE_INCOMPLETE_KINDS,
    FrameError,
    NotReadyError,
)
from nowcast_core.io.frames import (
    Frame,
    ScanFile,
    consecutive_windows,
    frame_file_name,
    read_bounded,
    read_folder,
    read_frame,
    read_scan,
    scan_time_from_name,
)
from nowcast_core.io.scale import (
    dbz_to_pixel,
    dbz_to_rain_rate,
    pixel_to_dbz,
    pixel_to_rain_rate,
    rain_rate_to_dbz,
    rain_rate_to_pixel,
)

__all__ = [
    "FAULT_KINDS",
    "MAYBE_INCOMPLETE_KINDS",
    "ScanFile",
    "read_bounded",
    "read_scan",
    "consecutive_windows",
    "frame_file_name",
    "read_folder",
    "Frame",
    "FrameError",
    "NotReadyError",
    "read_frame",
    "scan_time_from_name",
    "pixel_to_dbz",
    "dbz_to_pixel",
    "dbz_to_rain_rate",
    "rain_rate_to_dbz",
    "pixel_to_rain_rate",
    "rain_rate_to_pixel",
]
