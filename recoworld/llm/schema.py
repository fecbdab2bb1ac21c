"""A small JSON-schema subset: validate decoded replies, and fill a schema with defaults.

Endpoints that honour ``response_format`` still return truncated or incomplete JSON now and then,
and many local servers ignore the schema altogether, so replies are checked here before a request's
``parse`` callback sees them. Covered: ``type`` (one or a list), ``properties``, ``required``,
``items``, ``enum``, ``minimum``/``maximum``, ``minItems``/``maxItems``, ``anyOf``. Anything else is
accepted as is.
"""

from __future__ import annotations

from typing import Any

_TYPES: dict[str, type] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _type_ok(value: Any, name: str) -> bool:
    # exact type checks: json.loads builds exact types, and bool must not pass as a number
    kind = type(value)
    if name == "number":
        return kind is float or kind is int
    if name == "integer":
        return kind is int or (kind is float and value.is_integer())
    expected = _TYPES.get(name)
    return expected is None or kind is expected


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> None:
    """Check ``value`` against ``schema``.

    Raises:
        ValueError: naming the first offending path (``$.items[2].click``) and what was expected.
    """
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                validate(value, option, path)
                return
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(f"{path} matches none of the allowed forms ({'; '.join(errors)})")
    types = schema.get("type")
    if types is not None:
        if isinstance(types, str):
            ok = _type_ok(value, types)
        else:
            ok = any(_type_ok(value, t) for t in types)
        if not ok:
            names = [types] if isinstance(types, str) else list(types)
            raise ValueError(f"{path} should be {' or '.join(names)}, got {value!r:.60}")
    if "enum" in schema and value not in schema["enum"]:
        raise ValueError(f"{path} should be one of {schema['enum']}, got {value!r:.60}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise ValueError(f"{path} = {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise ValueError(f"{path} = {value} is above the maximum {schema['maximum']}")
    if isinstance(value, dict):
        missing = [k for k in schema.get("required", ()) if k not in value]
        if missing:
            raise ValueError(f"{path} is missing the required field(s) {missing}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                validate(value[key], sub, f"{path}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise ValueError(f"{path} has {len(value)} items, fewer than {schema['minItems']}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise ValueError(f"{path} has {len(value)} items, more than {schema['maxItems']}")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                validate(item, schema["items"], f"{path}[{i}]")


def example(schema: dict[str, Any]) -> Any:
    """The simplest value that satisfies ``schema``: first enum value, minimum, empty string ...

    Used by the local fake server to answer schemas it has no responder for.
    """
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return example(schema["anyOf"][0])
    types = schema.get("type", "object")
    name = types if isinstance(types, str) else next((t for t in types if t != "null"), "null")
    if name == "object":
        return {k: example(sub) for k, sub in schema.get("properties", {}).items()}
    if name == "array":
        item = schema.get("items", {})
        return [example(item) for _ in range(schema.get("minItems", 0))]
    if name in ("integer", "number"):
        low = schema.get("minimum", 0)
        return int(low) if name == "integer" else float(low)
    return {"string": "", "boolean": False, "null": None}.get(name)
