"""The exact response cache, with the official SDKs against the real binary.

    openai / anthropic SDK -> ringgate (cache phase: memory tier) -> mock-llm

mock-llm answers every request with a fresh id, so a response whose id is an earlier
response's came from the cache. Every wait is on a condition (a header, a metric), never a
fixed sleep. The fleet's shared tier is tested in tests/cache_fleet.rs (PostgreSQL).
"""

from __future__ import annotations

import re

import anthropic
import httpx
import openai
import pytest

from conftest import merged, start_gateway, start_governed, start_mock, wait_for
from test_usage import new_key, usage_of

MODEL = "mock/gpt-4o-mini"
UNCACHED = "mock/gpt-4o"
ADMIN = "python-cache-admin-token"


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def metric(gw, name: str, **labels) -> float:
    text = httpx.get(f"{gw.control_origin}/metrics", trust_env=False).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{name}\{{{re.escape(want)}\}} (\S+)$" if labels else rf"^{name} (\S+)$"
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else 0.0


def oai(gw, key: str = "sk-none", **kw) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gw.base_url,
        api_key=key,
        http_client=openai.DefaultHttpxClient(trust_env=False),
        max_retries=0,
        timeout=30.0,
        **kw,
    )


def chat(client: openai.OpenAI, prompt: str, model: str = MODEL, headers: dict | None = None, **kw):
    """A chat completion and what the cache did: (completion, x-ringgate-cache)."""
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=user(prompt), extra_headers=headers or {}, **kw
    )
    return raw.parse(), raw.headers.get("x-ringgate-cache")


def streamed(client: openai.OpenAI, prompt: str, include_usage: bool = False, headers: dict | None = None):
    """A streamed chat completion assembled: (text, finish_reason, usage, id, x-ringgate-cache)."""
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=user(prompt), stream=True, extra_headers=headers or {}, **extra
    ) as raw:
        cache = raw.headers.get("x-ringgate-cache")
        text, finish, usage, ident = [], None, None, None
        for chunk in raw.parse():
            ident = ident or chunk.id
            usage = chunk.usage or usage
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    text.append(choice.delta.content)
                finish = choice.finish_reason or finish
    return "".join(text), finish, usage, ident, cache


@pytest.fixture(scope="module")
def mock(workdir):
    m = start_mock(workdir)
    yield m
    m.stop()


@pytest.fixture(scope="module")
def gw(workdir, mock):
    config = {
        "shards": 2,
        "cache": {"models": {MODEL: 300}, "max_ttl_secs": 600},
        "providers": {"mock": {"base_url": mock.base_url, "models": ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]}},
    }
    g = start_gateway(workdir, config)
    yield g
    g.stop()


@pytest.fixture(scope="module")
def client(gw):
    c = oai(gw)
    yield c
    c.close()


def test_a_repeated_request_is_a_hit_with_the_same_answer(gw, client):
    hits = metric(gw, "ringgate_cache_requests_total", result="hit")
    first, cache = chat(client, "what is a cache?", temperature=0.2)
    assert cache == "miss"
    second, cache = chat(client, "what is a cache?", temperature=0.2)
    assert cache == "hit"
    assert second.id == first.id and second.choices[0].message.content == first.choices[0].message.content
    assert second.usage == first.usage
    # Any parameter that changes the answer is another key.
    third, cache = chat(client, "what is a cache?", temperature=0.3)
    assert cache == "miss" and third.id != first.id
    wait_for("the hit counted", lambda: metric(gw, "ringgate_cache_requests_total", result="hit") > hits or None)
    assert metric(gw, "ringgate_cache_saved_completion_tokens_total") >= first.usage.completion_tokens
    assert metric(gw, "ringgate_cache_bytes") > 0


def test_a_stream_is_replayed_from_a_whole_answer_and_back(client):
    whole, cache = chat(client, "whole first")
    assert cache == "miss"
    text, finish, usage, ident, cache = streamed(client, "whole first", include_usage=True)
    assert cache == "hit"
    assert (text, finish, ident) == (whole.choices[0].message.content, "stop", whole.id)
    assert usage.total_tokens == whole.usage.total_tokens
    # Without include_usage the replayed stream has no usage chunk, as OpenAI's.
    assert streamed(client, "whole first")[2] is None

    text, finish, _, ident, cache = streamed(client, "stream first", include_usage=True)
    assert cache == "miss"
    again, cache = chat(client, "stream first")
    assert cache == "hit"
    assert again.choices[0].message.content == text and again.id == ident
    assert again.choices[0].finish_reason == finish == "stop"
    assert again.usage is not None and again.usage.completion_tokens > 0


