"""The official `openai` SDK, pointed at ringgate, talking to mock-llm behind it.

mock-llm replies "echo: " + the last user message, echoes the request model
(after the gateway stripped the `provider/` prefix), and honours x-mock-* request
headers, which the gateway forwards.
"""

from __future__ import annotations

import httpx
import openai
import pytest

CHAT_MODEL = "mock/gpt-4o-mini"
EMBED_MODEL = "mock/text-embedding-3-small"
UPSTREAM_CHAT_MODEL = "gpt-4o-mini"  # what mock-llm sees and echoes back


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def collect_stream(stream) -> tuple[str, str | None, object | None, int]:
    """Assemble a chat stream: (text, last finish_reason, usage, chunk count)."""
    text, finish, usage, n = [], None, None, 0
    for chunk in stream:
        n += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta is not None and choice.delta.content:
                text.append(choice.delta.content)
            if choice.finish_reason is not None:
                finish = choice.finish_reason
    return "".join(text), finish, usage, n


# --------------------------------------------------------------------------- models


def test_models_list_contains_provider_qualified_ids(client):
    ids = {m.id for m in client.models.list()}
    assert CHAT_MODEL in ids, ids
    assert EMBED_MODEL in ids, ids


# --------------------------------------------------------------------------- chat


def test_chat_completion_echoes_and_reports_usage(client):
    resp = client.chat.completions.create(model=CHAT_MODEL, messages=user("hello gateway"))
    assert resp.choices[0].message.content == "echo: hello gateway"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == UPSTREAM_CHAT_MODEL, "prefix should be stripped before forwarding"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_chat_uses_last_user_message(client):
    messages = [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": "second"},
    ]
    resp = client.chat.completions.create(model=CHAT_MODEL, messages=messages)
    assert resp.choices[0].message.content == "echo: second"


def test_chat_stream_assembles_full_text(client):
    prompt = "stream me a reasonably long sentence so it splits into several chunks"
    stream = client.chat.completions.create(model=CHAT_MODEL, messages=user(prompt), stream=True)
    text, finish, usage, n = collect_stream(stream)
    assert text == f"echo: {prompt}"
    assert finish == "stop"
    assert n > 1, "expected the reply to arrive in more than one chunk"
    assert usage is None, "usage chunk only when stream_options.include_usage is set"


def test_chat_stream_include_usage(client):
    prompt = "count my tokens"
    stream = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=user(prompt),
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage, _ = collect_stream(stream)
    assert text == f"echo: {prompt}"
    assert finish == "stop"
    assert usage is not None, "usage chunk missing"
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_stream_chunk_count_follows_forwarded_header(client):
    prompt = "sixteen pieces please, as many as the header asks for"
    stream = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=user(prompt),
        stream=True,
        extra_headers={"x-mock-stream-chunks": "16"},
    )
    text, finish, _, n = collect_stream(stream)
    assert text == f"echo: {prompt}"
    assert finish == "stop"
    assert n >= 16, f"x-mock-stream-chunks should reach mock-llm through the gateway (got {n} chunks)"


def test_alias_model(client):
    resp = client.chat.completions.create(model="fast", messages=user("via alias"))
    assert resp.choices[0].message.content == "echo: via alias"
    assert resp.model == UPSTREAM_CHAT_MODEL


def test_bare_model_goes_to_default_provider(client):
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=user("bare name"))
    assert resp.choices[0].message.content == "echo: bare name"
    assert resp.model == UPSTREAM_CHAT_MODEL


def test_concurrent_streams_do_not_mix(client):
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> str:
        stream = client.chat.completions.create(
            model=CHAT_MODEL, messages=user(f"request number {i}"), stream=True
        )
        text, finish, _, _ = collect_stream(stream)
        assert finish == "stop"
        return text

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(16)))
    assert results == [f"echo: request number {i}" for i in range(16)]


# --------------------------------------------------------------------------- completions / embeddings


def test_legacy_completions(client):
    resp = client.completions.create(model=CHAT_MODEL, prompt="complete this")
    assert resp.choices[0].text == "echo: complete this"


def test_embeddings_default_base64(client):
    # The SDK asks for encoding_format=base64 by default and decodes it itself.
    resp = client.embeddings.create(model=EMBED_MODEL, input=["alpha", "beta"])
    assert len(resp.data) == 2
    for item in resp.data:
        assert len(item.embedding) == 16
        assert all(isinstance(x, float) for x in item.embedding)


