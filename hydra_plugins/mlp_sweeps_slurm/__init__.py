"""``hydra/launcher=slurm``: the jobs of a sweep as a SLURM job array (see slurm_launcher.py)."""
