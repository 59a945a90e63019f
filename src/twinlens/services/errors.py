"""Service-level failures, each carrying the HTTP status the API answers with."""

from __future__ import annotations

from typing import Any

from twinlens.contract.errors import TwinLensError


class ServiceError(TwinLensError):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extensions: Any):
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class Unauthorized(ServiceError):
    status = 401
    title = "Unauthorized"


class Forbidden(ServiceError):
    status = 403
    title = "Forbidden"


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class Unprocessable(ServiceError):
    status = 422
    title = "Unprocessable request"


class ServiceUnavailable(ServiceError):
    status = 503
    title = "Service unavailable"
