"""The rest of the API surface through the official SDKs, governed like chat: audio,
images, moderations, files and batches, and Anthropic's token count.

    openai / anthropic SDK --virtual key--> ringgate (governed, SQLite) --> mock-llm
                                              providers: oa (OpenAI-compatible, default),
                                              az (Azure), claude (Anthropic), gem (Gemini)

The mock's answers are deterministic (mock-llm/src/openai/audio.rs and its siblings): a transcription
lasts ceil(file bytes / 32000) seconds, speech is 64 bytes of audio per input character, a
text is flagged when it says "kill". Costs are checked to the nano-dollar against the
shipped list prices (pricing/prices.yaml).
"""

from __future__ import annotations

import io
import math
import struct
import wave

import anthropic
import httpx
import openai
import pytest

from conftest import governed_gateway, running_mock, wait_for
from test_usage import logs_of, new_key, usage_of

ADMIN = "python-surface-admin-token"
PROVIDER_KEY = "sk-surface-provider"


@pytest.fixture(scope="module")
def surface(workdir):
    # `down` answers every request 503: its models fall over to `oa`'s.
    failing = ["--fail-rate", "1", "--fail-status", "503"]
    with running_mock(workdir, ["--require-key", PROVIDER_KEY]) as mock, running_mock(workdir, failing) as down:
        origin = f"http://127.0.0.1:{mock.port}"
        key = "env.RG_PROVIDER_KEY"
        config = {
            "default_provider": "oa",
            "providers": {
                "oa": {"kind": "openai_compatible", "base_url": f"{origin}/v1", "api_key": key},
                "az": {"kind": "azure", "base_url": origin, "api_version": "2024-10-21", "api_key": key},
                "claude": {"kind": "anthropic", "base_url": f"{origin}/v1", "api_key": key},
                "gem": {"kind": "gemini", "base_url": f"{origin}/v1beta", "api_key": key},
                "down": {"kind": "openai_compatible", "base_url": down.base_url, "api_key": key},
            },
            "fallbacks": {"down/whisper-1": ["oa/whisper-1"], "down/tts-1": ["oa/tts-1"]},
        }
        database = str(workdir / "surface.db")
        governance = {"flush_interval_ms": 50}
        env = {"RG_PROVIDER_KEY": PROVIDER_KEY}
        with governed_gateway(workdir, mock.base_url, database, ADMIN, governance, config=config, env=env) as served:
            yield served


def openai_client(gw, secret: str, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.origin}/v1", api_key=secret, max_retries=0, **kw)


def wav_of(seconds: float) -> bytes:
    """A real WAV file: `seconds` of 16 kHz 16-bit mono silence."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(b"\0\0" * int(16_000 * seconds))
    return buf.getvalue()


def png() -> bytes:
    """A 1×1 PNG (signature and IHDR are enough for an upload)."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + b"\0\0\0\0"


def spent(admin: httpx.Client, key_id: str, requests: int) -> int:
    return usage_of(admin, key_id, requests)["spent_nanos"]


# --------------------------------------------------------------------------- audio


def test_transcription_and_translation_of_a_real_file_are_charged_by_the_second(surface):
    gw, admin = surface
    key_id, secret = new_key(gw, admin)
    client = openai_client(gw, secret)
    audio = wav_of(1.5)
    seconds = math.ceil(len(audio) / 32_000)
    text = client.audio.transcriptions.create(model="oa/whisper-1", file=("speech.wav", audio))
    assert "speech.wav" in text.text and str(len(audio)) in text.text, text
    verbose = client.audio.translations.create(
        model="whisper-1", file=("speech.wav", audio), response_format="verbose_json"
    )
    assert verbose.duration == seconds, verbose
    # Subtitles state no duration: charged to the end of the last cue.
    srt = client.audio.transcriptions.create(model="oa/whisper-1", file=("speech.wav", audio), response_format="srt")
    assert "-->" in srt, srt
    # Plain text states no duration: the provider is asked for json, the client gets its text.
    plain = client.audio.transcriptions.create(model="oa/whisper-1", file=("speech.wav", audio), response_format="text")
    assert plain == f"transcribed {len(audio)} bytes of speech.wav", plain
    # whisper-1: $0.006 a minute, by the second, for each of the four requests.
    assert spent(admin, key_id, 4) == 4 * seconds * 6_000_000 // 60
    rows = logs_of(admin, key_id)
    assert {r["model"] for r in rows} == {"whisper-1"} and all(r["provider"] == "oa" for r in rows), rows


