"""Model files: what ``gprat fit`` writes and ``gprat predict`` reads (format in
:mod:`gprat.io.model_file`; composed kernels are stored as the JSON description of
:mod:`gprat.io.kernel_description`)."""

from .model_file import FORMAT_NAME, FORMAT_VERSION, MODEL_TYPES, GPModel, ModelFileError, load_model

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MODEL_TYPES", "GPModel", "ModelFileError", "load_model"]
