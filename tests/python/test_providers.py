"""Every provider family end to end, over TCP, with the official SDKs as clients.

    openai SDK ----> ringgate /v1/chat/completions, /v1/responses ----> mock-llm in its
    anthropic SDK -> ringgate /anthropic/v1/messages                    OpenAI, Anthropic,
                                                                        Gemini, Bedrock and
                                                                        Azure dialects

The same client code is run against every backing provider: switching `model` is all it takes.
"""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from conftest import start_gateway, start_mock

KEY = "k-provider-test"
MODELS = {
    "openai": "oa/gpt-4o-mini",
    "anthropic": "claude/claude-3-5-haiku",
    "gemini": "gem/gemini-2.0-flash",
    "bedrock": "br/anthropic.claude-3-haiku-20240307-v1:0",
    "azure": "az/my-deployment",
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def providers_gateway(workdir):
    mock = start_mock(workdir, ["--require-key", KEY])
    origin = f"http://127.0.0.1:{mock.port}"
    key = "env.RG_PROVIDER_KEY"
    config = {
        "shards": 2,
        "providers": {
            "oa": {"kind": "openai_compatible", "base_url": f"{origin}/v1", "api_key": key},
            "claude": {"kind": "anthropic", "base_url": f"{origin}/v1", "api_key": key},
            "gem": {"kind": "gemini", "base_url": f"{origin}/v1beta", "api_key": key},
            "br": {
                "kind": "bedrock",
                "base_url": origin,
                "region": "us-east-1",
                "aws_access_key_id": key,
                "aws_secret_access_key": key,
            },
            "az": {"kind": "azure", "base_url": origin, "api_version": "2024-10-21", "api_key": key},
        },
    }
    gw = start_gateway(workdir, config, env={"RG_PROVIDER_KEY": KEY})
    yield gw
    gw.stop()
    mock.stop()


@pytest.fixture(scope="module")
def oai(providers_gateway):
    return openai.OpenAI(
        base_url=f"{providers_gateway.origin}/v1",
        api_key="unused",
        max_retries=0,
        http_client=httpx.Client(trust_env=False),
    )


@pytest.fixture(scope="module")
def claude_sdk(providers_gateway):
    return anthropic.Anthropic(
        base_url=f"{providers_gateway.origin}/anthropic",
        api_key="unused",
        max_retries=0,
    )


@pytest.mark.parametrize("family", list(MODELS))
def test_chat_plain_and_streamed_same_shape(oai, family):
    model = MODELS[family]
    r = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "same shape"}])
    assert r.object == "chat.completion"
    assert r.choices[0].message.content == "echo: same shape"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens > 0

    stream = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "same stream"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert text == "echo: same stream"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


@pytest.mark.parametrize("family", ["anthropic", "gemini", "bedrock"])
def test_tool_calls_plain_and_streamed(oai, family):
    model = MODELS[family]
    messages = [{"role": "user", "content": "what is the weather in Paris"}]
    r = oai.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    assert r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert call.function.arguments.replace(" ", "") == '{"location":"Paris"}'

    name, args, finish = None, "", None
    for chunk in oai.chat.completions.create(model=model, messages=messages, tools=TOOLS, stream=True):
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            name = tc.function.name or name
            args += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert (name, args.replace(" ", ""), finish) == ("get_weather", '{"location":"Paris"}', "tool_calls")


@pytest.mark.parametrize("family", ["openai", "anthropic", "gemini", "bedrock"])
def test_anthropic_sdk_against_any_provider(claude_sdk, family):
    model = MODELS[family]
    r = claude_sdk.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi claude"}])
    assert r.content[0].text == "echo: hi claude"
    assert r.stop_reason == "end_turn"

    with claude_sdk.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi stream"}]) as s:
        assert "".join(s.text_stream) == "echo: hi stream"
        assert s.get_final_message().stop_reason == "end_turn"


@pytest.mark.parametrize("family", ["anthropic", "gemini", "bedrock"])
def test_anthropic_sdk_tool_use(claude_sdk, family):
    tools = [{"name": "get_weather", "description": "w", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}]
    r = claude_sdk.messages.create(
        model=MODELS[family],
        max_tokens=64,
        tools=tools,
        messages=[{"role": "user", "content": "what is the weather"}],
    )
    assert r.stop_reason == "tool_use"
    use = [b for b in r.content if b.type == "tool_use"][0]
    assert (use.name, use.input) == ("get_weather", {"location": "Paris"})


