"""``hydra/launcher=ray``: the jobs of a sweep as Ray tasks (see ray_launcher.py)."""
