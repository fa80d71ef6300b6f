"""What a job costs before it runs: each job's run time and the sweep's wall time, from what
each configuration computes, this machine's measured kernel times and the runs already in
the store. One cost model: it sets the order jobs launch in and prints the estimate for that
order.

1. :mod:`.work` (pure): what one configuration computes, as counts of kernels a run executes.
2. :mod:`.rates`: each kernel timed once on this machine, as a job of its thread count runs
   it, cached per machine and BLAS kernel (:mod:`.machine`); the floor of a run is the sum of
   its kernels' times.
3. :mod:`.ratios`: real run time over the floor, learned from the runs in the store;
   :mod:`.load`: how busy the machine is now, and the share of the cores the sweep's threads
   will get.
4. :mod:`.schedule`: the jobs longest first over the workers, the printed estimate
   (:func:`~.schedule.for_jobs`, :meth:`~.schedule.Estimate.lines`).
"""
