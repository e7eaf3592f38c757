"""Errors of the loader. The CLI maps each to an exit code and a message."""


class EachlabsError(Exception):
    """Base class of every error this package raises on purpose."""


class AuthError(EachlabsError):
    """The API refused the key (401). Fatal: nothing can be loaded with this key."""


class ConfigError(EachlabsError):
    """A setting is missing or invalid."""


class LockedError(EachlabsError):
    """Another process holds the DuckDB file (our load lock or DuckDB's own file lock)."""


class InvalidIdError(EachlabsError):
    """An execution ID is not a single safe URL path segment; it is never sent."""


class FetchError(EachlabsError):
    """One execution could not be fetched.

    Attributes:
        http_status: The last HTTP status, or None for network errors.
        attempts: How many requests were made for this execution.
    """

    def __init__(self, message: str, http_status: int | None, attempts: int) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.attempts = attempts


class NotFoundError(FetchError):
    """The API does not know the execution (404)."""


class TransientError(FetchError):
    """Rate limiting, server errors, time-outs or dropped connections that outlived the retries.

    Attributes:
        has_reached_server: False when no attempt even connected (refused, unknown host).
    """

    def __init__(
        self,
        message: str,
        http_status: int | None,
        attempts: int,
        *,
        has_reached_server: bool = True,
    ) -> None:
        super().__init__(message, http_status, attempts)
        self.has_reached_server = has_reached_server


class PayloadError(EachlabsError):
    """A payload is not a usable execution.

    Raised where payloads are read and normalised, which know nothing of HTTP: the fetch layer
    records it with the HTTP status and attempts (see `UnusableBodyError`).
    """


class UnusableBodyError(FetchError, PayloadError):
    """The API answered (200) with a body that is not a usable execution: a PayloadError as
    the fetch layer records it, with the HTTP status and how many attempts were made."""


class ViewError(Exception):
    """Base class for problems with the view files or with applying them (`pipelines.views`)."""
