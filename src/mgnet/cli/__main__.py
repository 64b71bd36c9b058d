"""``python -m mgnet.cli``: the ``mgnet`` command (what ``torchrun -m mgnet.cli`` runs)."""

import sys

from mgnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
