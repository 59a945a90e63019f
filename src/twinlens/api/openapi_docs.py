"""OpenAPI details FastAPI cannot infer: the job endpoint's three request encodings,
problem+json error bodies, each installed plugin's typed result and inputs, `/metrics` as
Prometheus text, and the limits this server enforces (from its settings).

Post-processing only: the document describes what the routes already do; no URL, status
code or body changes here.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic.json_schema import models_json_schema

from twinlens.api.problems import PROBLEM_JSON, Problem
from twinlens.api.result_schemas import (
    REF,
    PluginSchemas,
    plugin_schemas,
    ref,
    shared_components,
)
from twinlens.api.schemas import JobCreate
from twinlens.contract.errors import PluginError
from twinlens.contract.plugin import Plugin
from twinlens.contract.registry import default_registry
from twinlens.settings import Settings

log = logging.getLogger(__name__)
Schema = dict[str, Any]

_TEXT_FORM: Schema = {
    "type": "object",
    "description": "Texts only (no image): the same fields as multipart without `image`.",
    "properties": {
        "text": {"type": "string"},
        "metadata": {"type": "string", "description": "A JSON object"},
        "webhook_url": {"type": "string"},
    },
    "additionalProperties": {"type": "string"},
}

JOB_REQUEST_BODY: Schema = {
    "requestBody": {
        "required": True,
        "description": "multipart/form-data (image file + text fields) or JSON (base64 image or URL).",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string", "format": "binary",
                                  "description": "The photo or scan. Repeat the part for a case of several images (up to "
                                                 "the plugin's input_schema.image.max_images), or name each part for "
                                                 "its view: image[frontal], image[lateral]"},
                        "views": {"type": "string", "description": "Optional: the view of each `image` part in order, "
                                                                   "comma-separated (frontal,lateral) or a JSON list"},
                        "text": {"type": "string", "description": "The text that came with it"},
                        "metadata": {"type": "string", "description": "A JSON object"},
                        "webhook_url": {"type": "string", "description": "POSTed a signed event on completion"},
                    },
                    "additionalProperties": {"type": "string", "description": "Other named texts of the plugin"},
                },
            },
            "application/json": {"schema": {"$ref": REF.format(model="JobCreate")}},
            "application/x-www-form-urlencoded": {"schema": _TEXT_FORM},
        },
    }
}


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve the post-processed document, built once on first request (by then every
    plugin a deployment installs is registered)."""

    def build() -> Schema:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app, settings)
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def _document(app: FastAPI, settings: Settings) -> Schema:
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    _add_models(schema, [JobCreate, Problem])
    _problem_media_type(schema)
    plugins = _loadable_plugins()
    _plugin_name_parameter(schema, [plugin.name for plugin in plugins])
    _plugin_schemas(schema, plugins, settings)
    _metrics_as_text(schema)
    _document_limits(schema, settings)
    return schema


def _add_models(schema: Schema, models: list[type]) -> None:
    _, definitions = models_json_schema([(model, "validation") for model in models], ref_template=REF)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in definitions.get("$defs", {}).items():
        components.setdefault(name, definition)


def _problem_media_type(schema: Schema) -> None:
    """Error answers are application/problem+json, not application/json."""
    problem_ref = REF.format(model="Problem")
    for operation in _operations(schema):
        for status, response in operation.get("responses", {}).items():
            content = response.get("content", {})
            if status.startswith(("4", "5")) or content.get(PROBLEM_JSON) is not None:
                response["content"] = {PROBLEM_JSON: {"schema": {"$ref": problem_ref}}}


# -- plugins ---------------------------------------------------------------------------


def _plugin_name_parameter(schema: Schema, names: list[str]) -> None:
    """The plugin path parameter stays an open string: a plugin installed later must not
    need a regenerated client. The installed names are examples (fuzzers use them too)."""
    for path, operations in schema.get("paths", {}).items():
        if "{name}" not in path:
            continue
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "name":
                    parameter["schema"]["examples"] = names
                    parameter["description"] = f"A plugin's name (GET /v1/plugins lists them); installed here: {', '.join(names)}"


def _loadable_plugins() -> list[Plugin]:
    registry = default_registry()
    plugins = []
    for name in registry.names():
        try:
            plugins.append(registry.get(name))
        except PluginError as exc:  # GET /v1/plugins lists it with its error; the document just lacks its schemas
            log.error("plugin %s has no schemas in the OpenAPI document: %s", name, exc)
    return plugins


def _plugin_schemas(schema: Schema, plugins: list[Plugin], settings: Settings) -> None:
    components = schema["components"]["schemas"]
    for name, definition in shared_components().items():
        components.setdefault(name, definition)
    published = []
    for plugin in plugins:
        built = plugin_schemas(plugin, components["ResultView"], settings.max_text_chars)
        taken = sorted(set(built.components) & set(components))
        if taken:
            log.error("plugin %s: schema names %s are taken; its result stays untyped in the document", plugin.name, taken)
            continue
        components.update(built.components)
        published.append(built)
    _type_job_results(components, published)
    _type_job_inputs(components, published)
    _name_form_texts(schema, plugins)