def test_anthropic_clients_share_the_chat_form(gw, client):
    a = anthropic.Anthropic(
        base_url=f"{gw.origin}/anthropic",
        api_key="sk-none",
        max_retries=0,
    )
    raw = a.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=user("from anthropic"))
    assert raw.headers["x-ringgate-cache"] == "miss"
    first = raw.parse()
    raw = a.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=user("from anthropic"))
    assert raw.headers["x-ringgate-cache"] == "hit"
    assert raw.parse().content[0].text == first.content[0].text
    with a.messages.stream(model=MODEL, max_tokens=64, messages=user("from anthropic")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == first.content[0].text
    assert final.usage.output_tokens == first.usage.output_tokens
    a.close()


def test_embeddings_are_cached(client):
    raw = client.embeddings.with_raw_response.create(model="mock/text-embedding-3-small", input="vector", extra_headers={"x-ringgate-cache-ttl": "60"})
    assert raw.headers["x-ringgate-cache"] == "miss"
    first = raw.parse().data[0].embedding
    raw = client.embeddings.with_raw_response.create(model="mock/text-embedding-3-small", input="vector", extra_headers={"x-ringgate-cache-ttl": "60"})
    assert raw.headers["x-ringgate-cache"] == "hit"
    assert raw.parse().data[0].embedding == first


def test_requests_opt_in_and_out(client):
    # Not turned on for this model: bypassed, never kept.
    assert chat(client, "not configured", model=UNCACHED)[1] == "bypass"
    assert chat(client, "not configured", model=UNCACHED)[1] == "bypass"
    # Opted in per request.
    ttl = {"x-ringgate-cache-ttl": "60"}
    first, cache = chat(client, "opted in", model=UNCACHED, headers=ttl)
    assert cache == "miss"
    second, cache = chat(client, "opted in", model=UNCACHED, headers=ttl)
    assert (cache, second.id) == ("hit", first.id)
    # no-store: neither looked up nor kept; no-cache: a fresh answer, which is then kept.
    third, cache = chat(client, "opted in", model=UNCACHED, headers={**ttl, "x-ringgate-cache": "no-store"})
    assert cache == "bypass" and third.id != first.id
    fresh, cache = chat(client, "opted in", model=UNCACHED, headers={**ttl, "x-ringgate-cache": "no-cache"})
    assert cache == "miss" and fresh.id != first.id
    kept, cache = chat(client, "opted in", model=UNCACHED, headers=ttl)
    assert (cache, kept.id) == ("hit", fresh.id)


def test_bad_cache_headers_are_400s(client):
    for headers in ({"x-ringgate-cache": "maybe"}, {"x-ringgate-cache-ttl": "soon"}):
        with pytest.raises(openai.BadRequestError) as e:
            chat(client, "bad header", headers=headers)
        assert "x-ringgate-cache" in str(e.value)


def test_an_entry_expires_after_its_ttl(client):
    ttl = {"x-ringgate-cache-ttl": "1"}
    first, cache = chat(client, "short lived", model=UNCACHED, headers=ttl)
    assert cache == "miss"
    # Served while fresh (or already a miss on a slow machine), then a miss with a new answer.
    expired = wait_for(
        "the entry to expire",
        lambda: (lambda r: r if r[1] == "miss" else None)(chat(client, "short lived", model=UNCACHED, headers=ttl)),
        timeout_s=10,
    )
    assert expired[0].id != first.id


def test_failures_are_not_kept(client):
    headers = {"x-mock-status": "400"}
    for _ in range(2):
        with pytest.raises(openai.BadRequestError):
            chat(client, "fails", headers=headers)
    ok, cache = chat(client, "fails")
    assert cache == "miss" and ok.choices[0].message.content


def test_the_byte_bound_evicts(workdir, mock):
    config = {
        "shards": 1,
        "cache": {"models": {MODEL: 300}, "max_bytes": 16384, "max_entry_bytes": 4096},
        "providers": {"mock": {"base_url": mock.base_url, "models": ["gpt-4o-mini"]}},
    }
    g = start_gateway(workdir, config)
    try:
        c = oai(g)
        for i in range(64):
            assert chat(c, f"fill the cache {i}")[1] == "miss"
        wait_for("an eviction", lambda: metric(g, "ringgate_cache_evictions_total") > 0 or None)
        assert 0 < metric(g, "ringgate_cache_bytes") <= 16384
        c.close()
    finally:
        g.stop()


@pytest.fixture(scope="module")
def governed(workdir, mock):
    gw, admin = start_governed(
        workdir,
        f"{mock.base_url}",
        str(workdir / "cache-governed.db"),
        ADMIN,
        {"flush_interval_ms": 100, "prices": {"gpt-4o-mini": {"input": "1000", "output": "2000"}}},
        {"cache": {"models": {MODEL: 300}}},
    )
    yield gw, admin
    admin.close()
    gw.stop()


def test_one_key_never_sees_another_keys_answer(governed):
    gw, admin = governed
    _, a = new_key(gw, admin)
    _, b = new_key(gw, admin)
    ca, cb = oai(gw, a), oai(gw, b)
    first, cache = chat(ca, "tenant secret")
    assert cache == "miss"
    assert chat(ca, "tenant secret")[0].id == first.id
    other, cache = chat(cb, "tenant secret")
    assert cache == "miss" and other.id != first.id
    ca.close()
    cb.close()


def test_keys_turn_caching_on_and_off_through_the_admin_api(governed):
    gw, admin = governed
    _, on = new_key(gw, admin, cache_ttl_secs=60)
    _, off = new_key(gw, admin, cache_ttl_secs=0)
    con, coff = oai(gw, on), oai(gw, off)
    # The key turns it on for a model the config does not.
    gw_model = "mock/gpt-4o-mini"
    assert chat(con, "key turned on")[1] == "miss"
    assert chat(con, "key turned on")[1] == "hit"
    # The key turns it off, whatever the config or the request says.
    for _ in range(2):
        assert chat(coff, "key turned off", model=gw_model, headers={"x-ringgate-cache-ttl": "60"})[1] == "bypass"
    con.close()
    coff.close()


def test_hits_count_requests_but_cost_nothing(governed):
    gw, admin = governed
    key_id, secret = new_key(gw, admin, limits={"rpm": 3}, budget={"limit_nanos": 1, "period": "daily"})
    c = oai(gw, secret)
    first, cache = chat(c, "budget of one")
    assert cache == "miss"
    # The budget is spent by the miss; hits cost nothing, so they are still served...
    wait_for("the miss charged", lambda: (admin.get(f"/admin/usage/key/{key_id}").json().get("requests", 0) >= 1) or None)
    for _ in range(2):
        again, cache = chat(c, "budget of one")
        assert (cache, again.id) == ("hit", first.id)
    # ...but each took a request of the rpm limit: the fourth request is refused.
    with pytest.raises(openai.RateLimitError):
        chat(c, "budget of one")
    rows = wait_for(
        "the hits logged",
        lambda: (lambda r: r if len(r) >= 2 else None)(admin.get("/admin/request-logs", params={"key_id": key_id, "cache": "exact"}).json()["data"]),
    )
    assert all(row["cache"] == "exact" for row in rows)
    assert all(row["saved_tokens"] > 0 for row in rows)
    c.close()


def test_an_answer_read_in_many_pieces_is_counted_and_kept_whole(governed):
    # ~200 KB each way: the mock's echo arrives in many reads, so the gateway reads the
    # usage from, and keeps, the body joined from its pieces (a one-read body is read in
    # place, not copied).
    gw, admin = governed
    key_id, secret = new_key(gw, admin)
    c = oai(gw, secret)
    prompt = "pieces " + "0123456789abcdef" * 12_500
    first, cache = chat(c, prompt)
    assert cache == "miss"
    assert first.choices[0].message.content == f"echo: {prompt}"
    usage = usage_of(admin, key_id, 1)
    assert usage["prompt_tokens"] == first.usage.prompt_tokens, usage
    assert usage["completion_tokens"] == first.usage.completion_tokens, usage
    again, cache = chat(c, prompt)
    assert cache == "hit"
    assert again.id == first.id and again.choices[0].message.content == first.choices[0].message.content
    c.close()
