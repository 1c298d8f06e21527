"""The semantic response cache, with the official SDKs against the real binary.

    openai SDK -> ringgate (cache phase: exact miss -> cache desk) -> mock-llm
                  cache desk -> ringgate's own /v1/embeddings -> mock-llm (bag-of-words vectors)

mock-llm's embeddings are deterministic bags of words, so two texts that share most words are
close; each test first asks the mock itself how similar its two texts are, so the premise
(above or below the threshold) is checked, not assumed. mock-llm answers every chat request
with a fresh id: a response whose id is an earlier response's came from the cache. Every wait
is on a condition (a header, a metric), never a fixed sleep. Across two nodes on PostgreSQL:
tests/cache_fleet.rs.
"""

from __future__ import annotations

import math
import ssl

import openai
import pytest
import trustme

from conftest import merged, start_gateway, start_governed, wait_for
from test_cache import metric, oai, streamed
from test_usage import new_key

MODEL = "mock/gpt-4o-mini"
EMBEDDER = "mock/text-embedding-3-small"
DIMENSIONS = 512
THRESHOLD = 0.85
ADMIN = "python-semantic-admin-token"
SEMANTIC = {
    "models": {MODEL: 300},
    "semantic": {"embedding_model": EMBEDDER, "dimensions": DIMENSIONS, "threshold": THRESHOLD},
}
PROVIDERS = ["gpt-4o-mini", "text-embedding-3-small"]


def similarity(mock, a: str, b: str) -> float:
    """The cosine similarity of two texts' embeddings, as the mock makes them."""
    with openai.OpenAI(base_url=mock.base_url, api_key="x", http_client=openai.DefaultHttpxClient(trust_env=False)) as m:
        va, vb = (
            d.embedding
            for d in m.embeddings.create(model="text-embedding-3-small", input=[a, b], dimensions=DIMENSIONS, encoding_format="float").data
        )
    dot = sum(x * y for x, y in zip(va, vb))
    return dot / (math.sqrt(sum(x * x for x in va)) * math.sqrt(sum(y * y for y in vb)))


def close_pair(mock, a: str, b: str) -> float:
    s = similarity(mock, a, b)
    assert s >= THRESHOLD + 0.02, f"premise: {a!r} and {b!r} are {s:.3f} similar"
    return s


def far_pair(mock, a: str, b: str) -> float:
    s = similarity(mock, a, b)
    assert s <= THRESHOLD - 0.02, f"premise: {a!r} and {b!r} are {s:.3f} similar"
    return s


def ask(client: openai.OpenAI, prompt: str, system: str | None = None, **kw):
    """A chat completion, x-ringgate-cache and x-ringgate-cache-similarity."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, **kw)
    return raw.parse(), raw.headers.get("x-ringgate-cache"), raw.headers.get("x-ringgate-cache-similarity")


def indexed(gw, at_least: int):
    """Waits until the node's semantic index holds `at_least` embeddings (kept answers reach
    it through the cache desk's queue)."""
    wait_for(f"{at_least} embeddings indexed", lambda: metric(gw, "ringgate_cache_semantic_entries") >= at_least or None)


@pytest.fixture(scope="module")
def mock(mock_llm):
    """The session's mock (its embeddings are what the premises are measured on)."""
    return mock_llm


@pytest.fixture(scope="module")
def governed(workdir, mock):
    gw, admin = start_governed(
        workdir,
        mock.base_url,
        str(workdir / "semantic.db"),
        ADMIN,
        {"flush_interval_ms": 100, "prices": {"gpt-4o-mini": {"input": "1000", "output": "2000"}}},
        {"cache": SEMANTIC, "providers": {"mock": {"models": PROVIDERS}}},
    )
    yield gw, admin
    admin.close()
    gw.stop()


@pytest.fixture(scope="module")
def keyed(governed):
    gw, admin = governed
    _, secret = new_key(gw, admin)
    c = oai(gw, secret)
    yield gw, c
    c.close()


def test_a_similar_question_is_a_semantic_hit_and_a_different_one_a_miss(mock, keyed):
    gw, client = keyed
    question = "Tell me the capital of France"
    similar = "tell me the capital city of France?"
    different = "Tell me the capital of Spain"
    expected = close_pair(mock, question, similar)
    far_pair(mock, question, different)
    before = metric(gw, "ringgate_cache_requests_total", result="semantic_hit")
    entries = metric(gw, "ringgate_cache_semantic_entries")

    first, cache, _ = ask(client, question)
    assert cache == "miss"
    indexed(gw, entries + 1)
    hit, cache, score = ask(client, similar)
    assert cache == "semantic-hit"
    assert hit.id == first.id and hit.choices[0].message.content == first.choices[0].message.content
    assert abs(float(score) - expected) < 1e-3
    # The exact repeat is an exact hit: the exact cache is asked first.
    assert ask(client, question)[1:] == ("hit", None)
    miss, cache, _ = ask(client, different)
    assert cache == "miss" and miss.id != first.id
    wait_for("the hit counted", lambda: metric(gw, "ringgate_cache_requests_total", result="semantic_hit") > before or None)


