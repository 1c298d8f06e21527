//! `POST /v1/audio/transcriptions`, `/v1/audio/translations` and `/v1/audio/speech`.
//!
//! Nothing is heard or spoken: a transcript names the upload's size and file name, and its
//! length in seconds is derived from the size, so a gateway's per-second charge is
//! predictable; speech is a fixed byte pattern whose length follows the input's characters.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::multipart::Form;
use super::Call;
use crate::reply::{completion_tokens, to_bytes, Output, Rejection, StreamOutput};

/// Upload bytes that count as one second of audio (16 kHz, 16-bit mono).
const BYTES_PER_SECOND: usize = 32_000;
/// Input tokens per second of audio for the token-billed (`gpt-4o-*`) models.
const TOKENS_PER_SECOND: usize = 10;
/// Speech bytes per character of input.
const SPEECH_BYTES_PER_CHAR: usize = 64;
/// Largest body frame of a speech reply, so that it arrives as several chunks.
const SPEECH_CHUNK: usize = 4096;
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// Which of the two speech-to-text endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Transcribe,
    Translate,
}

/// `POST /v1/audio/transcriptions` or `/v1/audio/translations`.
pub fn transcription(call: &Call<'_>, task: Task) -> Result<Output, Rejection> {
    let form = Form::parse(call.content_type, call.body)?;
    let file = form.file("file")?;
    let model = call.model(form.text("model")?)?;
    let bytes = file.data.len();
    let seconds = bytes.div_ceil(BYTES_PER_SECOND).max(1);
    let (task_name, verb) = match task {
        Task::Transcribe => ("transcribe", "transcribed"),
        Task::Translate => ("translate", "translated"),
    };
    let filename = file.filename.as_deref().unwrap_or_default();
    let text = format!("{verb} {bytes} bytes of {filename}");
    let duration = json!({"type": "duration", "seconds": seconds});
    let raw = |body: String| {
        Ok(Output::Raw {
            content_type: TEXT_PLAIN,
            body: Bytes::from(body),
        })
    };
    match form.text("response_format")?.unwrap_or("json") {
        "json" => {
            let usage = if model.contains("gpt-4o") {
                let (input, output) = (seconds * TOKENS_PER_SECOND, completion_tokens(&text));
                json!({"type": "tokens", "input_tokens": input, "output_tokens": output,
                       "total_tokens": input + output})
            } else {
                duration
            };
            Ok(Output::Json(to_bytes(
                &json!({"text": text, "usage": usage}),
            )))
        }
        "verbose_json" => Ok(Output::Json(to_bytes(&json!({
            "task": task_name,
            "language": "english",
            "duration": seconds,
            "text": text,
            "segments": [],
            "usage": duration,
        })))),
        "text" => raw(text),
        "srt" => raw(format!(
            "1\n{} --> {}\n{text}\n\n",
            timestamp(0, ','),
            timestamp(seconds, ',')
        )),
        "vtt" => raw(format!(
            "WEBVTT\n\n{} --> {}\n{text}\n\n",
            timestamp(0, '.'),
            timestamp(seconds, '.')
        )),
        other => Err(Rejection::invalid(
            "response_format",
            format!(
                "Invalid response_format {other:?}: expected json, verbose_json, text, srt or vtt"
            ),
        )),
    }
}

/// `HH:MM:SS,mmm` (SubRip) or `HH:MM:SS.mmm` (WebVTT).
fn timestamp(seconds: usize, millis_separator: char) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    format!("{h:02}:{m:02}:{s:02}{millis_separator}000")
}

#[derive(Deserialize)]
struct SpeechRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    input: Option<String>,
    /// A voice name, or `{"id": ...}` for a custom voice.
    #[serde(default)]
    voice: Option<Value>,
    #[serde(default)]
    response_format: Option<String>,
}