def test_speech_streams_binary_audio_and_is_charged_by_the_character(surface):
    gw, admin = surface
    key_id, secret = new_key(gw, admin)
    client = openai_client(gw, secret)
    words = "héllo from ringgate"
    with client.audio.speech.with_streaming_response.create(model="oa/tts-1", voice="alloy", input=words) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        pieces = list(response.iter_bytes(1024))
    assert sum(len(p) for p in pieces) == 64 * len(words)
    # tts-1: $15 per million characters.
    assert spent(admin, key_id, 1) == len(words) * 15_000


def test_azure_serves_audio_per_deployment(surface):
    gw, admin = surface
    _, secret = new_key(gw, admin)
    client = openai_client(gw, secret)
    text = client.audio.transcriptions.create(model="az/whisper", file=("a.wav", wav_of(0.1)))
    assert text.text
    with client.audio.speech.with_streaming_response.create(model="az/tts", voice="alloy", input="hi") as response:
        assert len(response.read()) == 128


def test_a_failing_provider_falls_over_and_the_upload_is_sent_again(surface):
    gw, admin = surface
    key_id, secret = new_key(gw, admin)
    client = openai_client(gw, secret)
    audio = wav_of(0.5)
    text = client.audio.transcriptions.create(model="down/whisper-1", file=("again.wav", audio))
    assert f"transcribed {len(audio)} bytes of again.wav" == text.text
    with client.audio.speech.with_streaming_response.create(model="down/tts-1", voice="alloy", input="ok") as response:
        assert len(response.read()) == 128
    spent(admin, key_id, 2)
    rows = logs_of(admin, key_id)
    assert [(r["provider"], r["status"]) for r in rows] == [("oa", 200), ("oa", 200)], rows


# --------------------------------------------------------------------------- images, moderations


def test_images_are_charged_by_tier(surface):
    gw, admin = surface
    key_id, secret = new_key(gw, admin)
    client = openai_client(gw, secret)
    made = client.images.generate(model="oa/dall-e-3", prompt="a cat", size="1024x1024", quality="hd", response_format="b64_json")
    assert len(made.data) == 1 and made.data[0].b64_json
    two = client.images.generate(model="dall-e-2", prompt="a dog", n=2, size="512x512")
    assert len(two.data) == 2
    edited = client.images.edit(model="oa/dall-e-2", image=("in.png", png()), prompt="add a hat", size="256x256")
    assert len(edited.data) == 1
    # dall-e-3 hd 1024²: $0.08; dall-e-2 512²: $0.018 each; dall-e-2 256²: $0.016.
    assert spent(admin, key_id, 3) == 80_000_000 + 2 * 18_000_000 + 16_000_000


def test_moderations_with_and_without_a_model(surface):
    gw, admin = surface
    key_id, secret = new_key(gw, admin)
    client = openai_client(gw, secret)
    flagged = client.moderations.create(input="I will kill the process", model="oa/omni-moderation-latest")
    assert flagged.results[0].flagged
    # No model: OpenAI's default, on the default provider.
    calm = client.moderations.create(input=["hello", "goodbye"])
    assert [r.flagged for r in calm.results] == [False, False]
    assert spent(admin, key_id, 2) == 0


# --------------------------------------------------------------------------- files and batches

BATCH_LINES = (
    b'{"custom_id":"1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}}\n'
    b'{"custom_id":"2","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"yo"}]}}\n'
)


def test_files_and_batches_round_trip(surface):
    gw, admin = surface
    key_id, secret = new_key(gw, admin, limits={"rpm": 1000})
    client = openai_client(gw, secret)
    uploaded = client.files.create(file=("in.jsonl", BATCH_LINES), purpose="batch")
    assert uploaded.bytes == len(BATCH_LINES) and uploaded.purpose == "batch"
    assert client.files.retrieve(uploaded.id).filename == "in.jsonl"
    assert client.files.content(uploaded.id).read() == BATCH_LINES
    assert uploaded.id in [f.id for f in client.files.list()]
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.request_counts.total == 2
    assert client.batches.retrieve(batch.id).id == batch.id
    assert batch.id in [b.id for b in client.batches.list()]
    assert client.batches.cancel(batch.id).status in ("cancelling", "cancelled")
    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    # Every call was a governed request, logged against the key.
    assert usage_of(admin, key_id, 9)["requests"] >= 9


