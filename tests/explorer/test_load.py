"""100 translate requests at once against a live server on 127.0.0.1: all answered, all correct."""

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from models.translator.search import translate_sentences

SENTENCES = ["Ein Hund läuft im Schnee.", "Zwei Männer spielen Fußball.", "Eine Frau liest ein Buch.",
             "Kinder spielen im Park."]
N_REQUESTS, LIMIT_S = 100, 120


def test_100_concurrent_translations(server, session):
    expected = {beam: translate_sentences(session.model, session.vocab, SENTENCES, beam_size=beam, alpha=session.alpha,
                                          max_len_a=session.max_len_a, max_len_b=session.max_len_b)
                for beam in (1, 2)}

    def translate(i):
        body = json.dumps({"sentence": SENTENCES[i % len(SENTENCES)], "beam_size": 1 + i % 2}).encode()
        request = urllib.request.Request(server + "api/translate", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=LIMIT_S) as response:
            return i, response.status, json.loads(response.read())

    start = time.monotonic()
    with ThreadPoolExecutor(N_REQUESTS) as pool:
        answers = list(pool.map(translate, range(N_REQUESTS)))
    elapsed = time.monotonic() - start
    assert elapsed < LIMIT_S
    assert len(answers) == N_REQUESTS
    for i, status, answer in answers:
        assert status == 200
        assert answer["translation"] == expected[1 + i % 2][i % len(SENTENCES)]  # the translator's own output
        assert len(answer["cross"][0][0]) == len(answer["target_tokens"])
    # the server is still there
    with urllib.request.urlopen(server + "api/models", timeout=10) as response:
        assert response.status == 200


def test_only_the_loopback_names_are_served(server):
    """A page elsewhere that points a name of its own at 127.0.0.1 (DNS rebinding) gets nothing."""
    request = urllib.request.Request(server + "api/models", headers={"Host": "attacker.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    with urllib.request.urlopen(server.replace("127.0.0.1", "localhost") + "api/models", timeout=10) as response:
        assert response.status == 200
