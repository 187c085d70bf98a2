"""The pictures of one document, as the worker collects them for ``output.images``.

Every picture becomes a PNG that we name ourselves (``picture-0001.png``, in reading order):
nothing the PDF says (names, paths) is used. A hostile PDF could hold thousands of pictures or
huge ones, so a document keeps at most ``MAX_PICTURES`` of them, ``MAX_PICTURE_BYTES`` of PNG in
all, and a picture larger than ``MAX_PICTURE_PIXELS`` is scaled down first. A picture past a
limit is left out (its place in the Markdown stays a placeholder) and the sidecar says how many
with the warning ``pictures_dropped:<dropped>/<found>``.

The Markdown links each kept picture as ``prefix + name``, where the prefix is random for each
document (``new_prefix``): publish, which alone knows the output names, replaces exactly those
links, and a PDF cannot guess the prefix to forge one.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

MAX_PICTURES: Final = 500
MAX_PICTURE_BYTES: Final = 64 * 1024 * 1024
MAX_PICTURE_PIXELS: Final = 16_000_000  # e.g. 4000 x 4000
PICTURE_DPI: Final = 150  # how the pymupdf backend renders a picture's area
PREFIX_HEAD: Final = "sca-picture-"
DROPPED_WARNING: Final = "pictures_dropped"


def new_prefix() -> str:
    """A link prefix no PDF can contain by chance or design (128 random bits)."""
    return f"{PREFIX_HEAD}{secrets.token_hex(16)}/"


def picture_name(number: int) -> str:
    return f"picture-{number:04d}.png"


@dataclass
class PictureSet:
    """Collects one document's pictures within the limits."""

    prefix: str = field(default_factory=new_prefix)
    max_pictures: int = MAX_PICTURES
    max_bytes: int = MAX_PICTURE_BYTES
    pictures: list[tuple[str, bytes]] = field(default_factory=list)
    found: int = 0
    total_bytes: int = 0

    def add(self, png: bytes | None) -> str | None:
        """Keep one picture (``None``: found but not renderable); its link target, or None
        when it is left out."""
        self.found += 1
        if png is None or len(self.pictures) >= self.max_pictures:
            return None
        if self.total_bytes + len(png) > self.max_bytes:
            return None
        name = picture_name(len(self.pictures) + 1)
        self.pictures.append((name, png))
        self.total_bytes += len(png)
        return self.prefix + name

    @property
    def dropped(self) -> int:
        return self.found - len(self.pictures)

    def warnings(self) -> tuple[str, ...]:
        if not self.dropped:
            return ()
        return (f"{DROPPED_WARNING}:{self.dropped}/{self.found}",)


def png_of(image: Any) -> tuple[bytes, tuple[int, int]] | None:
    """A PIL image as PNG and its size, scaled down to at most ``MAX_PICTURE_PIXELS``; None
    when it is empty."""
    width, height = image.size
    if width < 1 or height < 1:
        return None
    if width * height > MAX_PICTURE_PIXELS:
        scale = (MAX_PICTURE_PIXELS / (width * height)) ** 0.5
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        image = image.resize(size)
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P", "1"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), (int(image.size[0]), int(image.size[1]))


def render_area(page: Any, rect: Any) -> bytes | None:
    """PyMuPDF: the page area ``rect`` as PNG at ``PICTURE_DPI``, fewer dots per inch when the
    area would pass ``MAX_PICTURE_PIXELS``; None when the area is empty."""
    import pymupdf

    clip = pymupdf.Rect(rect) & page.rect
    if clip.is_empty or clip.width < 1 or clip.height < 1:
        return None
    dpi = float(PICTURE_DPI)
    pixels = (clip.width * dpi / 72) * (clip.height * dpi / 72)
    if pixels > MAX_PICTURE_PIXELS:
        dpi *= (MAX_PICTURE_PIXELS / pixels) ** 0.5
    pixmap = page.get_pixmap(clip=clip, dpi=max(1, int(dpi)))
    if pixmap.width < 1 or pixmap.height < 1:
        return None
    data: bytes = pixmap.tobytes("png")
    return data
