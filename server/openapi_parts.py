"""Building blocks of the OpenAPI document (responses, parameters, operations)."""

from __future__ import annotations

from typing import Any


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def list_of(key: str, item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "array", "items": ref(item)}},
    }


ERROR = json_response(ref("Error"), "Error")
ID_PARAM = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": r"^\d+$"},
}


def path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


NAME_PARAM = path_param("name")


def body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(name)}}}


def op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    errors = {"400": ERROR, "401": ERROR, "403": ERROR, "404": ERROR, "409": ERROR}
    return {"summary": summary, "responses": {**responses, **errors}, **extra}


def node_op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An operation a node carries out: 422 when it cannot (e.g. a missing image)."""
    operation = op(summary, responses, **extra)
    operation["responses"]["422"] = ERROR
    return operation


ENV_PARAM = path_param("name")
VERSION_PARAM = path_param("version")


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }
