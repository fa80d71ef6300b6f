"""The study's reproduction: its protocol and published numbers (:mod:`.protocol`), the
findings judged against our runs (:mod:`.findings`), the evidence kept in the repository
(:mod:`.evidence`), the controlled timing pass (:mod:`.timing`) and ``REPORT.md``
(:mod:`.document`)."""
