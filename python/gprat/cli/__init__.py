"""The ``gprat`` command (also ``python -m gprat``): :mod:`~gprat.cli.main` parses and
dispatches, :mod:`~gprat.cli.demo`, :mod:`~gprat.cli.fit` and :mod:`~gprat.cli.predict` are
the subcommands, :mod:`~gprat.cli.common` what they share."""

from ..io import GPModel
from .common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from .main import build_parser, main

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "GPModel", "build_parser", "main"]
