"""Structured logging, configured in one place: one event per line with ``event``, ``job_id``
and ``source``; readable on a terminal, JSON lines everywhere else.

File names come from whoever can write the inbox, so every string value is escaped before it is
rendered: a name holding a newline or a terminal escape cannot forge or garble a log line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from sir_convert_a_lot.names import display

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def escape_values(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Escape control characters and undecodable bytes in every string value."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = display(value)
    return event_dict


def configure(
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    library_level: int = logging.WARNING,
) -> None:
    out = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if use_console
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    _route_standard_logging(out, shared, renderer, library_level)
    structlog.configure(
        processors=[*shared, escape_values, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def _route_standard_logging(
    out: TextIO, shared: list[Any], renderer: Any, library_level: int
) -> None:
    """Libraries (watchdog, docling) log through the standard library: give their records the
    same shape, one structured line each, instead of bare text on stderr, and only from
    ``library_level`` up (some set their own loggers' levels, so the handler filters)."""
    handler = logging.StreamHandler(out)
    handler.addFilter(lambda record: record.levelno >= library_level)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                escape_values,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(library_level)


def get(name: str = "sir_convert_a_lot") -> Any:
    return structlog.get_logger(name)
