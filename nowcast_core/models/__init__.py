"""The model life cycle: the registry of model files (``registry``), which forecaster is in
production and its fallback (``production``), offline evaluation of forecasters on folders of
scans (``evaluation``), and retraining with its promotion gate (``retrain``)."""
