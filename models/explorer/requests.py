"""Reading what a request asks for. The page is not trusted: every field is checked for type and range,
and anything wrong becomes an ``ApiError`` whose message the page shows as it is.

Limits: a request body of at most ``MAX_BODY_BYTES``; a sentence of at most ``MAX_SENTENCE_CHARS``
characters and ``MAX_SOURCE_PIECES`` SentencePiece pieces; a beam of at most ``MAX_BEAM``. No field is a
path: models are chosen by the names the server gave them at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["ApiError", "MAX_BODY_BYTES", "MAX_SENTENCE_CHARS", "MAX_SOURCE_PIECES", "MAX_BEAM", "parse_body",
           "text_field", "int_field", "float_field", "choice_field", "ids_field"]

MAX_BODY_BYTES = 16 * 1024
MAX_SENTENCE_CHARS = 400
MAX_SOURCE_PIECES = 100
MAX_BEAM = 8


class ApiError(Exception):
    """A request the server will not answer; ``status`` is the HTTP code (4xx), ``message`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def parse_body(body: bytes) -> Mapping[str, Any]:
    """The JSON object of a request body (``app._read_body`` has kept it within ``MAX_BODY_BYTES``)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, f"the request body is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(data).__name__}")
    return data


def text_field(data: Mapping[str, Any], name: str, default: str | None = None, max_chars: int = MAX_SENTENCE_CHARS,
               allow_empty: bool = False) -> str:
    value = data.get(name, default)
    if value is None:
        raise ApiError(400, f"'{name}' is missing")
    if not isinstance(value, str):
        raise ApiError(400, f"'{name}' must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise ApiError(400, f"'{name}' has {len(value)} characters; at most {max_chars}")
    if not allow_empty and not value.strip():
        raise ApiError(400, f"'{name}' is empty: type a sentence")
    return value


def int_field(data: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"'{name}' must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ApiError(400, f"'{name}' must be between {low} and {high}, got {value}")
    return value


def float_field(data: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ApiError(400, f"'{name}' must be a number, got {value!r}")
    if not low <= value <= high:
        raise ApiError(400, f"'{name}' must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def choice_field(data: Mapping[str, Any], name: str, choices: tuple[str, ...], default: str | None = None) -> str:
    value = data.get(name, default)
    if value not in choices:
        raise ApiError(400, f"'{name}' must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def ids_field(data: Mapping[str, Any], name: str, vocab_size: int, max_len: int) -> list[int]:
    value = data.get(name)
    if not isinstance(value, list) or len(value) > max_len:
        raise ApiError(400, f"'{name}' must be a list of at most {max_len} token ids")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < vocab_size for v in value):
        raise ApiError(400, f"'{name}' must hold token ids in [0, {vocab_size})")
    return value
