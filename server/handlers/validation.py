"""Request bodies checked against the OpenAPI document's own schemas, after the models.

The models (pydantic, lax mode) also coerce what their schema does not allow (``false`` for
an integer, ``1.0`` for a count); the document is the contract, so a body the models
accepted is checked against the model's schema in the served document too: what the
document refuses is refused (400), whatever a model would have made of it.
"""

from __future__ import annotations

import functools
from typing import Any

from jsonschema import Draft202012Validator

from kohakuriver_lab.errors import InvalidRequest

from ..openapi import openapi_document


@functools.cache
def _validator(name: str) -> Draft202012Validator | None:
    components = openapi_document()["components"]
    if name not in components["schemas"]:
        return None
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": components})


def check_body_schema(name: str, data: Any) -> None:
    """Raise 400 naming the fields where ``data`` does not fit the document's ``name``."""
    validator = _validator(name)
    if validator is None:
        return
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path)))[:3]
    if errors:
        parts = []
        for error in errors:
            where = ".".join(str(p) for p in error.path) or "body"
            parts.append(f"{where}: {error.message[:160]}")
        raise InvalidRequest("; ".join(parts) + " (see the OpenAPI document)")
