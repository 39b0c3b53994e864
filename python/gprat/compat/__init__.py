"""Compatibility faces for code written against other libraries: :mod:`~gprat.compat.gprat`
is GPRat's Python API on gprat's engine."""
