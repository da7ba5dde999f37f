"""Paper Figure 1 (linear regression): same as ``coreselect reproduce regression``."""

from __future__ import annotations

import logging
import sys

from coreselect.experiments.regression import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    raise SystemExit(main())
