"""The JSON endpoints, called in-process (Starlette's TestClient): answers, shapes, limits and errors."""

import warnings

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
with warnings.catch_warnings():  # Starlette 1.x prefers the httpx2 package for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from models.explorer import requests as rq  # noqa: E402
from models.explorer.app import create_app  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture(scope="module")
def client(session):
    with TestClient(create_app([session])) as c:
        yield c


def test_models_lists_the_loaded_model_and_the_limits(client, session):
    answer = client.get("/api/models").json()
    assert [m["name"] for m in answer["models"]] == [session.name]
    assert answer["models"][0]["n_heads"] == session.model.n_heads
    assert answer["limits"]["sentence_chars"] == rq.MAX_SENTENCE_CHARS


@pytest.mark.parametrize("beam", [1, 2])
def test_translate_answers_every_map_with_the_shapes_of_its_tokens(client, session, beam):
    r = client.post("/api/translate", json={"sentence": "Ein Hund.", "beam_size": beam})
    assert r.status_code == 200, r.text
    a = r.json()
    S, T = len(a["source_tokens"]), len(a["target_tokens"])
    m = session.model
    assert np.shape(a["encoder"]) == (m.n_encoder_layers, m.n_heads, S, S)
    assert np.shape(a["cross"]) == (m.n_decoder_layers, m.n_heads, T, S)
    assert np.shape(a["decoder"]) == (m.n_decoder_layers, m.n_heads, T, T)
    np.testing.assert_allclose(np.sum(a["cross"], axis=-1), 1.0, atol=1e-3)
    assert np.triu(np.array(a["decoder"]), 1).max() == 0  # the causal triangle
    assert a["beam"][0]["piece"] == "<s>" and any(n["best"] for n in a["beam"][1:])


def test_head_positional_next_token_and_autograd_answer(client, session):
    t = client.post("/api/translate", json={"sentence": "Ein Hund."}).json()
    h = client.post("/api/head", json={"sentence": "Ein Hund.", "target_ids": t["target_ids"], "attention": "cross",
                                       "layer": 1, "head": 1, "query": 1})
    assert h.status_code == 200 and len(h.json()["weights"]) == len(t["source_tokens"])
    p = client.post("/api/positional", json={"positions": 10}).json()
    assert np.shape(p["table"]) == (10, session.model.d_model)
    n = client.post("/api/next_token", json={"source": "Ein Hund.", "prefix": "A", "top_k": 4}).json()
    assert len(n["candidates"]) == 4 and n["other"] == pytest.approx(0.0, abs=1e-9)
    g = client.post("/api/autograd", json={"expression": "sum(x * w @ b)"})
    assert g.status_code == 400 and "expression" in g.json()["error"]  # (2,3) * (3,2): the shapes do not fit
    g = client.post("/api/autograd", json={"expression": "mean(tanh(x @ w))"}).json()
    assert g["steps"][0]["node"] == 0 and len(g["steps"]) == len(g["nodes"])
    assert set(client.get("/api/autograd").json()["tensors"]) == {"x", "w", "b", "y"}


@pytest.mark.parametrize("path, body, status, message", [
    ("/api/translate", b"{", 400, "not JSON"),
    ("/api/translate", b"[1, 2]", 400, "JSON object"),
    ("/api/translate", b'{"sentence": 5}', 400, "must be a string"),
    ("/api/translate", b'{"sentence": "   "}', 400, "empty"),
    ("/api/translate", b'{"sentence": "Hund", "beam_size": 99}', 400, "between 1 and 8"),
    ("/api/translate", b'{"sentence": "Hund", "beam_size": true}', 400, "integer"),
    ("/api/translate", b'{"sentence": "Hund", "model": "../../etc/passwd"}', 404, "unknown model"),
    ("/api/translate", ('{"sentence": "%s"}' % ("a" * (rq.MAX_SENTENCE_CHARS + 1))).encode(), 400, "at most"),
    ("/api/translate", ('{"sentence": "%s"}' % ("x " * 150)).encode(), 400, "pieces long"),
    ("/api/translate", b'{"sentence": "' + b"a" * rq.MAX_BODY_BYTES + b'"}', 413, "at most"),
    ("/api/head", b'{"sentence": "Hund", "target_ids": [1, 99999]}', 400, "token ids"),
    ("/api/head", b'{"sentence": "Hund", "target_ids": [], "layer": 7}', 400, "'layer'"),
    ("/api/head", b'{"sentence": "Hund", "target_ids": [], "attention": "x"}', 400, "'attention'"),
    ("/api/next_token", b'{"source": "Hund", "temperature": 0}', 400, "'temperature'"),
    ("/api/next_token", b'{"source": "Hund", "top_p": NaN}', 400, "'top_p'"),
    ("/api/autograd", b'{"expression": "open(x)"}', 400, "unknown name 'open'"),
    ("/api/nothing", b"{}", 404, "not found"),
])
def test_bad_requests_get_a_4xx_with_a_message(client, path, body, status, message):
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_wrong_method_and_headers(client):
    r = client.get("/api/translate")
    assert r.status_code == 405 and "not allowed" in r.json()["error"]
    page = client.get("/")
    assert page.status_code == 200 and "<title>Transformer explorer</title>" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert client.get("/js/main.js").status_code == 200
    assert client.get("/../setup.cfg").status_code == 404  # the static files stay in their folder


def test_a_body_without_a_length_is_counted_as_it_streams(client):
    n = 2 * rq.MAX_BODY_BYTES // 1024
    chunks = (b'{"sentence": "' + b"a" * 1024 + b'"}' if i == 0 else b" " * 1024 for i in range(n))
    r = client.post("/api/translate", content=chunks, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "more than" in r.json()["error"]


def test_a_language_model_serves_the_next_token_view(session, lm_run):
    from models.explorer.sessions import LanguageModelSession, load_session

    lm = load_session(lm_run, taken=[session.name])
    assert isinstance(lm, LanguageModelSession)
    with TestClient(create_app([session, lm])) as c:
        assert [m["kind"] for m in c.get("/api/models").json()["models"]] == ["translator", "lm"]
        n = c.post("/api/next_token", json={"model": lm.name, "prefix": "ROMEO:", "temperature": 0.7}).json()
        assert n["context"] == list("ROMEO:")
        assert sum(x["prob"] for x in n["candidates"]) + n["other"] == pytest.approx(1.0)
        for body, message in (({"prefix": ""}, "empty"), ({"prefix": "ROMEO€"}, "'prefix'")):
            r = c.post("/api/next_token", json={"model": lm.name, **body})
            assert r.status_code == 400 and message in r.json()["error"], r.text
        r = c.post("/api/translate", json={"model": lm.name, "sentence": "Hallo"})
        assert r.status_code == 400 and "needs a translator" in r.json()["error"]