def test_embeddings_float_format(client):
    resp = client.embeddings.create(model=EMBED_MODEL, input="alpha", encoding_format="float")
    assert len(resp.data) == 1
    assert len(resp.data[0].embedding) == 16


def test_embeddings_dimensions(client):
    resp = client.embeddings.create(model=EMBED_MODEL, input="alpha", dimensions=8)
    assert len(resp.data[0].embedding) == 8


# --------------------------------------------------------------------------- errors


def test_unknown_model_is_not_found(client_no_retry):
    with pytest.raises(openai.NotFoundError) as exc:
        client_no_retry.chat.completions.create(model="mock/no-such-model", messages=user("x"))
    assert exc.value.status_code == 404
    assert exc.value.code == "model_not_found"


def test_unknown_provider_is_not_found(client_no_retry):
    with pytest.raises(openai.NotFoundError) as exc:
        client_no_retry.chat.completions.create(model="nosuchprovider/gpt-4o-mini", messages=user("x"))
    assert exc.value.code == "model_not_found"


def test_upstream_429_is_a_rate_limit_error(client_no_retry):
    with pytest.raises(openai.RateLimitError) as exc:
        client_no_retry.chat.completions.create(
            model=CHAT_MODEL, messages=user("x"), extra_headers={"x-mock-status": "429"}
        )
    assert exc.value.status_code == 429
    body = exc.value.body
    assert isinstance(body, dict) and "message" in body, f"OpenAI error shape expected, got {body!r}"


def test_upstream_500_passes_through(client_no_retry):
    with pytest.raises(openai.InternalServerError) as exc:
        client_no_retry.chat.completions.create(
            model=CHAT_MODEL, messages=user("x"), extra_headers={"x-mock-status": "500"}
        )
    assert exc.value.status_code == 500


def test_stream_reset_mid_stream_is_not_a_complete_answer(client_no_retry):
    prompt = "this stream will be cut off by the upstream before it finishes"
    expected = f"echo: {prompt}"
    error: BaseException | None = None
    text, finish = "", None
    try:
        stream = client_no_retry.chat.completions.create(
            model=CHAT_MODEL,
            messages=user(prompt),
            stream=True,
            extra_headers={"x-mock-fail": "reset-mid-stream", "x-mock-stream-chunks": "8"},
        )
        text, finish, _, _ = collect_stream(stream)
    except (openai.APIError, httpx.HTTPError) as e:
        error = e
    assert not (text == expected and finish == "stop"), "a broken upstream stream looked complete to the client"
    assert error is not None or finish != "stop", (
        f"stream ended cleanly with finish_reason={finish!r} and text={text!r} although the upstream reset"
    )


def test_gateway_still_serves_after_broken_stream(client):
    # Runs after the reset test in file order; the gateway must not have been wedged by it.
    resp = client.chat.completions.create(model=CHAT_MODEL, messages=user("still alive"))
    assert resp.choices[0].message.content == "echo: still alive"


# --------------------------------------------------------------------------- plain HTTP


def test_health_and_ready(http):
    assert http.get("/health").status_code == 200
    assert http.get("/ready").status_code == 200


def test_unknown_model_error_shape(http):
    r = http.post("/v1/chat/completions", json={"model": "mock/nope", "messages": user("x")})
    assert r.status_code == 404
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert err["code"] == "model_not_found"


def test_request_ids_reach_the_sdk_on_answers_and_errors(client, client_no_retry):
    """The SDK reads `x-request-id` as `_request_id`: the gateway's own id, or the client's."""
    resp = client.chat.completions.create(model=CHAT_MODEL, messages=user("id please"))
    assert resp._request_id and len(resp._request_id) == 32, resp._request_id
    mine = client.chat.completions.create(
        model=CHAT_MODEL, messages=user("id please"), extra_headers={"x-request-id": "sdk-chosen-7"}
    )
    assert mine._request_id == "sdk-chosen-7"
    with pytest.raises(openai.NotFoundError) as exc:
        client_no_retry.chat.completions.create(model="mock/no-such-model", messages=user("x"))
    assert exc.value.request_id and len(exc.value.request_id) == 32
