"""Strict shapes for the JSON dograhctl reads: the fleet record, and what a worker host
tells its edge.

pydantic's models check every field's type and range and refuse fields they do
not know; pydantic comes with FastAPI on every host (Debian 12 ships 1.10, whose
API later releases keep as ``pydantic.v1``). Whatever is out of shape becomes
one line naming the field.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

try:  # pydantic 2 (Debian 13, PyPI) keeps the 1.x API here
    import pydantic.v1 as pydantic
except ImportError:  # pydantic 1.10 (Debian 12)
    import pydantic  # type: ignore[no-redef]

BaseModel, Extra, ValidationError = pydantic.BaseModel, pydantic.Extra, pydantic.ValidationError
StrictBool, StrictInt, StrictStr = pydantic.StrictBool, pydantic.StrictInt, pydantic.StrictStr
confloat, conint, conlist, constr = (pydantic.confloat, pydantic.conint, pydantic.conlist,
                                     pydantic.constr)
root_validator, validator = pydantic.root_validator, pydantic.validator

__all__ = ["OutOfShape", "Strict", "StrictBool", "StrictInt", "StrictStr", "confloat",
           "conint", "conlist", "constr", "dumps", "load", "parse", "root_validator",
           "validator"]

M = TypeVar("M", bound="Strict")


class Strict(BaseModel):
    """A JSON object with exactly these fields, each of exactly its type."""

    class Config:
        extra = Extra.forbid
        allow_mutation = False


class OutOfShape(ValueError):
    """The JSON is not what it must be; the message says where, in one line."""


def load(model: type[M], text: str | bytes, limit: int) -> M:
    """``text`` as a ``model``; OutOfShape when it is too long, not JSON, or out of shape."""
    if len(text) > limit:
        raise OutOfShape(f"longer than {limit} bytes")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise OutOfShape(f"not JSON ({str(exc).splitlines()[0] if str(exc) else 'too deep'})"
                         ) from None
    return parse(model, data)


def parse(model: type[M], data: Any) -> M:
    try:
        return model.parse_obj(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the whole"
        raise OutOfShape(f"{where}: {first['msg']}") from None
    except RecursionError:
        raise OutOfShape("nested too deep") from None


def dumps(data: Any) -> str:
    """JSON as dograhctl writes it: stable, readable, one trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
