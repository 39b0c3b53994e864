"""The scale the gallery scripts run at: ``GPRAT_EXAMPLE_SCALE`` = ``docs`` (default) or ``full``.

``docs`` keeps every script under a minute on two cores (the documentation build uses it);
``full`` is the scale each script's header names.
"""

import os

SCALES = ("docs", "full")


def example_scale():
    """``"docs"`` or ``"full"``, from ``GPRAT_EXAMPLE_SCALE`` (default ``"docs"``)."""
    scale = os.environ.get("GPRAT_EXAMPLE_SCALE", "docs").strip().lower()
    if scale not in SCALES:
        raise ValueError(f"GPRAT_EXAMPLE_SCALE must be one of {', '.join(SCALES)}; got {scale!r}")
    return scale


def pick(docs, full):
    """`docs` at documentation scale, `full` at full scale."""
    return docs if example_scale() == "docs" else full
