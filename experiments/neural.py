"""The paper's neural-network experiments (section 5.2): see ``coreselect reproduce neural -h``.

Example: ``python experiments/neural.py --dataset fashion-mnist --budgets 2000 --reps 20``.
"""

from __future__ import annotations

from coreselect.experiments.neural import main

if __name__ == "__main__":
    raise SystemExit(main())
