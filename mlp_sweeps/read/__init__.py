"""Read: runs as frames, read-only (:mod:`.results`), the one comparison table
(:mod:`.tables`) and the figures (:mod:`.figures`)."""
