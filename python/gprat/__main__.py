"""``python -m gprat``: the same as the ``gprat`` command (see :mod:`gprat.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
