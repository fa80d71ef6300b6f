"""Launch: a sweep's life in the launching process. Resume, batches, worker loss and
take-over (:mod:`.sweep`), successive halving (:mod:`.halving`, :mod:`.asha`), the joblib
workers' set-up (:mod:`.workers`)."""
