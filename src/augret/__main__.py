"""``python -m augret`` runs the CLI (also what ``torchrun -m augret`` needs)."""

import sys

from augret.cli.main import main

sys.exit(main())
