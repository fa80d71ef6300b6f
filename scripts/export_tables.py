"""Export comparison tables and figures of tracked runs; see ``--help``.
Same as the ``mlp-export`` command installed with the package."""

import sys

from mlp_sweeps.report.export import main

if __name__ == "__main__":
    sys.exit(main())
