"""Governance binds when the provider is silent and when the client leaves.

    openai SDK / raw httpx --virtual key--> ringgate (governed, SQLite) --> mock-llm --no-usage

mock-llm here never reports usage (like many OpenAI-compatible servers, even when asked with
`stream_options.include_usage`), so every token the gateway charges it counted itself.
"""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import openai
import pytest

from conftest import governed_gateway, running_mock, wait_for

ADMIN = "python-usage-admin-token"
MODEL = "mock/gpt-4o-mini"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def silent(request, workdir):
    """The gateway on each store: embedded SQLite, and the suite's PostgreSQL (DATABASE_URL,
    which scripts/test.sh always sets; without it the test fails rather than skips)."""
    governance = {"flush_interval_ms": 50, "prices": {"gpt-4o-mini": {"input": "1000", "output": "1000", "max_output": 64}}}
    schema = None
    if request.param == "sqlite":
        database = str(workdir / "usage.db")
    else:
        database = os.environ.get("DATABASE_URL")
        assert database, "DATABASE_URL is not set: run `bash scripts/test.sh`, which finds or starts a PostgreSQL"
        # A schema of its own: no other test hears its notifications or sees its counters.
        schema = f"py_usage_{os.getpid()}_{time.monotonic_ns()}"
        governance["database_schema"] = schema
    try:
        with running_mock(workdir, ["--no-usage"]) as mock, governed_gateway(
            workdir, mock.base_url, database, ADMIN, governance
        ) as served:
            yield served
    finally:
        # Also when the gateway never started: the schema does not outlive the fixture.
        if schema:
            subprocess.run(["psql", database, "-X", "-q", "-c", f"DROP SCHEMA IF EXISTS {schema} CASCADE"], check=True)


def new_key(gw, admin: httpx.Client, **fields) -> tuple[str, str]:
    """Creates a key and waits until the node knows it (`/v1/models` stops answering 401)."""
    r = admin.post("/admin/keys", json={"name": "usage", "active": True, **fields})
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    auth = {"authorization": f"Bearer {secret}"}
    wait_for(
        "the node to know the key",
        lambda: httpx.get(f"{gw.origin}/v1/models", headers=auth, trust_env=False).status_code != 401 or None,
    )
    return r.json()["key"]["id"], secret


def usage_of(admin: httpx.Client, key_id: str, requests: int) -> dict:
    """The key's stored usage once it holds `requests` requests."""

    def probe():
        u = admin.get(f"/admin/usage/key/{key_id}").json()
        return u if u.get("requests", 0) >= requests else None

    return wait_for(f"usage of {requests} requests", probe)


def logs_of(admin: httpx.Client, key_id: str) -> list[dict]:
    return [r for r in admin.get("/admin/request-logs?limit=500").json()["data"] if r["key_id"] == key_id]


def stream_text(client: openai.OpenAI, prompt: str, **kw) -> str:
    chunks = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True, **kw
    )
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_silent_streams_are_counted_and_budgets_bind(silent):
    gw, admin = silent
    key_id, secret = new_key(gw, admin, budget={"limit_nanos": 1, "period": "daily"})
    client = openai.OpenAI(base_url=f"{gw.origin}/v1", api_key=secret, max_retries=0)
    assert stream_text(client, "count me please") == "echo: count me please"
    usage = usage_of(admin, key_id, 1)
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0, usage
    # $1000 per million tokens: a nano-dollar per thousandth of a token, so never zero.
    assert usage["spent_nanos"] == (usage["prompt_tokens"] + usage["completion_tokens"]) * 1_000_000, usage
    logs = logs_of(admin, key_id)
    assert logs and all(r["usage_estimated"] for r in logs), logs
    # The counted spend used up the budget: the provider's silence does not make it free.
    with pytest.raises(openai.APIStatusError) as err:
        stream_text(client, "again")
    assert err.value.status_code == 402
    metrics = httpx.get(f"{gw.control_origin}/metrics", trust_env=False).text
    estimated = sum(
        int(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("ringgate_usage_estimated_total{")
    )
    assert estimated >= 1


def test_token_limits_bind_on_counted_tokens(silent):
    gw, admin = silent
    # Each request is admitted on its prompt plus max_tokens and charged what the gateway
    # counted (about a dozen tokens): a per-day limit of 40 admits a few, then refuses,
    # although the provider reports nothing.
    key_id, secret = new_key(gw, admin, limits={"tpd": 40})
    client = openai.OpenAI(base_url=f"{gw.origin}/v1", api_key=secret, max_retries=0)
    statuses = []
    for _ in range(8):
        try:
            stream_text(client, "hi", max_tokens=5)
            statuses.append(200)
        except openai.APIStatusError as e:
            statuses.append(e.status_code)
    admitted = statuses.count(200)
    assert admitted >= 2 and statuses[admitted:] == [429] * (8 - admitted), statuses
    usage = usage_of(admin, key_id, admitted)
    assert 20 <= usage["prompt_tokens"] + usage["completion_tokens"] <= 40, usage


def test_without_max_tokens_the_estimate_is_the_models_max_output(silent):
    gw, admin = silent
    # No max_tokens: the estimate is the prompt plus the catalog's max_output (64 here), so
    # a limit below that admits nothing rather than overshoot by an unknown output.
    _, secret = new_key(gw, admin, limits={"tpd": 60})
    client = openai.OpenAI(base_url=f"{gw.origin}/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        stream_text(client, "hi")


def test_a_client_that_leaves_mid_stream_is_charged_prompt_and_what_it_got(silent):
    gw, admin = silent
    key_id, secret = new_key(gw, admin)
    prompt = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": True}
    headers = {"authorization": f"Bearer {secret}"}
    # The whole stream, for comparison.
    full = httpx.post(f"{gw.origin}/v1/chat/completions", json=body, headers=headers, trust_env=False)
    assert full.status_code == 200
    whole = usage_of(admin, key_id, 1)
    # Now leave after three content events of a slow stream (one event per 200 ms).
    slow = {**headers, "x-mock-stream-chunks": "16", "x-mock-stream-interval-ms": "200"}
    with httpx.Client(trust_env=False, timeout=10) as c:
        with c.stream("POST", f"{gw.origin}/v1/chat/completions", json=body, headers=slow) as r:
            assert r.status_code == 200
            seen = 0
            for line in r.iter_lines():
                if line.startswith("data: {") and '"content"' in line:
                    seen += 1
                    if seen == 3:
                        break
    both = usage_of(admin, key_id, 2)
    prompt_tokens = both["prompt_tokens"] - whole["prompt_tokens"]
    completion = both["completion_tokens"] - whole["completion_tokens"]
    assert prompt_tokens == whole["prompt_tokens"], (whole, both)
    # Never zero for a request the provider worked on, and not the whole answer either.
    assert 1 <= completion < whole["completion_tokens"], (whole, both)
    statuses = sorted(r["status"] for r in logs_of(admin, key_id))
    assert statuses == [200, 200], statuses
