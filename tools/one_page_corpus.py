"""Write a backlog of one-page PDFs cut from real documents: the share full of small files that
leaves a GPU idle when pages are batched only within one document.

Usage:
    .venv/bin/python tools/one_page_corpus.py OUTPUT_DIR [--count 48] [--source DIR]

Pages are taken in order from every PDF of the source folder (sorted by name), cycling when
the count is larger than the pages there (default source: fixtures/benchmark_pdfs); each
becomes ``page-NNNN.pdf``. Deterministic.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pymupdf

from toolkit import REPO


def write_backlog(source: Path, output: Path, count: int) -> list[Path]:
    """``count`` one-page PDFs in ``output``, cut from the pages of ``source``'s PDFs."""
    pages: list[tuple[Path, int]] = []
    for pdf in sorted(source.glob("*.pdf")):
        with pymupdf.open(pdf) as document:
            pages.extend((pdf, number) for number in range(document.page_count))
    if not pages:
        raise SystemExit(f"one_page_corpus: no PDF pages under {source}")
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(count):
        pdf, number = pages[index % len(pages)]
        with pymupdf.open(pdf) as document, pymupdf.open() as single:
            single.insert_pdf(document, from_page=number, to_page=number)
            target = output / f"page-{index:04d}.pdf"
            single.save(target, garbage=3, deflate=True)
        written.append(target)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--source", type=Path, default=REPO / "fixtures" / "benchmark_pdfs")
    args = parser.parse_args()
    written = write_backlog(args.source, args.output, args.count)
    print(f"{len(written)} one-page PDFs in {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
