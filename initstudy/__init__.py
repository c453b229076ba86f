"""initstudy: train CNNs under many weight initializers and test the differences."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("initstudy")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "unknown"