@pytest.mark.parametrize("family", ["openai", "anthropic", "gemini", "bedrock"])
def test_responses_api_against_any_provider(oai, family):
    model = MODELS[family]
    r = oai.responses.create(model=model, input="hello responses")
    assert r.output_text == "echo: hello responses"
    assert r.status == "completed"
    events = list(oai.responses.create(model=model, input="hello stream", stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "echo: hello stream"


@pytest.mark.parametrize("family", ["anthropic", "gemini", "bedrock", "azure"])
def test_provider_errors_keep_status_and_retry_after(oai, family):
    with pytest.raises(openai.RateLimitError) as err:
        oai.chat.completions.create(
            model=MODELS[family],
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mock-status": "429"},
        )
    assert err.value.response.headers.get("retry-after") == "1"
    assert "mock injected 429" in str(err.value)


def test_anthropic_shaped_errors_for_the_anthropic_sdk(claude_sdk):
    with pytest.raises(anthropic.NotFoundError):
        claude_sdk.messages.create(model="nope/none", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.RateLimitError):
        claude_sdk.messages.create(
            model=MODELS["gemini"],
            max_tokens=8,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mock-status": "429"},
        )


@pytest.mark.parametrize(
    "family,fault",
    [
        ("anthropic", "truncate-stream"),
        ("anthropic", "bad-json-chunk"),
        ("gemini", "bad-json-chunk"),
        ("bedrock", "bad-crc"),
        ("bedrock", "truncate-stream"),
    ],
)
def test_malformed_provider_streams_end_with_an_error(oai, family, fault):
    stream = oai.chat.completions.create(
        model=MODELS[family],
        messages=[{"role": "user", "content": "a stream that breaks"}],
        stream=True,
        extra_headers={"x-mock-fail": fault},
    )
    finish = None
    with pytest.raises(openai.APIError):
        for chunk in stream:
            if chunk.choices:
                finish = chunk.choices[0].finish_reason or finish
    assert finish is None, "a broken stream must not look finished"


def test_bedrock_embeddings_titan_and_cohere(oai):
    titan, cohere = "br/amazon.titan-embed-text-v2:0", "br/cohere.embed-english-v3"
    # The mock gives every dialect the same vector for the same text, so the Bedrock answers
    # (base64 by default in the SDK, float on request) must match the OpenAI provider's.
    expected = {
        t: oai.embeddings.create(model=MODELS["openai"], input=t).data[0].embedding
        for t in ("alpha", "beta")
    }

    r = oai.embeddings.create(model=titan, input="alpha")
    assert r.object == "list" and r.model == titan
    assert [d.index for d in r.data] == [0]
    assert r.data[0].embedding == expected["alpha"]
    assert len(r.data[0].embedding) == 16
    assert r.usage.prompt_tokens == 2 and r.usage.total_tokens == 2  # Titan's inputTextTokenCount

    r = oai.embeddings.create(model=titan, input="alpha", dimensions=8, encoding_format="float")
    assert len(r.data[0].embedding) == 8

    with pytest.raises(openai.BadRequestError) as exc:
        oai.embeddings.create(model=titan, input=["alpha", "beta"])
    assert exc.value.status_code == 400
    assert "Titan embeds one input per request" in exc.value.message

    r = oai.embeddings.create(model=cohere, input=["alpha", "beta"])
    assert r.model == cohere
    assert [d.index for d in r.data] == [0, 1]
    assert [d.embedding for d in r.data] == [expected["alpha"], expected["beta"]]
    assert r.usage.prompt_tokens == 3  # estimated: ceil(5/4) + ceil(4/4)

    r = oai.embeddings.create(model=cohere, input="beta", encoding_format="float")
    assert r.data[0].embedding == pytest.approx(expected["beta"])


def test_responses_pass_through_to_a_provider_that_serves_them(workdir):
    """A provider of kind `openai` serves the Responses API itself: the gateway forwards the
    request as it is (the mock marks its own responses `resp_mock_native_…`), while an
    `openai_compatible` provider gets it translated to chat."""
    mock = start_mock(workdir, [])
    origin = f"http://127.0.0.1:{mock.port}"
    config = {
        "shards": 1,
        "providers": {
            "native": {"kind": "openai", "base_url": f"{origin}/v1"},
            "compat": {"kind": "openai_compatible", "base_url": f"{origin}/v1"},
        },
    }
    gw = start_gateway(workdir, config)
    try:
        client = openai.OpenAI(base_url=f"{gw.origin}/v1", api_key="unused", max_retries=0)
        native = client.responses.create(model="native/gpt-4o-mini", input="passed through")
        assert native.id.startswith("resp_mock_native_")
        assert native.output_text == "echo: passed through"
        translated = client.responses.create(model="compat/gpt-4o-mini", input="translated")
        assert not translated.id.startswith("resp_mock_native_")
        assert translated.output_text == "echo: translated"
    finally:
        gw.stop()
        mock.stop()
