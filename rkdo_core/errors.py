"""The suite's own exceptions that cross layers, torch-free so the command line can catch
them without importing torch. (:class:`rkdo_core.config.ConfigError` lives with the
configuration it validates.)"""

from __future__ import annotations


class DatasetUnavailableError(RuntimeError):
    """A dataset's files are missing or corrupt and could not be downloaded.

    The message names the dataset, the folder looked in, the files expected there, which of
    them are missing or fail their checksum, and how to obtain them. The original error is
    chained as ``__cause__``. A plain ``RuntimeError`` subclass with a single message
    argument, so it pickles across processes (the grid runs on Dask).
    """


class NonFiniteLossError(RuntimeError):
    """Training diverged: the loss, the gradient norm or the weights became NaN or infinite
    (training/train.py checks all three). The message names the step (and epoch) and what
    became non-finite; the run is not marked complete."""
