"""The supervisor's claim-time checks on every file of some folders, to compare two checkouts.

Usage:
  PYTHONPATH=<checkout>/daemon .venv/bin/python tools/source_checks_compare.py \
      snapshot OUT.json FOLDER...
  .venv/bin/python tools/source_checks_compare.py diff BEFORE.json AFTER.json

``snapshot`` runs ``jobs.source_checks.inspect_source`` (default options, 50 MiB limit) on each
regular file under the folders, under its own name, and records the code, details and message
(or the size and hash of a file that passes). Run it once with the checkout before a change on
``PYTHONPATH`` and once with the one after. ``diff`` counts what changed, and names every PDF
whose answer changed: a change to the other formats must leave PDFs alone.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path
from typing import Any


def snapshot(folders: list[Path]) -> dict[str, Any]:
    from sir_convert_a_lot.errors import JobFailure
    from sir_convert_a_lot.jobs.source_checks import inspect_source

    answers: dict[str, Any] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            try:
                facts = inspect_source(path, path.name, 50 * 1024 * 1024)
                answers[str(path)] = ["ok", facts.size_bytes, facts.sha256]
            except JobFailure as failure:
                answers[str(path)] = [failure.code.value, failure.details, failure.message]
    return answers


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    changed = {k: (before[k], after[k]) for k in before if after.get(k) != before[k]}
    kinds = collections.Counter(
        f"{old[0]} -> {new[0]}" + (f" ({new[1].get('reason')})" if isinstance(new[1], dict) else "")
        for old, new in changed.values()
    )
    return {
        "files": len(before),
        "pdf_files": sum(k.lower().endswith(".pdf") for k in before),
        "changed": len(changed),
        "changed_pdfs": sorted(k for k in changed if k.lower().endswith(".pdf")),
        "changes": dict(sorted(kinds.items())),
    }


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "snapshot":
        Path(argv[1]).write_text(json.dumps(snapshot([Path(a) for a in argv[2:]]), indent=1))
        return 0
    if len(argv) == 3 and argv[0] == "diff":
        before, after = (json.loads(Path(a).read_text()) for a in argv[1:])
        print(json.dumps(diff(before, after), indent=1))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
