"""selfrepair: language models that repair code and learn from their own repairs."""


def __getattr__(name: str) -> str:
    # Looked up on first use, not at import: the command's entry point imports this package
    # before it can handle Ctrl-C, so that moment is kept as short as can be.
    if name != "__version__":
        raise AttributeError(f"module 'selfrepair' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("selfrepair")
    except PackageNotFoundError:  # running from a checkout that is not installed
        return "0.0.0+unknown"
