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

_TEXT_FORM: dict[str, Any] = {
    "type": "object",
    "description": "Texts only (no image): the same fields as multipart without `image`.",
    "properties": {
        "text": {"type": "string"},
        "metadata": {"type": "string", "description": "A JSON object"},
        "webhook_url": {"type": "string"},
    },
    "additionalProperties": {"type": "string"},
}

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
            "application/x-www-form-urlencoded": {"schema": _TEXT_FORM},
        },
    }
}


def install_openapi(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _add_models(schema, [JobCreate, Problem])
            _problem_media_type(schema)
            _plugin_names(schema)
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


def _plugin_names(schema: dict[str, Any]) -> None:
    """List the installed plugins as the `name` path parameter's values, so generated
    clients (and fuzzers) know which names exist on this server."""
    from twinlens.contract.registry import default_registry

    names = default_registry().names()
    for path, operations in schema.get("paths", {}).items():
        if "{name}" not in path:
            continue
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "name":
                    parameter["schema"] = {"type": "string", "enum": names, "title": "Name"}
