"""Where a model computes: the one place that parses ``device=`` and says what is available.

The backend contract:

* ``"cpu"`` is always available: the compiled core ``gprat._core``.
* ``"cuda"`` / ``"cuda:N"`` is the optional CUDA backend, a separate extension module
  ``gprat._cuda`` built when CMake finds a CUDA toolkit and imported only when a device is asked
  for, so a package built with CUDA still imports and runs on a machine without a GPU. It must
  provide ``device_count() -> int``.
* A model takes ``device=`` in its constructor and calls :func:`require` once; every face (the
  estimator, the GPRat API) maps its own arguments onto a device string and goes through the
  model. Nothing else probes for backends.
"""

import functools
import importlib
import importlib.util
import operator
from dataclasses import dataclass

from .exceptions import BackendUnavailableError

__all__ = ["Device", "parse_device", "require", "engine_module", "engine_class", "cuda_available", "cuda_built",
           "cuda_device_count", "cuda_status", "device_from_gpu_id"]


@dataclass(frozen=True)
class Device:
    """A compute device: ``kind`` is ``"cpu"`` or ``"cuda"``, ``index`` the CUDA device (0 for the CPU)."""

    kind: str
    index: int = 0

    def __str__(self):
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"


def parse_device(device):
    """Parse ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a :class:`Device`.

    Raises
    ------
    TypeError
        For anything but a str or a Device.
    ValueError
        For another string, or a negative device index.
    """
    if isinstance(device, Device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
    text = device.strip().lower()
    if text == "cpu":
        return Device("cpu")
    if text == "cuda":
        return Device("cuda", 0)
    if text.startswith("cuda:"):
        try:
            index = operator.index(int(text[5:]))
        except ValueError:
            index = -1
        if index >= 0:
            return Device("cuda", index)
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N' with N >= 0; got {device!r}")


def _cuda_module():
    """The CUDA extension module, or (None, reason) when it cannot be loaded."""
    try:
        return importlib.import_module("gprat._cuda"), None
    except ModuleNotFoundError:
        return None, "this build of gprat has no CUDA backend (it was built without a CUDA toolkit)"
    except ImportError as error:  # built, but the CUDA libraries are missing here
        return None, f"the CUDA backend of this gprat cannot be loaded here: {error}"


def cuda_built():
    """bool: whether this installation includes the CUDA backend module (it may still fail to load)."""
    return importlib.util.find_spec("gprat._cuda") is not None


def cuda_device_count():
    """int: number of CUDA devices the CUDA backend sees (0 without the backend or a GPU)."""
    module, _ = _cuda_module()
    return 0 if module is None else int(module.device_count())


def cuda_available():
    """bool: whether ``device="cuda"`` can be used (backend built and loadable, and a GPU present)."""
    return cuda_device_count() > 0


def require(device):
    """Return the parsed device after checking it is usable.

    Raises
    ------
    BackendUnavailableError
        For a CUDA device when the backend is not built or cannot load, or the index is not
        below the number of devices; the message says why.
    """
    parsed = parse_device(device)
    if parsed.kind == "cpu":
        return parsed
    module, reason = _cuda_module()
    if module is None:
        raise BackendUnavailableError(f"device={str(parsed)!r} is not available: {reason}; use device='cpu'")
    count = int(module.device_count())
    if parsed.index >= count:
        why = getattr(module, "device_status", lambda: "")() if count == 0 else ""
        raise BackendUnavailableError(
            f"device={str(parsed)!r} is not available: the CUDA backend sees {count} device(s)"
            + (f" ({why})" if why else "") + "; use device='cpu'"
            + ("" if count == 0 else f" or an index below {count}")
        )
    return parsed


def cuda_status():
    """str: why ``device="cuda"`` cannot be used here, or ``""`` when it can.

    Examples
    --------
    >>> isinstance(cuda_status(), str)
    True
    """
    module, reason = _cuda_module()
    if module is None:
        return reason
    if int(module.device_count()) > 0:
        return ""
    return getattr(module, "device_status", lambda: "no CUDA device")() or "no CUDA device"


def device_from_gpu_id(gpu_id=None, n_units=None):
    """The device string of GPRat's ``gpu_id`` / ``n_units`` arguments.

    GPRat's GPU build takes ``gpu_id`` (the CUDA device) and ``n_units`` (its number of streams);
    ``gpu_id=None`` is the CPU. Returns ``(device, streams)``: ``"cuda:<gpu_id>"`` or ``"cpu"``,
    and ``n_units`` (None for the backend's default).

    Raises
    ------
    ValueError
        For a negative gpu_id or an n_units below 1.

    Examples
    --------
    >>> device_from_gpu_id(1, 32)
    ('cuda:1', 32)
    >>> device_from_gpu_id()
    ('cpu', None)
    """
    if gpu_id is None:
        return "cpu", None
    gpu_id = operator.index(gpu_id)
    if gpu_id < 0:
        raise ValueError(f"gpu_id must be a CUDA device index >= 0; got {gpu_id}")
    if n_units is not None:
        n_units = operator.index(n_units)
        if n_units < 1:
            raise ValueError(f"n_units (CUDA streams) must be >= 1; got {n_units}")
    return f"cuda:{gpu_id}", n_units


def engine_module(device):
    """The extension module that computes on `device` (a parsed, usable :class:`Device`)."""
    if device.kind == "cpu":
        from . import _core

        return _core
    return _cuda_module()[0]


def engine_class(device, name, streams=None):
    """The compiled class `name` (e.g. ``"ExactGP64"``) of the backend of `device`.

    For a CUDA device the class is bound to the device index (and to `streams`, the CUDA streams
    its tiles are spread over; None: the backend's default): it is called with the same
    arguments as the CPU engine, so a model passes ``device`` here and nowhere else.

    Raises
    ------
    BackendUnavailableError
        If that backend does not provide it.
    """
    cls = getattr(engine_module(device), name, None)
    if cls is None:
        raise BackendUnavailableError(f"the {device.kind} backend of this gprat has no {name}; use device='cpu'")
    if device.kind == "cuda":
        return _on_device(cls, device.index, streams)
    return cls


@functools.lru_cache(maxsize=None)
def _on_device(cls, index, streams):
    """A subclass of the CUDA engine `cls` whose constructor fills in device= (and streams=)."""
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("device", index)
        if streams is not None:
            kwargs.setdefault("streams", streams)
        cls.__init__(self, *args, **kwargs)

    return type(cls.__name__, (cls,), {"__init__": __init__, "__module__": cls.__module__,
                                        "__doc__": f"{cls.__name__} on cuda:{index}"})