def test_only_requests_alike_but_for_the_last_user_turn_are_compared(mock, keyed):
    gw, client = keyed
    question = "Which river flows through Paris"
    similar = "which river flows through Paris please"
    close_pair(mock, question, similar)
    entries = metric(gw, "ringgate_cache_semantic_entries")
    first, cache, _ = ask(client, question, system="Answer briefly.", temperature=0.5)
    assert cache == "miss"
    indexed(gw, entries + 1)
    # Another system prompt, another parameter: other partitions, never compared.
    assert ask(client, similar, system="Answer at length.", temperature=0.5)[1] == "miss"
    assert ask(client, similar, system="Answer briefly.", temperature=0.9)[1] == "miss"
    hit, cache, _ = ask(client, similar, system="Answer briefly.", temperature=0.5)
    assert (cache, hit.id) == ("semantic-hit", first.id)


def test_a_semantic_hit_is_replayed_as_a_stream(mock, keyed):
    gw, client = keyed
    question = "How many legs does a spider have"
    similar = "how many legs does a spider really have"
    close_pair(mock, question, similar)
    entries = metric(gw, "ringgate_cache_semantic_entries")
    first, cache, _ = ask(client, question)
    assert cache == "miss"
    indexed(gw, entries + 1)
    text, finish, usage, ident, cache = streamed(client, similar, include_usage=True)
    assert cache == "semantic-hit"
    assert (text, finish, ident) == (first.choices[0].message.content, "stop", first.id)
    assert usage.total_tokens == first.usage.total_tokens


def test_one_key_never_sees_another_keys_similar_answer(mock, governed):
    gw, admin = governed
    question = "What colour is the sky on Mars"
    similar = "what colour is the sky on Mars today"
    close_pair(mock, question, similar)
    _, a = new_key(gw, admin)
    _, b = new_key(gw, admin)
    ca, cb = oai(gw, a), oai(gw, b)
    entries = metric(gw, "ringgate_cache_semantic_entries")
    first, cache, _ = ask(ca, question)
    assert cache == "miss"
    indexed(gw, entries + 1)
    other, cache, _ = ask(cb, similar)
    assert cache == "miss" and other.id != first.id
    assert ask(ca, similar)[1] == "semantic-hit"
    ca.close()
    cb.close()


def test_hits_are_logged_and_the_embeddings_take_nothing_from_the_key(mock, governed):
    gw, admin = governed
    question = "Name a prime number larger than ten"
    similar = "name a prime number larger than ten please"
    close_pair(mock, question, similar)
    key_id, secret = new_key(gw, admin, limits={"rpm": 3})
    c = oai(gw, secret)
    entries = metric(gw, "ringgate_cache_semantic_entries")
    assert ask(c, question)[1] == "miss"
    indexed(gw, entries + 1)
    # Three requests, three embeddings asked by the node: only the requests count.
    for _ in range(2):
        assert ask(c, similar)[1] == "semantic-hit"
    with pytest.raises(openai.RateLimitError):
        ask(c, similar)
    rows = wait_for(
        "the semantic hits logged",
        lambda: (lambda r: r if len(r) >= 2 else None)(
            admin.get("/admin/request-logs", params={"key_id": key_id, "cache": "semantic"}).json()["data"]
        ),
    )
    assert all(row["saved_tokens"] > 0 and row["cost_nanos"] == 0 for row in rows)
    c.close()


def test_requests_are_served_when_embeddings_fail(workdir, mock):
    config = {
        "shards": 1,
        "cache": merged(SEMANTIC, {"semantic": {"embedding_model": "dead/text-embedding-3-small"}}),
        "providers": {
            "mock": {"base_url": mock.base_url, "models": PROVIDERS},
            # Nothing listens on the discard port: every embedding fails at once.
            "dead": {"base_url": "http://127.0.0.1:9/v1", "models": ["text-embedding-3-small"]},
        },
    }
    g = start_gateway(workdir, config)
    try:
        c = oai(g)
        first, cache, _ = ask(c, "a question nobody can embed")
        assert cache == "miss"
        second, cache, _ = ask(c, "a question nobody can embed, again")
        assert cache == "miss" and second.id != first.id
        assert metric(g, "ringgate_cache_semantic_entries") == 0
        c.close()
    finally:
        g.stop()


def test_the_node_reaches_its_own_tls_listener(workdir, mock):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    ca_path, cert_path, key_path = (workdir / n for n in ("semantic-ca.pem", "semantic-cert.pem", "semantic-key.pem"))
    ca.cert_pem.write_to_path(str(ca_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    config = {
        "shards": 1,
        "tls": {"cert_file": str(cert_path), "key_file": str(key_path)},
        "cache": SEMANTIC,
        "providers": {"mock": {"base_url": mock.base_url, "models": PROVIDERS}},
    }
    g = start_gateway(workdir, config)
    try:
        c = openai.OpenAI(
            base_url=g.base_url,
            api_key="x",
            http_client=openai.DefaultHttpxClient(trust_env=False, verify=ssl.create_default_context(cafile=str(ca_path))),
            max_retries=0,
        )
        question = "Who wrote the Odyssey"
        similar = "who wrote the Odyssey poem"
        close_pair(mock, question, similar)
        first, cache, _ = ask(c, question)
        assert cache == "miss"
        indexed(g, 1)
        hit, cache, _ = ask(c, similar)
        assert (cache, hit.id) == ("semantic-hit", first.id)
        c.close()
    finally:
        g.stop()
