"""The exceptions the client raises: one base class, and one class per kind of refusal."""

from __future__ import annotations

from typing import Optional


class FerryError(Exception):
    """Anything the client could not do."""


class Unreachable(FerryError):
    """The coordinator did not answer (connection refused, timed out, TLS failed)."""


class ApiError(FerryError):
    """The coordinator answered with an error; ``message`` is its own words."""

    status: int
    message: str

    def __init__(self, status: int, message: str, method: str = "", path: str = "") -> None:
        self.status = status
        self.message = message
        self.method = method
        self.path = path
        where = f"{method} {path}".strip()
        where = f"{where}: " if where else ""
        super().__init__(f"{where}{status}: {message}")


class BadRequest(ApiError):
    """400, 413 or 422: the request was malformed, too large, or named something invalid."""


class Unauthorized(ApiError):
    """401: no token, or one the coordinator does not know."""


class Forbidden(ApiError):
    """403: the token's role may not do this."""


class NotFound(ApiError):
    """404: no such release, alias, rollout or device."""


class Conflict(ApiError):
    """409: refused by a rule (an immutable version, a stage check, a rollout in the way)."""


class Unavailable(ApiError):
    """503: the coordinator cannot do it now (e.g. its store is failing); retry later."""


_BY_STATUS = {
    400: BadRequest,
    413: BadRequest,
    422: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    503: Unavailable,
}


def api_error(status: int, message: str, method: str = "", path: str = "") -> ApiError:
    """The exception for an error answer of ``status``."""
    cls = _BY_STATUS.get(status, ApiError)
    return cls(status, message, method, path)


class PublishError(FerryError):
    """``ferryctl publish`` failed; ``stderr`` holds what it said."""

    def __init__(self, message: str, stderr: str = "", exit_code: Optional[int] = None) -> None:
        self.stderr = stderr
        self.exit_code = exit_code
        super().__init__(message)


class Timeout(FerryError):
    """A wait (e.g. for a rollout to finish) ran out of time; ``last`` is the last state seen."""

    def __init__(self, message: str, last: object = None) -> None:
        self.last = last
        super().__init__(message)
