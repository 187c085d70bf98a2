"""The v1 error codes, and the one exception type that carries them through the pipeline.

Every failure a user can see ends as one of these codes in a ``<stem>.error.json``. Whether the
same file may succeed later (``retryable``) is a property of the code, not of the call site, so
it lives here once.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    GPU_NOT_AVAILABLE = "gpu_not_available"
    VALIDATION_ERROR = "validation_error"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    PDF_UNREADABLE = "pdf_unreadable"
    # The same as pdf_unreadable for the other formats: empty, corrupt or truncated.
    DOCUMENT_UNREADABLE = "document_unreadable"
    PDF_ENCRYPTED = "pdf_encrypted"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    TOO_MANY_PAGES = "too_many_pages"
    CONVERSION_TIMEOUT = "conversion_timeout"
    WORKER_CRASHED = "worker_crashed"
    CONVERSION_INTERNAL_ERROR = "conversion_internal_error"

    @property
    def retryable(self) -> bool:
        """True when the same, unchanged file may succeed on a later try."""
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {
        ErrorCode.GPU_NOT_AVAILABLE,
        ErrorCode.CONVERSION_TIMEOUT,
        ErrorCode.WORKER_CRASHED,
        ErrorCode.CONVERSION_INTERNAL_ERROR,
    }
)


class JobFailure(Exception):
    """A job ended in a known failure: the code, one plain sentence, and machine details."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details

    def __reduce__(self) -> tuple[Any, ...]:
        # Crosses the worker pipe; keyword details need an explicit reduction.
        return (_rebuild_failure, (self.code.value, self.message, self.details))


def _rebuild_failure(code: str, message: str, details: dict[str, Any]) -> JobFailure:
    return JobFailure(ErrorCode(code), message, **details)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key. Exit code 2."""
