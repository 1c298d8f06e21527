"""The model catalog, with the official SDKs against the real binary.

    openai / anthropic SDK -> ringgate GET /v1/models, /anthropic/v1/models
                               coordinator --GET catalog--> mock-llm (OpenAI, Anthropic, Gemini, Azure)

No provider here lists `models` in the config, so everything listed was fetched from the
provider's own catalog by the coordinator (the Anthropic and Gemini catalogs come in pages
of two). Every wait is on a condition (the listing, a metric), never a fixed sleep.
"""

from __future__ import annotations

import re
import ssl

import anthropic
import httpx
import openai
import pytest
import trustme

from conftest import gateway_config, merged, start_gateway, start_governed, start_mock, wait_for
from test_usage import new_key

KEY = "sk-catalog-provider-key"
ADMIN = "python-models-admin-token"

OPENAI_IDS = ["oa/gpt-4o-mini", "oa/gpt-4o", "oa/gpt-3.5-turbo-instruct", "oa/text-embedding-3-small"]
ANTHROPIC_IDS = ["claude/claude-3-5-sonnet-20241022", "claude/claude-3-5-haiku-20241022", "claude/claude-3-opus-20240229"]
GEMINI_IDS = ["gem/gemini-1.5-flash", "gem/gemini-1.5-pro", "gem/gemini-2.0-flash", "gem/text-embedding-004"]
AZURE_IDS = ["az/gpt-4o-mini", "az/embeddings"]


def providers(origin: str) -> dict:
    key = "env.RG_CATALOG_KEY"
    return {
        "oa": {"kind": "openai_compatible", "base_url": f"{origin}/v1", "api_key": key},
        "claude": {"kind": "anthropic", "base_url": f"{origin}/v1", "api_key": key},
        "gem": {"kind": "gemini", "base_url": f"{origin}/v1beta", "api_key": key},
        # An api-version that still lists deployments, and one that no longer does.
        "az": {"kind": "azure", "base_url": origin, "api_version": "2022-12-01", "api_key": key},
        "aznew": {"kind": "azure", "base_url": origin, "api_version": "2024-10-21", "api_key": key},
    }


def metric(gw, name: str, **labels) -> float | None:
    text = httpx.get(f"{gw.control_origin}/metrics", trust_env=False).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    m = re.search(rf"^{name}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def listed(gw, headers: dict | None = None) -> list[str]:
    r = httpx.get(f"{gw.origin}/v1/models", headers=headers or {}, trust_env=False)
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["data"]]


@pytest.fixture(scope="module")
def mock(workdir):
    m = start_mock(workdir, ["--require-key", KEY])
    yield m
    m.stop()


@pytest.fixture(scope="module")
def catalog_gw(workdir, mock):
    origin = f"http://127.0.0.1:{mock.port}"
    config = {
        "shards": 2,
        "catalog": {"refresh_secs": 1},
        "aliases": {"fast": "oa/gpt-4o-mini"},
        "providers": providers(origin),
    }
    gw = start_gateway(workdir, config, env={"RG_CATALOG_KEY": KEY})
    wanted = OPENAI_IDS + ANTHROPIC_IDS + GEMINI_IDS + AZURE_IDS
    wait_for("every provider's catalog", lambda: set(wanted) <= set(listed(gw)) or None)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def oai(catalog_gw):
    with openai.OpenAI(
        base_url=catalog_gw.base_url, api_key="unused", http_client=openai.DefaultHttpxClient(trust_env=False), max_retries=0
    ) as c:
        yield c


@pytest.fixture(scope="module")
def claude(catalog_gw):
    with anthropic.Anthropic(
        base_url=f"{catalog_gw.origin}/anthropic",
        api_key="unused",
        http_client=anthropic.DefaultHttpxClient(trust_env=False),
        max_retries=0,
    ) as c:
        yield c


def test_openai_sdk_lists_every_fetched_catalog(oai):
    ids = [m.id for m in oai.models.list()]
    # Providers in name order, each in its catalog's order, then the aliases.
    assert ids == AZURE_IDS + ANTHROPIC_IDS + GEMINI_IDS + OPENAI_IDS + ["fast"]
    models = {m.id: m for m in oai.models.list()}
    assert models["oa/gpt-4o"].owned_by == "oa"
    assert models["oa/gpt-4o"].created == 1700000000
    assert models["fast"].owned_by == "ringgate"


def test_openai_sdk_retrieves_one_model_with_its_price(oai):
    m = oai.models.retrieve("oa/gpt-4o-mini")
    assert (m.id, m.object, m.owned_by) == ("oa/gpt-4o-mini", "model", "oa")
    assert m.model_extra["pricing"] == {"input_per_million_tokens": 0.15, "output_per_million_tokens": 0.6, "currency": "USD"}
    assert oai.models.retrieve("gem/gemini-2.0-flash").model_extra["pricing"]["output_per_million_tokens"] == 0.4
    # No price known: no pricing object.
    assert "pricing" not in (oai.models.retrieve("claude/claude-3-opus-20240229").model_extra or {})
    # An alias is priced like the model it names.
    assert oai.models.retrieve("fast").model_extra["pricing"]["input_per_million_tokens"] == 0.15


