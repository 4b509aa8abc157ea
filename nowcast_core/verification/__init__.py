"""Verification: additive counts and scores in one key scheme (``scores``), verification stored per
run and lead with skill aggregated from it (``stored``)."""
