"""The JSON schema of the case format, for editors: every step spelled out, fragments and tags enumerated.

Rules of this module: the schema is generated from the pydantic models of conformance/model/case.py, the shipped
fragments and the tag registry, so it cannot drift from what the loader accepts.
"""

from __future__ import annotations

from typing import Any

from .case import PRECONDITION_KINDS, STEP_MODELS, USE_STEP, CaseMeta
from .fragment import load_fragments
from .tags import load_tags


def json_schema() -> dict[str, Any]:
    """A JSON schema of the case format for editors (steps spelled out per action)."""
    defs: dict[str, Any] = {}
    step_variants = []
    for key, model in STEP_MODELS.items():
        schema = model.model_json_schema(ref_template="#/$defs/{model}", by_alias=True)
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
        ref = {"$ref": f"#/$defs/{model.__name__}"}
        body = {"type": "array", "items": ref} if key == "expect_one_of" else ref
        if key == "ut":
            body = {"anyOf": [ref, {"type": "string"}]}
        remarks = {"note": {"type": "string"}}
        if key in PRECONDITION_KINDS:
            remarks["precondition"] = {"type": "string"}
        step_variants.append(
            {"type": "object", "properties": {key: body, **remarks}, "required": [key], "additionalProperties": False}
        )
    step_variants.append(_use_step_schema())
    schema = CaseMeta.model_json_schema(ref_template="#/$defs/{model}", by_alias=True)
    defs.update(schema.pop("$defs", {}))
    schema["properties"]["steps"] = {"type": "array", "minItems": 1, "items": {"anyOf": step_variants}}
    schema["properties"]["tags"]["items"] = {"enum": sorted(load_tags())}
    schema["$defs"] = defs
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "TCP conformance test case (format v1)"
    return schema


def _use_step_schema() -> dict[str, Any]:
    """The ``use`` step: a fragment's name, or a mapping of ``fragment`` and that fragment's parameters."""
    fragments = load_fragments()
    forms = []
    for fragment in fragments.values():
        properties: dict[str, Any] = {"fragment": {"const": fragment.name, "description": fragment.description}}
        for param in fragment.parameters.values():
            properties[param.name] = {"description": param.description}
            if not param.required:
                properties[param.name]["default"] = param.default
        required = ["fragment", *(p.name for p in fragment.parameters.values() if p.required)]
        forms.append({"type": "object", "properties": properties, "required": required, "additionalProperties": False})
    names = {"type": "string", "enum": sorted(fragments), "description": "a fragment with its parameters' defaults"}
    return {
        "type": "object",
        "properties": {USE_STEP: {"anyOf": [names, *forms]}},
        "required": [USE_STEP],
        "additionalProperties": False,
    }
