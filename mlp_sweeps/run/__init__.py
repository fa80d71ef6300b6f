"""Run: one job where it runs. The job from a composed config around the NumPy core
(:mod:`.job`), the run's life in the store (:mod:`.tracked`), and what the job sends back to
the launching process (:mod:`.job_return`)."""
