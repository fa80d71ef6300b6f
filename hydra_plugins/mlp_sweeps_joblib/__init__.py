"""``hydra/launcher=mlp_joblib`` (the default): the jobs of a sweep in parallel processes here (see joblib_launcher.py)."""
