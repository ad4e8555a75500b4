"""`python -m training MODULE --data DIR --out DIR ...`: the same as `vton train`, for `accelerate launch -m` and
`torchrun -m` (one process per GPU)."""

import sys

from training.cli import main

sys.exit(main())
