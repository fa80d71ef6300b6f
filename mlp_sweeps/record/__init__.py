"""Record: the only importers of MLflow. How a store is opened (:mod:`.store`), the tracker
that writes runs (:mod:`.tracking`), the read-only snapshot read straight from SQLite
(:mod:`.snapshot`), and a machine's faults named once (:mod:`.faults`)."""
