"""Real TLS on both sides of the gateway, with certificates made for this test (trustme).

    openai SDK --https--> ringgate "edge" (tls.cert_file/key_file)
               --https--> ringgate "inner" (provider base_url https://localhost, ca_file = test CA)
               --http---> mock-llm

The edge gateway terminates client TLS; its upstream is the inner gateway, reached over TLS
verified against the test CA. So one request crosses ringgate's TLS server and TLS client.
"""

from __future__ import annotations

import ssl
import socket

import httpx
import openai
import pytest
import trustme

from conftest import gateway_config, merged, start_gateway


@pytest.fixture(scope="module")
def tls_chain(workdir, mock_llm):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_path = workdir / "ca.pem"
    cert_path = workdir / "server.pem"
    key_path = workdir / "server.key"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))

    tls = {"tls": {"cert_file": str(cert_path), "key_file": str(key_path)}}
    inner = start_gateway(workdir, merged(gateway_config(mock_llm.base_url, shards=1), tls))
    edge_config = {
        **tls,
        "shards": 1,
        "providers": {"inner": {"base_url": f"https://localhost:{inner.port}/v1", "ca_file": str(ca_path)}},
    }
    edge = start_gateway(workdir, edge_config)
    yield edge, str(ca_path)
    edge.stop()
    inner.stop()


def test_sdk_over_tls_through_tls_upstream(tls_chain):
    edge, ca_path = tls_chain
    client = openai.OpenAI(
        base_url=f"{edge.origin}/v1",
        api_key="unused",
        http_client=httpx.Client(verify=ssl.create_default_context(cafile=ca_path), trust_env=False),
        max_retries=0,
    )
    # edge sees model "inner/mock/gpt-4o-mini" -> sends "mock/gpt-4o-mini" to inner -> mock gets "gpt-4o-mini"
    resp = client.chat.completions.create(
        model="inner/mock/gpt-4o-mini",
        messages=[{"role": "user", "content": "over tls"}],
    )
    assert resp.choices[0].message.content == "echo: over tls"
    assert resp.model == "gpt-4o-mini"

    stream = client.chat.completions.create(
        model="inner/mock/gpt-4o-mini",
        messages=[{"role": "user", "content": "streamed over tls"}],
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo: streamed over tls"


def test_untrusted_client_is_refused(tls_chain):
    edge, _ = tls_chain
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{edge.origin}/health", verify=True, trust_env=False)


def test_plaintext_to_tls_port_gets_no_http_answer(tls_chain):
    edge, _ = tls_chain
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(1024)
        except (ConnectionResetError, TimeoutError):
            data = b""
        assert not data.startswith(b"HTTP/1.1 200")


def test_tls_1_2_and_1_3_are_accepted(tls_chain):
    edge, ca_path = tls_chain
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=ca_path)
        ctx.minimum_version = version
        ctx.maximum_version = version
        with httpx.Client(verify=ctx, trust_env=False) as c:
            assert c.get(f"{edge.origin}/health").status_code == 200
