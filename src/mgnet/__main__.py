"""``python -m mgnet``: the ``mgnet`` command."""

import sys

from mgnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
