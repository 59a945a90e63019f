"""OpenAPI details FastAPI cannot infer: the job endpoint's two request encodings and
problem+json error bodies."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from twinlens.api.problems import PROBLEM_JSON, Problem
from twinlens.api.schemas import JobCreate

_REF = "#/components/schemas/{model}"

JOB_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "multipart/form-data (image file + text fields) or JSON (base64 image or URL).",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string", "format": "binary", "description": "The photo or scan"},
                        "text": {"type": "string", "description": "The text that came with it"},
                        "metadata": {"type": "string", "description": "A JSON object"},
                        "webhook_url": {"type": "string", "description": "POSTed a signed event on completion"},
                    },
                    "additionalProperties": {"type": "string", "description": "Other named texts of the plugin"},
                },
            },
            "application/json": {"schema": {"$ref": _REF.format(model="JobCreate")}},
        },
    }
}


def install_openapi(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _add_models(schema, [JobCreate, Problem])
            _problem_media_type(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def _add_models(schema: dict[str, Any], models: list[type]) -> None:
    _, definitions = models_json_schema([(model, "validation") for model in models], ref_template=_REF)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in definitions.get("$defs", {}).items():
        components.setdefault(name, definition)


def _problem_media_type(schema: dict[str, Any]) -> None:
    """Error answers are application/problem+json, not application/json."""
    problem_ref = _REF.format(model="Problem")
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status.startswith(("4", "5")) or content.get(PROBLEM_JSON) is not None:
                    response["content"] = {PROBLEM_JSON: {"schema": {"$ref": problem_ref}}}
