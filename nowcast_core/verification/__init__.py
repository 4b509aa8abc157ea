"""Verification: additive counts and scores in one key scheme (``scores``), structure scores (FSS,
area at 5 mm/h) as additive sums in the same scheme (``structure``, offline evaluation only so far),
verification stored per run and lead with skill aggregated from it (``stored``)."""
