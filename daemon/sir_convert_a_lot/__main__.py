"""``python -m sir_convert_a_lot`` is the same as ``sir-convert``."""

from sir_convert_a_lot.ops.cli import main

raise SystemExit(main())
