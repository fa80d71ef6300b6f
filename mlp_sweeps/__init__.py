"""mlp-sweeps' orchestration layer: Hydra schema, sweeps and MLflow tracking around the
NumPy core in :mod:`mlp` (which knows nothing about them)."""
