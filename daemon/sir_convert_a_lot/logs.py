"""Structured logging, configured in one place: one event per line with ``event``, ``job_id``
and ``source``; readable on a terminal, JSON lines elsewhere, and journal entries with their own
fields (``JOB_ID=``, ``SOURCE=``, ``EVENT=``, ``INSTANCE=``, ``CODE=``...) when systemd connected
stderr to the journal, so ``journalctl -u sir-convert@0 JOB_ID=job_...`` tells one job's story.

File names come from whoever can write the inbox, so every string value is escaped before it is
rendered: a name holding a newline or a terminal escape cannot forge or garble a log line.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from sir_convert_a_lot.names import display
from sir_convert_a_lot.systemd import (
    JournalWriter,
    encode_journal_entry,
    journal_field_name,
    stderr_is_journal,
)

SYSLOG_IDENTIFIER = "sir-convert"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "exception": 3, "critical": 2}
_MESSAGE_KEYS = ("source", "code", "message", "reason", "error")


def escape_values(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Escape control characters and undecodable bytes in every string value."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = display(value)
    return event_dict


def journal_fields(event_dict: Mapping[str, Any]) -> dict[str, str]:
    """A journal entry for one event: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, and every key as a
    field of its own (non-strings as JSON)."""
    level = str(event_dict.get("level", "info"))
    event = str(event_dict.get("event", ""))
    summary = " ".join(
        f"{key}={event_dict[key]}" for key in _MESSAGE_KEYS if event_dict.get(key) is not None
    )
    fields = {
        "MESSAGE": f"{event} {summary}".strip(),
        "PRIORITY": str(_PRIORITIES.get(level, 6)),
        "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
    }
    for key, value in event_dict.items():
        if key in ("level", "timestamp"):
            continue
        rendered = value if isinstance(value, str) else json.dumps(value, default=str)
        name = journal_field_name(key)
        if name in fields:  # an event's own "message" must not replace the entry's MESSAGE
            name = journal_field_name(f"event_{key}")
        fields[name] = rendered
    return fields


class _JournalLogger:
    """A structlog logger whose messages are ready-made journal entries."""

    def __init__(self, writer: JournalWriter) -> None:
        self.writer = writer

    def msg(self, entry: bytes) -> None:
        try:
            self.writer.write(entry)
        except OSError:
            sys.stderr.write(entry.decode("utf-8", errors="replace"))

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def render_journal(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> bytes:
    return encode_journal_entry(journal_fields(event_dict))


class _JournalHandler(logging.Handler):
    """Library records (standard logging) as journal entries."""

    def __init__(self, writer: JournalWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        event = {
            "event": display(record.getMessage()),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        try:
            self.writer.write(encode_journal_entry(journal_fields(event)))
        except OSError:
            self.handleError(record)


def configure(
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    library_level: int = logging.WARNING,
) -> None:
    """``fmt``: ``auto`` (journal under systemd, console on a terminal, else JSON), ``journal``,
    ``console`` or ``json``."""
    out: TextIO = stream or _CurrentStderr()  # type: ignore[assignment]
    if fmt == "journal" or (fmt == "auto" and stream is None and stderr_is_journal()):
        _configure_journal(level, library_level)
        return
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if use_console
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    _route_standard_logging(out, _shared(), renderer, library_level)
    structlog.configure(
        processors=[*_shared(), escape_values, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at the time of writing, not at the time of configuring
    (test runners and daemonising tools swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _shared() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _configure_journal(level: str, library_level: int) -> None:
    writer = JournalWriter()
    handler = _JournalHandler(writer)
    handler.addFilter(lambda record: record.levelno >= library_level)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(library_level)
    structlog.configure(
        processors=[*_shared(), escape_values, render_journal],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=lambda *_args: _JournalLogger(writer),
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


def bind(**values: Any) -> None:
    """Fields every later event of this process carries (the instance name)."""
    structlog.contextvars.bind_contextvars(**values)


def get(name: str = "sir_convert_a_lot") -> Any:
    return structlog.get_logger(name)
