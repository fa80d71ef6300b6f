"""Plan: from a sweep file and a command line to jobs, before anything is recorded. What a grid
is (:mod:`.jobs`), what a search space is and how it is drawn (:mod:`.space`,
:mod:`.samplers`), what every option may be (:mod:`.options`, :mod:`.schema`), how the
cores are split (:mod:`.parallelism`), what a job costs (:mod:`.estimate`)."""
