"""The explorer's web app (Starlette): the static page at ``/`` and JSON endpoints under ``/api/``.

    GET  /api/models        the loaded models (name, kind, sizes) and the request limits
    POST /api/translate     {model, sentence, beam_size} -> pieces, translation, attention maps, beam tree
    POST /api/head          {model, sentence, target_ids, attention, layer, head, query} -> one head's numbers
    POST /api/positional    {model, positions} -> the sinusoidal positional encoding table
    POST /api/next_token    {model, source, prefix, temperature, top_k, top_p} -> next-token probabilities
    GET  /api/autograd      the autograd view's tensors and functions
    POST /api/autograd      {expression} -> graph and backward() steps

Handlers read and check the request (``requests.py``), then compute in a worker thread under
``COMPUTE_LOCK`` (``sessions.py``), so the event loop keeps accepting connections meanwhile. Every error
is JSON ``{"error": message}`` with a 4xx status; an unexpected failure is a 500 with a generic message
(the details go to the server's log, not to the browser).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from models.explorer import requests as rq
from models.explorer.backward_steps import TENSORS, backward_steps
from models.explorer.decoding import translate_watched
from models.explorer.expression import FUNCTIONS, ExpressionError
from models.explorer.head import ATTENTIONS, inside_head, positional_encoding, query_count
from models.explorer.sampling import next_token
from models.explorer.sessions import COMPUTE_LOCK, Session, TranslatorSession

__all__ = ["create_app", "STATIC_DIR"]

STATIC_DIR = Path(__file__).parent / "static"
log = logging.getLogger("models.explorer")

# Nothing on the page may come from elsewhere: scripts, styles, images and requests stay on this server.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(sessions: Sequence[Session], allowed_hosts: Sequence[str] | None = None) -> Starlette:
    """The app serving ``sessions`` (loaded models, looked up by name; the first is the default).

    ``allowed_hosts``: the names the browser may have used to reach it (the Host header); a request for any
    other name is refused, so that a web page elsewhere cannot reach the explorer by pointing a name of its
    own at 127.0.0.1 (DNS rebinding). None: any."""
    by_name = {s.name: s for s in sessions}

    def session(data: Any, kind: type[Session] = Session) -> Any:
        name = data.get("model")
        if name is None:
            found = [s for s in sessions if isinstance(s, kind)]
            if not found:
                raise rq.ApiError(404, f"no {kind.kind} model is loaded")
            return found[0]
        if not isinstance(name, str) or name not in by_name:
            raise rq.ApiError(404, f"unknown model {name!r}; loaded: {', '.join(by_name)}")
        if not isinstance(by_name[name], kind):
            raise rq.ApiError(400, f"model {name!r} is a {by_name[name].kind}; this view needs a {kind.kind}")
        return by_name[name]

    def sentence_of(s: TranslatorSession, data: Any, name: str = "sentence") -> str:
        text = rq.text_field(data, name)
        n = len(s.vocab.encode(text))
        if n > rq.MAX_SOURCE_PIECES:
            raise rq.ApiError(400, f"'{name}' is {n} pieces long; at most {rq.MAX_SOURCE_PIECES}")
        return text

    def models(_: Any) -> dict[str, Any]:
        return {"models": [s.info() for s in sessions],
                "limits": {"body_bytes": rq.MAX_BODY_BYTES, "sentence_chars": rq.MAX_SENTENCE_CHARS,
                           "source_pieces": rq.MAX_SOURCE_PIECES, "beam": rq.MAX_BEAM}}

    def translate(data: Any) -> dict[str, Any]:
        s = session(data, TranslatorSession)
        sentence = sentence_of(s, data)
        beam = rq.int_field(data, "beam_size", 1, 1, rq.MAX_BEAM)
        result = translate_watched(s, sentence, beam)
        for key in ("encoder", "cross", "decoder"):
            result[key] = np.round(result[key].astype(np.float64), 4).tolist()
        return {"model": s.name, "beam_size": beam, "alpha": s.alpha, **result}

    def head(data: Any) -> dict[str, Any]:
        s = session(data, TranslatorSession)
        sentence = sentence_of(s, data)
        target = rq.ids_field(data, "target_ids", s.model.vocab_size, rq.MAX_SOURCE_PIECES * 2)
        attention = rq.choice_field(data, "attention", ATTENTIONS, "cross")
        n_layers = s.model.n_encoder_layers if attention == "encoder" else s.model.n_decoder_layers
        layer = rq.int_field(data, "layer", 0, 0, n_layers - 1)
        head_ = rq.int_field(data, "head", 0, 0, s.model.n_heads - 1)
        query = rq.int_field(data, "query", 0, 0, query_count(s, sentence, target, attention) - 1)
        return {"model": s.name, "attention": attention, "layer": layer, "head": head_,
                **inside_head(s, sentence, target, attention, layer, head_, query)}

    def positional(data: Any) -> dict[str, Any]:
        s = session(data, TranslatorSession)
        n = rq.int_field(data, "positions", 50, 1, 200)
        return {"model": s.name, "d_model": s.model.d_model, "table": positional_encoding(n, s.model.d_model)}

    def next_token_(data: Any) -> dict[str, Any]:
        s = session(data)
        translator = isinstance(s, TranslatorSession)
        source = sentence_of(s, data, "source") if translator else None
        prefix = rq.text_field(data, "prefix", "", allow_empty=translator)  # a language model needs a prompt
        temperature = rq.float_field(data, "temperature", 1.0, 0.05, 10.0)
        top_k = rq.int_field(data, "top_k", 0, 0, 100_000)
        top_p = rq.float_field(data, "top_p", 1.0, 0.01, 1.0)
        try:
            return {"model": s.name, **next_token(s, prefix, source, temperature, top_k, top_p)}
        except ValueError as e:  # text the model's vocabulary cannot encode
            raise rq.ApiError(400, f"'prefix': {e}") from None

    def autograd_info(_: Any) -> dict[str, Any]:
        return {"tensors": {name: {"shape": list(shape), "about": about} for name, (shape, about) in TENSORS.items()},
                "functions": list(FUNCTIONS)}

    def autograd(data: Any) -> dict[str, Any]:
        text = rq.text_field(data, "expression", max_chars=1000)
        try:
            return backward_steps(text)
        except ExpressionError as e:
            raise rq.ApiError(400, f"expression: {e}") from None

    api = [
        Route("/models", _endpoint(models, body=False), methods=["GET"]),
        Route("/translate", _endpoint(translate), methods=["POST"]),
        Route("/head", _endpoint(head), methods=["POST"]),
        Route("/positional", _endpoint(positional), methods=["POST"]),
        Route("/next_token", _endpoint(next_token_), methods=["POST"]),
        Route("/autograd", _endpoint(autograd_info, body=False), methods=["GET"]),
        Route("/autograd", _endpoint(autograd), methods=["POST"]),
    ]
    routes = [Mount("/api", routes=api), Mount("/", StaticFiles(directory=STATIC_DIR, html=True))]
    middleware = [Middleware(BaseHTTPMiddleware, dispatch=_headers)]
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={HTTPException: _http_error, Exception: _server_error})


def _endpoint(compute: Callable[[Any], dict[str, Any]], body: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """A route handler: read the JSON body (when ``body``), run ``compute`` on it in a worker thread under
    the lock, answer JSON (with the time it took) or the ``ApiError`` it raised."""

    async def handle(request: Request) -> Response:
        try:
            data = rq.parse_body(await _read_body(request)) if body else {}
            result = await run_in_threadpool(_locked, compute, data)
        except rq.ApiError as e:
            return JSONResponse({"error": e.message}, status_code=e.status)
        return JSONResponse(result)

    return handle


def _locked(compute: Callable[[Any], dict[str, Any]], data: Any) -> dict[str, Any]:
    with COMPUTE_LOCK:
        start = time.perf_counter()
        result = compute(data)
        result["elapsed_ms"] = round(1000 * (time.perf_counter() - start), 1)
        return result


async def _read_body(request: Request) -> bytes:
    """The body, refusing more than ``MAX_BODY_BYTES`` before reading it all (a client may lie or omit its
    Content-Length, so the stream is counted too)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > rq.MAX_BODY_BYTES:
        raise rq.ApiError(413, f"the request has {declared} bytes; at most {rq.MAX_BODY_BYTES}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > rq.MAX_BODY_BYTES:
            raise rq.ApiError(413, f"the request has more than {rq.MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    response.headers.update(_SECURITY_HEADERS)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"not found: {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
    return JSONResponse({"error": message.get(exc.status_code, str(exc.detail))}, status_code=exc.status_code)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("the explorer failed on %s", request.url.path)
    return JSONResponse({"error": "the server failed on this request (its log says why)"}, status_code=500)
