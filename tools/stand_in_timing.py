"""Pages/s of docling's standard PDF pipeline with a stand-in model folder, in one warm process.

Usage: python tools/stand_in_timing.py MODELS_DIR PDF [PDF ...] [--device cpu|cuda]
    [--mode accurate|fast]

Warms up on the first PDF, then converts every PDF once and prints one JSON line: pages, seconds,
pages/s, and how many tables docling found (so a run where TableFormer never ran shows up).
OCR is off, as in the daemon's benchmark configs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def _converter(models: Path, device: str, mode: str) -> Any:
    from docling.datamodel.accelerator_options import AcceleratorOptions
    from docling.datamodel.base_models import InputFormat
    from docling.datamodel.pipeline_options import PdfPipelineOptions, TableFormerMode
    from docling.document_converter import DocumentConverter, PdfFormatOption

    options = PdfPipelineOptions(artifacts_path=models, do_ocr=False, do_table_structure=True)
    options.table_structure_options.mode = TableFormerMode(mode)
    options.accelerator_options = AcceleratorOptions(device=device)
    return DocumentConverter(
        format_options={InputFormat.PDF: PdfFormatOption(pipeline_options=options)}
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", type=Path)
    parser.add_argument("pdfs", type=Path, nargs="+")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", default="accurate", choices=("accurate", "fast"))
    args = parser.parse_args()
    converter = _converter(args.models, args.device, args.mode)
    converter.convert(args.pdfs[0])  # load the models and warm up
    pages = tables = 0
    start = time.perf_counter()
    for pdf in args.pdfs:
        document = converter.convert(pdf).document
        pages += document.num_pages()
        tables += len(document.tables)
    seconds = time.perf_counter() - start
    result = {
        "models": str(args.models),
        "device": args.device,
        "table_mode": args.mode,
        "pages": pages,
        "tables": tables,
        "seconds": round(seconds, 2),
        "pages_per_second": round(pages / seconds, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