def test_unknown_model_is_404_in_each_api_shape(oai, claude):
    with pytest.raises(openai.NotFoundError) as e:
        oai.models.retrieve("oa/no-such-model")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(anthropic.NotFoundError) as e:
        claude.models.retrieve("claude/no-such-model")
    assert e.value.body["error"]["type"] == "not_found_error"


def test_anthropic_sdk_lists_and_retrieves(claude):
    models = list(claude.models.list())
    ids = [m.id for m in models]
    assert ids[: len(AZURE_IDS + ANTHROPIC_IDS)] == AZURE_IDS + ANTHROPIC_IDS
    haiku = claude.models.retrieve("claude/claude-3-5-haiku-20241022")
    assert haiku.display_name == "Claude Haiku 3.5"
    assert haiku.created_at.isoformat() == "2024-10-22T00:00:00+00:00"
    assert haiku.type == "model"


def test_catalog_metrics(catalog_gw):
    for provider, n in [("oa", 4), ("claude", 3), ("gem", 4), ("az", 2), ("aznew", 0)]:
        assert metric(catalog_gw, "ringgate_catalog_models", provider=provider) == n, provider
    assert metric(catalog_gw, "ringgate_catalog_refreshes_total", provider="gem", result="ok") >= 1
    # Azure api-versions from 2023-05-15 on do not list deployments.
    assert metric(catalog_gw, "ringgate_catalog_refreshes_total", provider="aznew", result="unsupported") >= 1


def test_failed_refresh_keeps_the_last_list(catalog_gw, mock):
    control = f"http://127.0.0.1:{mock.port}/mock/catalog"
    before = metric(catalog_gw, "ringgate_catalog_refreshes_total", provider="oa", result="error") or 0
    assert httpx.post(f"{control}?fail=1", trust_env=False).status_code == 200
    try:
        wait_for(
            "a failed refresh",
            lambda: (metric(catalog_gw, "ringgate_catalog_refreshes_total", provider="oa", result="error") or 0) > before or None,
        )
        assert set(OPENAI_IDS + ANTHROPIC_IDS + GEMINI_IDS) <= set(listed(catalog_gw))
        assert metric(catalog_gw, "ringgate_catalog_models", provider="oa") == 4
    finally:
        httpx.post(f"{control}?fail=0", trust_env=False)


def test_a_key_sees_only_the_models_it_may_use(workdir, mock):
    origin = f"http://127.0.0.1:{mock.port}"
    gw, admin = start_governed(
        workdir,
        f"{origin}/v1",
        str(workdir / "models.db"),
        ADMIN,
        {},
        config={"providers": {"oa": providers(origin)["oa"]}},
        env={"RG_CATALOG_KEY": KEY},
    )
    try:
        _, everything = new_key(gw, admin)
        auth = {"authorization": f"Bearer {everything}"}
        wait_for("the fetched catalog", lambda: "oa/gpt-4o" in listed(gw, auth) or None)
        assert listed(gw, auth) == ["mock/gpt-4o-mini"] + OPENAI_IDS
        _, one = new_key(gw, admin, allowed_models=["oa/gpt-4o"])
        with openai.OpenAI(base_url=gw.base_url, api_key=one, http_client=openai.DefaultHttpxClient(trust_env=False), max_retries=0) as c:
            assert [m.id for m in c.models.list()] == ["oa/gpt-4o"]
            assert c.models.retrieve("oa/gpt-4o").id == "oa/gpt-4o"
            with pytest.raises(openai.NotFoundError):
                c.models.retrieve("oa/gpt-4o-mini")
        r = httpx.get(f"{gw.origin}/anthropic/v1/models", headers={"x-api-key": one}, trust_env=False)
        assert [m["id"] for m in r.json()["data"]] == ["oa/gpt-4o"]
        assert httpx.get(f"{gw.origin}/v1/models", trust_env=False).status_code == 401
    finally:
        admin.close()
        gw.stop()


def test_catalog_fetched_over_tls(workdir, mock_llm):
    """The catalog request crosses rustls: an https provider (another ringgate, serving
    `localhost` with a certificate of a CA made here) verified against `ca_file`."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_path, cert_path, key_path = workdir / "models-ca.pem", workdir / "models-cert.pem", workdir / "models-key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    tls = {"tls": {"cert_file": str(cert_path), "key_file": str(key_path)}}
    inner = start_gateway(workdir, merged(gateway_config(mock_llm.base_url, shards=1), tls))
    edge = None
    try:
        upstream = {"base_url": f"https://localhost:{inner.port}/v1", "ca_file": str(ca_path)}
        edge = start_gateway(workdir, {"shards": 1, "providers": {"inner": upstream}})
        wait_for("the https catalog", lambda: "inner/mock/gpt-4o-mini" in listed(edge) or None)
        assert listed(edge) == ["inner/mock/gpt-4o-mini", "inner/mock/text-embedding-3-small", "inner/fast"]
        # The inner gateway itself is reached over TLS by the SDK as well.
        verify = ssl.create_default_context(cafile=str(ca_path))
        with openai.OpenAI(base_url=inner.base_url, api_key="unused", http_client=httpx.Client(verify=verify, trust_env=False)) as c:
            assert c.models.retrieve("mock/gpt-4o-mini").owned_by == "mock"
    finally:
        if edge:
            edge.stop()
        inner.stop()
