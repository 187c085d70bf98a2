"""Sir Convert-a-Lot: a watch-folder daemon that turns PDFs into Markdown on the GPU."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sir-convert-a-lot")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

API_VERSION = "v1"
