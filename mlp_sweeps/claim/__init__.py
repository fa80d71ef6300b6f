"""Claim: which run counts for a configuration, who trains it and when a run is dead. The
ledger in the tracking store (:mod:`.ledger`) and the heartbeat (:mod:`.liveness`), read and
written the same way by every launcher, on every host."""