def test_files_go_to_the_provider_the_header_names(surface):
    gw, admin = surface
    _, secret = new_key(gw, admin)
    azure = openai_client(gw, secret, default_headers={"x-ringgate-provider": "az"})
    uploaded = azure.files.create(file=("a.jsonl", BATCH_LINES), purpose="batch")
    assert azure.files.retrieve(uploaded.id).id == uploaded.id
    nowhere = openai_client(gw, secret, default_headers={"x-ringgate-provider": "nope"})
    with pytest.raises(openai.BadRequestError) as err:
        nowhere.files.list()
    assert "nope" in err.value.message


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_count_tokens(surface):
    gw, admin = surface
    _, secret = new_key(gw, admin)
    client = anthropic.Anthropic(base_url=f"{gw.origin}/anthropic", api_key=secret, max_retries=0)
    counted = client.messages.count_tokens(
        model="claude/claude-3-5-haiku-latest", messages=[{"role": "user", "content": "count these words please"}]
    )
    assert counted.input_tokens > 0
    # Providers without the endpoint: counted by the gateway with the model's tokenizer
    # (gpt-4o-mini: o200k; "hello world" is two tokens, plus the message's framing).
    def local(model: str, text: str) -> int:
        return client.messages.count_tokens(model=model, messages=[{"role": "user", "content": text}]).input_tokens

    short, long = local("oa/gpt-4o-mini", "hello world"), local("oa/gpt-4o-mini", "hello world " * 10)
    assert 2 < short < long, (short, long)
    assert local("gem/gemini-2.0-flash", "hello world") > 0
    with pytest.raises(anthropic.BadRequestError):
        client.messages.count_tokens(model="oa/gpt-4o-mini", messages=[])


# --------------------------------------------------------------------------- refusals


def test_a_key_limited_to_one_model_is_refused_on_every_route(surface):
    gw, admin = surface
    _, secret = new_key(gw, admin, allowed_models=["oa/gpt-4o-mini"])
    client = openai_client(gw, secret)
    calls = [
        lambda: client.audio.transcriptions.create(model="oa/whisper-1", file=("a.wav", wav_of(0.1))),
        lambda: client.audio.translations.create(model="oa/whisper-1", file=("a.wav", wav_of(0.1))),
        lambda: client.audio.speech.create(model="oa/tts-1", voice="alloy", input="hi"),
        lambda: client.images.generate(model="oa/dall-e-2", prompt="x"),
        lambda: client.images.edit(model="oa/dall-e-2", image=("in.png", png()), prompt="x"),
        lambda: client.moderations.create(input="x"),
        lambda: client.files.create(
            file=("in.jsonl", BATCH_LINES.replace(b"gpt-4o-mini", b"gpt-4o")), purpose="batch"
        ),
    ]
    for call in calls:
        with pytest.raises(openai.PermissionDeniedError):
            call()
    # Its own model in a batch file is fine.
    assert client.files.create(file=("in.jsonl", BATCH_LINES), purpose="batch").id


def test_providers_without_the_api_get_a_4xx_naming_them(surface):
    gw, admin = surface
    _, secret = new_key(gw, admin)
    client = openai_client(gw, secret)
    for call, provider in [
        (lambda: client.audio.speech.create(model="claude/tts-1", voice="alloy", input="hi"), "claude"),
        (lambda: client.images.generate(model="gem/imagen", prompt="x"), "gem"),
        (lambda: client.moderations.create(model="az/omni-moderation-latest", input="x"), "az"),
    ]:
        with pytest.raises(openai.BadRequestError) as err:
            call()
        assert provider in err.value.message, err.value.message


def test_bad_requests_are_clear_4xx(surface):
    gw, admin = surface
    _, secret = new_key(gw, admin)
    auth = {"authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=gw.origin, headers=auth, trust_env=False) as http:
        no_boundary = http.post("/v1/audio/transcriptions", content=b"x", headers={"content-type": "multipart/form-data"})
        assert no_boundary.status_code == 400 and "boundary" in no_boundary.json()["error"]["message"]
        torn = http.post(
            "/v1/audio/transcriptions",
            content=b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1",
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert torn.status_code == 400, torn.text
        assert http.post("/v1/audio/speech", content=b"[1]").status_code == 400
        no_model = http.post("/v1/audio/speech", json={"input": "hi", "voice": "alloy"})
        assert no_model.status_code == 400 and no_model.json()["error"]["code"] == "missing_required_parameter"
        assert http.get("/v1/audio/speech").status_code == 405
        assert http.delete("/v1/batches/b_1").status_code == 405
        assert http.get("/v1/files/f/nothing").status_code == 404
    # The gateway still serves after all of that.
    wait_for("a healthy gateway", lambda: httpx.get(f"{gw.origin}/health", trust_env=False).status_code == 200 or None)
