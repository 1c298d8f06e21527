"""Virtual keys through the official SDKs: the key is simply the SDK's api_key.

    admin API (control port) --creates keys--> ringgate (governance on, SQLite)
    openai / anthropic SDK --api_key=<virtual key>--> ringgate --> mock-llm
"""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from conftest import governed_gateway

ADMIN = "python-governance-admin-token"


@pytest.fixture(scope="module")
def governed(workdir, mock_llm):
    with governed_gateway(
        workdir,
        mock_llm.base_url,
        str(workdir / "governance.db"),
        ADMIN,
        {"flush_interval_ms": 100, "prices": {"gpt-4o-mini": {"input": "1000", "output": "1000"}}},
    ) as served:
        yield served


def new_key(admin: httpx.Client, **fields) -> str:
    r = admin.post("/admin/keys", json={"name": "py", "active": True, **fields})
    assert r.status_code == 201, r.text
    return r.json()["secret"]


def test_openai_sdk_with_a_virtual_key(governed):
    gw, admin = governed
    secret = new_key(admin)
    client = openai.OpenAI(base_url=f"{gw.origin}/v1", api_key=secret, max_retries=0)
    r = client.chat.completions.create(model="mock/gpt-4o-mini", messages=[{"role": "user", "content": "governed"}])
    assert r.choices[0].message.content == "echo: governed"
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="mock/gpt-4o-mini", messages=[{"role": "user", "content": "streamed"}], stream=True
        )
        if c.choices
    )
    assert text == "echo: streamed"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{gw.origin}/v1", api_key="rg-wrong", max_retries=0).models.list()


def test_anthropic_sdk_with_a_virtual_key(governed):
    gw, admin = governed
    secret = new_key(admin)
    client = anthropic.Anthropic(base_url=f"{gw.origin}/anthropic", api_key=secret, max_retries=0)
    r = client.messages.create(model="mock/gpt-4o-mini", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert r.content[0].text == "echo: hi"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=f"{gw.origin}/anthropic", api_key="rg-wrong", max_retries=0).messages.create(
            model="mock/gpt-4o-mini", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )


def test_limits_and_budgets_surface_as_sdk_errors(governed):
    gw, admin = governed
    # A per-day limit: both requests fall in one window unless the test runs across midnight
    # UTC (a per-minute limit would split across a minute boundary about once in 60 runs).
    limited = openai.OpenAI(base_url=f"{gw.origin}/v1", api_key=new_key(admin, limits={"rpd": 1}), max_retries=0)
    limited.chat.completions.create(model="mock/gpt-4o-mini", messages=[{"role": "user", "content": "one"}])
    with pytest.raises(openai.RateLimitError) as err:
        limited.chat.completions.create(model="mock/gpt-4o-mini", messages=[{"role": "user", "content": "two"}])
    assert int(err.value.response.headers["retry-after"]) >= 1
    assert err.value.response.headers["x-ratelimit-limit-requests"] == "1"
    assert err.value.body["code"] == "rate_limit_exceeded"

    broke = openai.OpenAI(
        base_url=f"{gw.origin}/v1",
        api_key=new_key(admin, budget={"limit_nanos": 1, "period": "daily"}),
        max_retries=0,
    )
    broke.chat.completions.create(model="mock/gpt-4o-mini", messages=[{"role": "user", "content": "spend"}])
    with pytest.raises(openai.APIStatusError) as err:
        broke.chat.completions.create(model="mock/gpt-4o-mini", messages=[{"role": "user", "content": "more"}])
    assert err.value.status_code == 402
    assert err.value.body["code"] == "budget_exceeded"


def test_anthropic_clients_get_the_same_refusals_in_their_shape(governed):
    """A refusal made by the gateway reaches an Anthropic client in Anthropic's error shape,
    with the same status and the same Retry-After / x-ratelimit-* headers as OpenAI's."""
    gw, admin = governed
    client = anthropic.Anthropic(
        base_url=f"{gw.origin}/anthropic", api_key=new_key(admin, limits={"rpd": 1}), max_retries=0
    )
    ask = dict(model="mock/gpt-4o-mini", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    client.messages.create(**ask)
    with pytest.raises(anthropic.RateLimitError) as err:
        client.messages.create(**ask)
    assert int(err.value.response.headers["retry-after"]) >= 1
    assert err.value.response.headers["x-ratelimit-limit-requests"] == "1"
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "rate_limit_error"
