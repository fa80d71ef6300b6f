"""Run: one job where it runs. The tracked run of a composed config around the NumPy core
(:mod:`.job`), and what it sends back to the launching process (:mod:`.job_return`)."""
