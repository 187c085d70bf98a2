"""Sir Convert-a-Lot: a watch-folder daemon that turns PDFs into Markdown on the GPU."""

API_VERSION = "v1"


def __getattr__(name: str) -> str:
    """``__version__`` on first use: reading the installed package's metadata costs every
    process about 70 ms (importlib.metadata), and most commands never show it."""
    if name == "__version__":
        from sir_convert_a_lot.versions import package_version

        return package_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
