"""The inbox: scans validated and archived or quarantined (``ingest``), and scans copied into it (``replay``)."""
