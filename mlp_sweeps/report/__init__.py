"""Report: what users read. Live progress and a sweep's closing summary (:mod:`.progress`),
``mlp-export`` (:mod:`.export`), and the reproduction of the study (:mod:`.study`)."""
