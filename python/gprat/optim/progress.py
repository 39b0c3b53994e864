"""Progress of long runs on stderr, through tqdm: iteration, loss and elapsed time."""

import sys

from tqdm.auto import tqdm

__all__ = ["Progress"]

#: label |#####     | iteration 3/30, loss 1.234  elapsed 00:02  (tqdm writes ", " before the postfix)
_FORMAT = "{desc} |{bar:20}| iteration {n_fmt}/{total_fmt}{postfix}  elapsed {elapsed}"


class Progress:
    """A progress bar of `total` iterations showing the loss; silent when not `enabled`.

    Parameters
    ----------
    enabled : bool
    total : int or None
    desc : str, default="optimize"
        Label in front of the bar.
    stream : file-like or None
        Default: ``sys.stderr``.
    """

    def __init__(self, enabled, total, desc="optimize", stream=None):
        self._bar = None
        if enabled:
            self._bar = tqdm(total=total, desc=desc, file=stream if stream is not None else sys.stderr,
                             leave=False, ncols=100, bar_format=_FORMAT, postfix="loss -",
                             mininterval=0.0)  # every iteration is a full training step: show each

    def update(self, iteration, loss=None):
        """Move the bar to `iteration` and show `loss`."""
        if self._bar is None:
            return
        if loss is not None:
            self._bar.set_postfix_str(f"loss {loss:.6g}", refresh=False)
        self._bar.update(max(iteration - self._bar.n, 0))

    def close(self):
        """End the bar's line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