def _type_job_results(components: Schema, published: list[PluginSchemas]) -> None:
    """JobView.result: one of the plugins' results. Generated clients try the members in
    order and keep the first that parses, so plugins declaring more tasks come first (their
    required heads rule the others out) and the untyped ResultView comes last: results of a
    plugin installed after the client was generated still parse."""
    ordered = sorted(published, key=lambda built: (-built.task_count, built.plugin))
    shapes = ", ".join(f"`{built.plugin}`: {built.result}" for built in published)
    components["JobView"]["properties"]["result"] = {
        "anyOf": [*(ref(built.result) for built in ordered), ref("ResultView"), {"type": "null"}],
        "description": f"Set once the job succeeded; shaped by the job's `plugin` ({shapes}; any other: ResultView)",
    }


def _type_job_inputs(components: Schema, published: list[PluginSchemas]) -> None:
    """JobCreate.inputs: the typed inputs of the plugin in the path, or JobInputs for any."""
    shapes = ", ".join(f"`{built.plugin}`: {built.inputs}" for built in published)
    components["JobCreate"]["properties"]["inputs"] = {
        "anyOf": [*(ref(built.inputs) for built in published), ref("JobInputs")],
        "description": f"The inputs of the plugin named in the path ({shapes}; any plugin: JobInputs)",
    }


def _name_form_texts(schema: Schema, plugins: list[Plugin]) -> None:
    """Form bodies have one schema for every plugin: say which extra text fields each reads."""
    texts = "; ".join(f"{plugin.name}: {', '.join(plugin.input_schema().text_names)}" for plugin in plugins)
    operation = _operation(schema, "create_job")
    body = operation["requestBody"] = copy.deepcopy(operation["requestBody"])  # shared with the route's openapi_extra
    for encoding in ("multipart/form-data", "application/x-www-form-urlencoded"):
        extra = body["content"][encoding]["schema"]["additionalProperties"]
        extra["description"] = f"The plugin's other named texts ({texts})"


# -- metrics and limits ------------------------------------------------------------------


def _metrics_as_text(schema: Schema) -> None:
    """FastAPI adds an application/json answer to every route; /metrics answers only text."""
    response = schema["paths"]["/metrics"]["get"]["responses"]["200"]
    response["description"] = f"Prometheus text exposition format ({CONTENT_TYPE_LATEST})"
    response["content"] = {"text/plain": {"schema": {"type": "string"}}}


def _document_limits(schema: Schema, settings: Settings) -> None:
    create_job = _operation(schema, "create_job")
    create_job["description"] = _job_limits(settings)
    _document_cap(_parameter(create_job, "wait"), settings.max_wait_seconds,
                  "Seconds to wait for the result; this server waits at most {cap:g} s")
    for operation in _operations(schema):
        if _has_parameter(operation, "cursor") and _has_parameter(operation, "limit"):
            _document_cap(_parameter(operation, "limit"), settings.page_size_limit, "Items per page; at most {cap} come back")


def _document_cap(parameter: Schema, cap: float, text: str) -> None:
    """The server caps these values below what it accepts (no 422 for a larger one), so
    the schema keeps the accepted maximum and the description tells the cap."""
    accepted = parameter["schema"].get("maximum")
    description = text.format(cap=min(cap, accepted) if accepted is not None else cap)
    if accepted is not None and cap < accepted:
        description += f" (up to {accepted:g} is accepted, and capped)"
    parameter["description"] = parameter["schema"]["description"] = description


def _job_limits(settings: Settings) -> str:
    return (
        "Limits on this server: an image of at most "
        f"{settings.max_upload_bytes} bytes and {settings.max_image_pixels} pixels (413 beyond), "
        f"each text at most {settings.max_text_chars} characters (or the plugin's own lower limit), "
        f"metadata at most {settings.max_metadata_bytes} bytes as JSON, "
        f"the images of one job together at most {settings.max_images_total_bytes} bytes (413 beyond), "
        f"the whole request at most {settings.max_request_bytes} bytes (413 beyond); "
        f"`wait` waits at most {settings.max_wait_seconds:g} s."
    )


# -- lookups -----------------------------------------------------------------------------


def _operations(schema: Schema) -> list[Schema]:
    return [operation for operations in schema.get("paths", {}).values() for operation in operations.values()]


def _operation(schema: Schema, operation_id: str) -> Schema:
    for operation in _operations(schema):
        if operation.get("operationId") == operation_id:
            return operation
    raise LookupError(f"no operation {operation_id!r} in the OpenAPI document")


def _has_parameter(operation: Schema, name: str) -> bool:
    return any(parameter.get("name") == name for parameter in operation.get("parameters", []))


def _parameter(operation: Schema, name: str) -> Schema:
    for parameter in operation.get("parameters", []):
        if parameter.get("name") == name:
            return parameter
    raise LookupError(f"operation {operation.get('operationId')!r} has no parameter {name!r}")
