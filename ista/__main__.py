"""`python -m ista` is the `ista` command (containers and `srun python -m ista ...` lines use it)."""

import sys

from ista.cli.main import main

sys.exit(main())