/// `POST /v1/audio/speech`: [`SPEECH_BYTES_PER_CHAR`] bytes per character of `input`, sent
/// in frames of at most [`SPEECH_CHUNK`] bytes (chunked encoding), like a provider that
/// streams its audio out as it is made; the stream faults of `x-mock-fail` cut it.
pub fn speech(call: &Call<'_>) -> Result<Output, Rejection> {
    let req: SpeechRequest = call.json()?;
    call.model(req.model.as_deref())?;
    let input = req
        .input
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Rejection::invalid("input", "Missing required parameter: 'input'."))?;
    if req.voice.is_none_or(|v| v.is_null()) {
        return Err(Rejection::invalid(
            "voice",
            "Missing required parameter: 'voice'.",
        ));
    }
    let content_type = match req.response_format.as_deref().unwrap_or("mp3") {
        "mp3" => "audio/mpeg",
        "opus" => "audio/opus",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "pcm" => "audio/pcm",
        other => {
            return Err(Rejection::invalid(
                "response_format",
                format!(
                    "Invalid response_format {other:?}: expected mp3, opus, aac, flac, wav or pcm"
                ),
            ))
        }
    };
    let audio = Bytes::from(speech_bytes(input.chars().count() * SPEECH_BYTES_PER_CHAR));
    let events: Vec<Bytes> = (0..audio.len())
        .step_by(SPEECH_CHUNK)
        .map(|at| audio.slice(at..audio.len().min(at + SPEECH_CHUNK)))
        .collect();
    Ok(Output::Stream(StreamOutput {
        content: 0..events.len(),
        events,
        content_type,
        bad_event: Bytes::from_static(b"\0mock: not audio\0"),
        crc_framed: false,
    }))
}

