"""Named OpenAPI schemas per installed plugin: its job result and its job inputs.

A generated client gets one class per plugin (`SupportTicketResult`, `ChestXrayInputs`)
instead of untyped dicts. Every schema is built from what the plugin declares (its label
schema, its input schema) and from the contract's shapes (HeadPrediction, the decision's
`needs_review`), never from a model or the engine, so the API stays torch-free.

The schemas describe bodies the API already sends and accepts; they change no behaviour.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from twinlens.contract.plugin import Plugin
from twinlens.contract.prediction import HeadPrediction
from twinlens.contract.schema import InputSchema, LabelSchema, Task, TextField

REF = "#/components/schemas/{model}"
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": REF.format(model=name)}


class Decision(BaseModel):
    """What the contract guarantees of every plugin's decision; plugins add their own fields."""

    model_config = ConfigDict(extra="allow")
    needs_review: bool = Field(description="A person should look at this job before acting on it")
    review_reason: str | None = Field(None, description="Why, when needs_review is true")


class Explanation(BaseModel):
    """The prediction's explanation fields the worker stores with each result."""

    model_config = ConfigDict(extra="allow")
    contributions: dict[str, float] = Field(description="Share of the decision each present modality carries; sums to 1")
    inputs_present: list[str] = Field(description="The modalities this job carried, e.g. image, text")
    zero_shot: bool = Field(description="The model was not trained on labelled examples")
    extras: dict[str, Any] = Field(description="What the plugin's preprocessing adds (OCR text, input warnings...)")


def shared_components() -> dict[str, Schema]:
    """The schemas every plugin's result refers to."""
    return {
        "HeadPrediction": _json_schema(HeadPrediction),
        "Decision": _json_schema(Decision),
        "Explanation": _json_schema(Explanation),
    }


def _json_schema(shape: type) -> Schema:
    schema = TypeAdapter(shape).json_schema(ref_template=REF)
    schema.pop("$defs", None)  # these shapes nest no other models
    return schema


@dataclass(frozen=True)
class PluginSchemas:
    """One plugin's named components; `result` and `inputs` are their names."""

    plugin: str
    result: str
    inputs: str
    task_count: int
    components: dict[str, Schema]


def schema_prefix(plugin_name: str) -> str:
    """support_ticket -> SupportTicket: the stem of the plugin's component names."""
    parts = [part for part in re.split(r"[^0-9A-Za-z]+", plugin_name) if part]
    stem = "".join(part[:1].upper() + part[1:] for part in parts)
    return stem if stem[:1].isalpha() else f"Plugin{stem}"


def plugin_schemas(plugin: Plugin, result_view: Schema, max_text_chars: int) -> PluginSchemas:
    """The plugin's result (a copy of the generic ResultView with typed heads, decision and
    explanation) and its JSON job inputs (only the texts it reads)."""
    prefix = schema_prefix(plugin.name)
    names = {"result": f"{prefix}Result", "heads": f"{prefix}Heads", "inputs": f"{prefix}Inputs"}
    label_schema = plugin.label_schema()
    decision_components = _decision_components(plugin, f"{prefix}Decision")
    decision = f"{prefix}Decision" if decision_components else "Decision"
    components = {
        **decision_components,
        names["heads"]: _heads_schema(plugin.name, label_schema),
        names["result"]: _result_schema(plugin.name, result_view, title=names["result"], heads=names["heads"], decision=decision),
        names["inputs"]: _inputs_schema(plugin.name, plugin.input_schema(), max_text_chars),
    }
    task_count = len(label_schema.tasks) if label_schema is not None else 0
    return PluginSchemas(plugin.name, names["result"], names["inputs"], task_count, components)


def _result_schema(plugin_name: str, result_view: Schema, *, title: str, heads: str, decision: str) -> Schema:
    result = copy.deepcopy(result_view)
    result.update(title=title, description=f"The result of a `{plugin_name}` job")
    result["properties"].update(heads=ref(heads), decision=ref(decision), explanation=ref("Explanation"))
    return result


def _decision_components(plugin: Plugin, name: str) -> dict[str, Schema]:
    """The plugin's declared decision model and the models it nests, as named components
    (nested ones keep their class names, prefixed so two plugins' rows cannot collide)."""
    model = plugin.decision_model()
    if model is None:
        return {}
    stem = name.removesuffix("Decision")
    template = REF.format(model=f"{stem}{{model}}")
    schema = TypeAdapter(model).json_schema(ref_template=template)
    nested = {f"{stem}{key}": value for key, value in schema.pop("$defs", {}).items()}
    schema["title"] = name
    return {name: schema, **nested}


def _heads_schema(plugin_name: str, label_schema: LabelSchema | None) -> Schema:
    head = ref("HeadPrediction")
    if label_schema is None:
        return {
            "type": "object",
            "description": f"One head per task of the `{plugin_name}` model (its tasks come from its training data)",
            "additionalProperties": head,
        }
    return {
        "type": "object",
        "description": f"One head per task `{plugin_name}` declares",
        "properties": {task.name: {**head, "description": _task_description(task)} for task in label_schema.tasks},
        "required": label_schema.task_names,
        # A bundle may carry heads beyond the declared tasks; they are still heads.
        "additionalProperties": head,
    }


def _task_description(task: Task) -> str:
    labels = f" over: {', '.join(task.label_names)}" if task.labels else ""
    return f"{task.description or task.name} ({task.kind}{labels})"


def _inputs_schema(plugin_name: str, inputs: InputSchema, max_text_chars: int) -> Schema:
    properties: dict[str, Schema] = {}
    required: list[str] = []
    if inputs.image is not None:
        accepted = ", ".join(inputs.image.media_types)
        properties["image"] = {
            "anyOf": [ref("ImageBase64"), ref("ImageUrl"), {"type": "null"}],
            "description": f"{inputs.image.description} Accepted: {accepted}.".strip(),
        }
        if inputs.image.required:
            required.append("image")
    for text in inputs.texts:
        properties[text.name] = _text_schema(text, max_text_chars)
        if text.required:
            required.append(text.name)
    return {
        "type": "object",
        "description": f"A `{plugin_name}` job's inputs: give an image, a text, or both",
        "properties": properties,
        "required": required,
        # The API refuses text names the plugin does not read (422).
        "additionalProperties": False,
    }


def _text_schema(text: TextField, max_text_chars: int) -> Schema:
    limit = min(text.max_chars, max_text_chars)  # the stricter of the plugin's and the server's limit
    string = {"type": "string", "maxLength": limit}
    described = {"description": text.description or text.name}
    if text.required:
        return {**string, "minLength": 1, **described}
    return {"anyOf": [string, {"type": "null"}], **described}
