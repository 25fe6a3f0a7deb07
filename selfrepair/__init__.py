"""selfrepair: language models that repair code and learn from their own repairs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("selfrepair")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0.0.0+unknown"