/// The bytes 0, 1, ..., 255, 0, 1, ... so that a reassembled body can be checked.
fn speech_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{form_call, json_call, FormPart};
    use super::*;
    use crate::reply::json;

    fn upload(parts: &[FormPart<'_>], task: Task) -> Result<Output, Rejection> {
        form_call(|call| transcription(call, task), parts, None)
    }

    fn audio(model: &str, format: Option<&str>, bytes: usize) -> Output {
        let data = vec![0u8; bytes];
        let mut parts = vec![
            ("model", None, model.as_bytes()),
            ("file", Some("talk.wav"), &data[..]),
        ];
        if let Some(f) = format {
            parts.push(("response_format", None, f.as_bytes()));
        }
        upload(&parts, Task::Transcribe).unwrap()
    }

    #[test]
    fn transcription_json_counts_seconds() {
        let v = json(&audio("whisper-1", None, 64_001).into_json());
        assert_eq!(
            v,
            json!({"text": "transcribed 64001 bytes of talk.wav",
                   "usage": {"type": "duration", "seconds": 3}})
        );
        // An empty upload still lasts a second.
        let v = json(&audio("whisper-1", Some("json"), 0).into_json());
        assert_eq!(v["usage"]["seconds"], 1);
    }

    #[test]
    fn gpt_4o_models_report_tokens() {
        let v = json(&audio("gpt-4o-mini-transcribe", None, 32_000).into_json());
        assert_eq!(
            v["usage"],
            json!({"type": "tokens", "input_tokens": 10, "output_tokens": 5, "total_tokens": 15})
        );
    }

    #[test]
    fn verbose_json_and_translation() {
        let data = [1u8; 10];
        let parts = [
            ("model", None, &b"whisper-1"[..]),
            ("file", Some("fr.mp3"), &data[..]),
            ("response_format", None, b"verbose_json"),
            ("language", None, b"fr"),
            ("temperature", None, b"0.2"),
        ];
        let v = json(&upload(&parts, Task::Translate).unwrap().into_json());
        assert_eq!(
            v,
            json!({"task": "translate", "language": "english", "duration": 1,
                   "text": "translated 10 bytes of fr.mp3", "segments": [],
                   "usage": {"type": "duration", "seconds": 1}})
        );
    }

    #[test]
    fn text_and_subtitles() {
        let (kind, body) = audio("whisper-1", Some("text"), 5).into_raw();
        assert_eq!(
            (kind, &body[..]),
            (TEXT_PLAIN, &b"transcribed 5 bytes of talk.wav"[..])
        );
        let (_, srt) = audio("whisper-1", Some("srt"), 3_600 * 32_000).into_raw();
        assert_eq!(
            srt,
            "1\n00:00:00,000 --> 01:00:00,000\ntranscribed 115200000 bytes of talk.wav\n\n"
        );
        let (_, vtt) = audio("whisper-1", Some("vtt"), 100_000).into_raw();
        assert_eq!(
            vtt,
            "WEBVTT\n\n00:00:00.000 --> 00:00:04.000\ntranscribed 100000 bytes of talk.wav\n\n"
        );
    }

    #[test]
    fn refused_uploads() {
        let file = ("file", Some("a.wav"), &b"x"[..]);
        let no_model = upload(&[file], Task::Transcribe).unwrap_err();
        assert_eq!(no_model.param, Some("model"));
        let no_file = upload(&[("model", None, b"whisper-1")], Task::Transcribe).unwrap_err();
        assert_eq!(no_file.param, Some("file"));
        let bad_format = upload(
            &[
                file,
                ("model", None, b"m"),
                ("response_format", None, b"mp3"),
            ],
            Task::Transcribe,
        )
        .unwrap_err();
        assert_eq!(bad_format.param, Some("response_format"));
        let call = Call {
            body: b"{}",
            content_type: Some("application/json"),
            deployment: None,
        };
        assert_eq!(
            transcription(&call, Task::Transcribe).unwrap_err().status,
            400
        );
    }

    #[test]
    fn deployment_stands_for_the_model() {
        let out = form_call(
            |call| transcription(call, Task::Transcribe),
            &[("file", Some("a.wav"), b"x")],
            Some("my-gpt-4o-transcribe"),
        );
        let v = json(&out.unwrap().into_json());
        assert_eq!(v["usage"]["type"], "tokens");
    }

    fn speak(body: &str) -> Result<Output, Rejection> {
        json_call(speech, &serde_json::from_str(body).unwrap_or(Value::Null))
    }

    #[test]
    fn speech_is_chunked_audio() {
        // 100 characters (one of them two bytes in UTF-8): 6400 bytes in two frames.
        let input = format!("é{}", "a".repeat(99));
        let body = json!({"model": "tts-1", "input": input, "voice": "alloy"}).to_string();
        let out = speak(&body).unwrap().into_stream();
        assert_eq!(out.content_type, "audio/mpeg");
        let sizes: Vec<usize> = out.events.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [4096, 2304]);
        assert_eq!(out.content, 0..2);
        let audio: Vec<u8> = out.events.concat();
        assert_eq!(audio, speech_bytes(6400));
        assert_eq!(audio[256..259], [0, 1, 2]);

        let wav =
            r#"{"model":"m","input":"hi","voice":{"id":"v"},"response_format":"wav","speed":2}"#;
        assert_eq!(speak(wav).unwrap().into_stream().content_type, "audio/wav");
    }

    #[test]
    fn speech_refusals() {
        for (body, param) in [
            (r#"{"input":"hi","voice":"alloy"}"#, Some("model")),
            (r#"{"model":"m","voice":"alloy"}"#, Some("input")),
            (r#"{"model":"m","input":"","voice":"alloy"}"#, Some("input")),
            (r#"{"model":"m","input":"hi"}"#, Some("voice")),
            (
                r#"{"model":"m","input":"hi","voice":"a","response_format":"ogg"}"#,
                Some("response_format"),
            ),
            ("{", None),
        ] {
            let err = speak(body).unwrap_err();
            assert_eq!((err.status, err.param), (400, param), "{body}");
        }
        let azure = Call {
            body: br#"{"input":"hi","voice":"alloy"}"#,
            deployment: Some("tts"),
            ..Call::default()
        };
        assert!(speech(&azure).is_ok());
    }
}
