"""The passes that make the OpenAPI document say what the handlers enforce.

* path parameters take their pattern from the route table (``routes.ROUTES``), the same
  regular expressions tornado matches;
* request bodies use the models' *validation* schemas (what a client sends), responses their
  *serialization* schemas; a body is required only when its model refuses ``{}``;
* every operation declares the statuses it can answer (docs/api.md, "Errors").
"""

from __future__ import annotations

import re
from typing import Any

import pydantic
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .openapi_parts import ERROR

GROUP = re.compile(r"\(([^()]*)\)")
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
WEBSOCKETS = ("/events", "/logs/follow", "/runners/connect")
METHODS = ("get", "put", "post", "patch", "delete")


ALTERNATION = re.compile(r"\(([a-z]+(?:\|[a-z]+)+)\)")


def _expanded(pattern: str) -> list[str]:
    """A route pattern with its word alternations (``(kill|pause)``) as literal paths."""
    found = ALTERNATION.search(pattern)
    if found is None:
        return [pattern]
    head, tail = pattern[: found.start()], pattern[found.end() :]
    return [p for word in found.group(1).split("|") for p in _expanded(head + word + tail)]


def route_groups(prefix: str, routes: list[tuple[str, Any]]) -> dict[str, list[str]]:
    """Path shape (``/kohakuriver/api/tasks/{}``) to the regular expressions of its groups
    (one shape per word of an alternation: the document has a path for each)."""
    return {
        prefix + GROUP.sub("{}", pattern): GROUP.findall(pattern)
        for route, _ in routes
        for pattern in _expanded(route)
    }


def _json_regex(group: str) -> str:
    """A route group as a JSON Schema pattern: ASCII digits (Python's ``\\d`` takes any
    Unicode digit, which ``parse_id`` then refuses), anchored."""
    return "^(?:" + group.replace(r"\d", "[0-9]") + ")$"


def path_parameters(paths: dict[str, Any], groups: dict[str, list[str]]) -> None:
    """Give every path parameter the pattern of its route group (in place)."""
    for path, item in paths.items():
        shape = PLACEHOLDER.sub("{}", path)
        if shape not in groups:
            continue
        names = PLACEHOLDER.findall(path)
        regex = dict(zip(names, groups[shape], strict=True))
        for operation in item.values():
            for param in operation.get("parameters", []):
                if param["in"] == "path" and "enum" not in param["schema"]:
                    param["schema"] = {
                        "type": "string",
                        "pattern": _json_regex(regex[param["name"]]),
                    }


def statuses(paths: dict[str, Any]) -> None:
    """Declare on each operation every error status it can answer (in place)."""
    for path, item in paths.items():
        for method, operation in item.items():
            responses = operation["responses"]
            codes = ["400", "404"]
            if operation.get("security") != []:
                codes += ["401", "403"]
            if "requestBody" in operation:
                codes.append("413")
            if method == "post" and path.endswith("/api/tasks"):
                codes.append("429")
            if path.endswith(WEBSOCKETS):
                codes.append("426")
            for code in codes:
                responses.setdefault(code, ERROR)


def _media_refs(paths: dict[str, Any], responses: bool) -> set[str]:
    """Names of the models that request bodies (or responses) refer to at their top."""
    names = set()
    for item in paths.values():
        for operation in item.values():
            if responses:
                parts = list(operation["responses"].values())
            else:
                parts = [operation.get("requestBody", {})]
            for part in parts:
                for media in part.get("content", {}).values():
                    names.add(_ref_name(media.get("schema", {})))
    return names


def body_models(paths: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The models of request bodies, and those of request bodies also sent back."""
    inputs = _media_refs(paths, responses=False)
    return inputs, inputs & _media_refs(paths, responses=True)


def schemas_by_mode(
    models: list[type[BaseModel]], bodies: tuple[set[str], set[str]]
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """Component schemas of ``models``: the validation schema of request bodies, the
    serialization schema of the rest (and of bodies also sent back: pydantic names the two
    ``-Input``/``-Output`` where they differ); per model name the reference of each mode."""
    inputs, both = bodies
    pairs = [(m, "serialization") for m in models if m.__name__ not in inputs or m.__name__ in both]
    pairs += [(m, "validation") for m in models if m.__name__ in inputs]
    refs, defs = models_json_schema(pairs, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    by_name: dict[str, dict[str, str]] = {}
    for (model, mode), ref in refs.items():
        by_name.setdefault(model.__name__, {})[mode] = ref["$ref"]
    for modes in by_name.values():
        modes.setdefault("validation", modes.get("serialization", ""))
        modes.setdefault("serialization", modes["validation"])
    return dict(defs.get("$defs", {})), by_name


def accepts_empty(model: type[BaseModel]) -> bool:
    """Whether ``{}`` is a valid body for ``model`` (then the body is optional)."""
    try:
        model.model_validate({})
    except pydantic.ValidationError:
        return False
    return True


def body_modes(
    paths: dict[str, Any], refs: dict[str, dict[str, str]], models: dict[str, type[BaseModel]]
) -> None:
    """Point request bodies at validation schemas and responses at serialization ones, and
    make a body optional where the model takes ``{}`` (in place)."""
    for item in paths.values():
        for operation in item.values():
            body = operation.get("requestBody")
            for media in (body or {}).get("content", {}).values():
                name = _ref_name(media.get("schema", {}))
                if name in refs:
                    media["schema"] = {"$ref": refs[name]["validation"]}
                    body["required"] = not accepts_empty(models[name])
            for response in operation["responses"].values():
                for media in response.get("content", {}).values():
                    _retarget(media.get("schema", {}), refs)


def _ref_name(schema: dict[str, Any]) -> str:
    return str(schema.get("$ref", "")).rsplit("/", 1)[-1]


def _retarget(schema: Any, refs: dict[str, dict[str, str]]) -> None:
    """Every ``$ref`` to a model inside ``schema`` to its serialization schema."""
    if isinstance(schema, dict):
        name = _ref_name(schema)
        if name in refs:
            schema["$ref"] = refs[name]["serialization"]
        for value in schema.values():
            _retarget(value, refs)
    elif isinstance(schema, list):
        for value in schema:
            _retarget(value, refs)
