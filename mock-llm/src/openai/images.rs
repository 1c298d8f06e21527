//! `POST /v1/images/generations` (JSON) and `/v1/images/edits` (multipart): no pixels, but
//! the count, sizes and formats checked per model family the way OpenAI checks them, so a
//! gateway's per-image charge and its relaying of 400s can be tested.

use serde::Deserialize;
use serde_json::{json, Value};

use super::multipart::Form;
use super::{base64_encode, Call};
use crate::reply::{now, prompt_tokens, to_bytes, Output, Rejection};

/// What every `b64_json` image decodes to: the PNG signature.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// Input tokens per uploaded image (gpt-image usage).
const TOKENS_PER_INPUT_IMAGE: usize = 85;

/// The rules a model follows; names are matched by family, so that an Azure deployment
/// called `my-dall-e-3` follows DALL·E 3's, and any other name DALL·E 2's (OpenAI's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    DallE2,
    DallE3,
    GptImage,
}

impl Family {
    fn of(model: &str) -> Self {
        if model.contains("dall-e-3") {
            Family::DallE3
        } else if model.contains("gpt-image") {
            Family::GptImage
        } else {
            Family::DallE2
        }
    }

    fn sizes(self) -> &'static [&'static str] {
        match self {
            Family::DallE2 => &["256x256", "512x512", "1024x1024"],
            Family::DallE3 => &["1024x1024", "1792x1024", "1024x1792"],
            Family::GptImage => &["1024x1024", "1536x1024", "1024x1536", "auto"],
        }
    }

    fn max_n(self) -> i64 {
        match self {
            Family::DallE3 => 1,
            Family::DallE2 | Family::GptImage => 10,
        }
    }
}

/// The request fields both endpoints share, as given.
#[derive(Debug, Default, Deserialize)]
struct Params {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    n: Option<i64>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    quality: Option<String>,
    #[serde(default)]
    response_format: Option<String>,
}

/// `POST /v1/images/generations`.
pub fn generations(call: &Call<'_>) -> Result<Output, Rejection> {
    render(call, call.json()?, 0)
}

/// `POST /v1/images/edits`: one or more `image` files (also as `image[]`), an optional
/// `mask` file, and the generation fields as text.
pub fn edits(call: &Call<'_>) -> Result<Output, Rejection> {
    let form = Form::parse(call.content_type, call.body)?;
    let images = form.files("image")?;
    if images.is_empty() {
        return Err(Rejection::invalid("image", "image: a file is required"));
    }
    form.files("mask")?;
    let text = |name| form.text(name).map(|t| t.map(str::to_owned));
    let n = match form.text("n")? {
        None => None,
        Some(n) => Some(n.trim().parse().map_err(|_| bad_n())?),
    };
    let params = Params {
        prompt: text("prompt")?,
        model: text("model")?,
        n,
        size: text("size")?,
        quality: text("quality")?,
        response_format: text("response_format")?,
    };
    render(call, params, images.len())
}

fn bad_n() -> Rejection {
    Rejection::invalid("n", "n must be an integer between 1 and 10")
}

/// The response for `params`, after OpenAI's checks; `input_images` count toward gpt-image
/// usage.
fn render(call: &Call<'_>, params: Params, input_images: usize) -> Result<Output, Rejection> {
    let prompt = params
        .prompt
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Rejection::invalid("prompt", "Missing required parameter: 'prompt'."))?;
    let model = match call.deployment {
        Some(d) => d.to_owned(),
        None => params.model.unwrap_or_else(|| "dall-e-2".to_owned()),
    };
    let family = Family::of(&model);
    let n = params.n.unwrap_or(1);
    if !(1..=10).contains(&n) {
        return Err(bad_n());
    }
    if n > family.max_n() {
        return Err(Rejection::invalid(
            "n",
            format!("{model} only supports n=1"),
        ));
    }
    if let Some(size) = params.size.as_deref() {
        if !family.sizes().contains(&size) {
            return Err(Rejection::invalid(
                "size",
                format!(
                    "Invalid size {size:?} for {model}: expected one of {}",
                    family.sizes().join(", ")
                ),
            ));
        }
    }
    // gpt-image models always answer with base64.
    let b64 = match params.response_format.as_deref() {
        _ if family == Family::GptImage => true,
        None | Some("url") => false,
        Some("b64_json") => true,
        Some(other) => {
            return Err(Rejection::invalid(
                "response_format",
                format!("Invalid response_format {other:?}: expected url or b64_json"),
            ))
        }
    };
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let mut item = if b64 {
                json!({"b64_json": base64_encode(PNG_SIGNATURE)})
            } else {
                json!({"url": format!("https://mock.invalid/img/{i}.png")})
            };
            if family == Family::DallE3 {
                item["revised_prompt"] = json!(prompt);
            }
            item
        })
        .collect();
    let mut body = json!({"created": now(), "data": data});
    if family == Family::GptImage {
        let text_tokens = prompt_tokens(prompt.chars().count());
        let image_tokens = input_images * TOKENS_PER_INPUT_IMAGE;
        let input = text_tokens + image_tokens;
        let output = n as usize * output_tokens_per_image(params.quality.as_deref());
        body["usage"] = json!({
            "input_tokens": input,
            "output_tokens": output,
            "total_tokens": input + output,
            "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
        });
    }
    Ok(Output::Json(to_bytes(&body)))
}

/// gpt-image output tokens of one square image, by quality (OpenAI's published counts).
fn output_tokens_per_image(quality: Option<&str>) -> usize {
    match quality {
        Some("low") => 272,
        Some("high") => 4160,
        _ => 1056,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{form_call, json_call, reply, FormPart};
    use super::*;

    fn generate(body: Value) -> Result<Value, Rejection> {
        reply(json_call(generations, &body))
    }

    #[test]
    fn dall_e_2_by_default_with_urls() {
        let v = generate(json!({"prompt": "a cat", "n": 2, "size": "256x256"})).unwrap();
        assert!(v["created"].is_u64());
        assert_eq!(
            v["data"],
            json!([{"url": "https://mock.invalid/img/0.png"},
                   {"url": "https://mock.invalid/img/1.png"}])
        );
        assert!(v.get("usage").is_none());
    }

    #[test]
    fn dall_e_3_revises_and_encodes() {
        let v = generate(
            json!({"prompt": "a cat", "model": "dall-e-3", "size": "1792x1024",
            "quality": "hd", "style": "vivid", "response_format": "b64_json"}),
        )
        .unwrap();
        assert_eq!(
            v["data"],
            json!([{"b64_json": "iVBORw0KGgo=", "revised_prompt": "a cat"}])
        );
    }

    #[test]
    fn gpt_image_reports_usage() {
        let v = generate(
            json!({"prompt": "a cat on a mat", "model": "gpt-image-1", "n": 3,
            "size": "auto", "quality": "low", "response_format": "url"}),
        )
        .unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 3);
        assert_eq!(v["data"][2], json!({"b64_json": "iVBORw0KGgo="}));
        assert_eq!(
            v["usage"],
            json!({"input_tokens": 4, "output_tokens": 816, "total_tokens": 820,
                   "input_tokens_details": {"text_tokens": 4, "image_tokens": 0}})
        );
    }

    #[test]
    fn bad_requests_name_the_parameter() {
        for (body, param) in [
            (json!({"n": 1}), "prompt"),
            (json!({"prompt": "x", "n": 0}), "n"),
            (json!({"prompt": "x", "n": 11}), "n"),
            (json!({"prompt": "x", "model": "dall-e-3", "n": 2}), "n"),
            (json!({"prompt": "x", "size": "1792x1024"}), "size"),
            (
                json!({"prompt": "x", "model": "dall-e-3", "size": "512x512"}),
                "size",
            ),
            (
                json!({"prompt": "x", "model": "gpt-image-1", "size": "256x256"}),
                "size",
            ),
            (
                json!({"prompt": "x", "response_format": "png"}),
                "response_format",
            ),
        ] {
            let err = generate(body.clone()).unwrap_err();
            assert_eq!((err.status, err.param), (400, Some(param)), "{body}");
        }
        let err = generate(json!({"prompt": "x", "model": "dall-e-3", "n": 2})).unwrap_err();
        assert_eq!(err.message, "dall-e-3 only supports n=1");
    }

    fn edit(parts: &[FormPart<'_>], deployment: Option<&str>) -> Result<Value, Rejection> {
        reply(form_call(edits, parts, deployment))
    }

    #[test]
    fn edits_take_repeated_images() {
        let v = edit(
            &[
                ("image[]", Some("a.png"), b"a"),
                ("image[]", Some("b.png"), b"b"),
                ("mask", Some("m.png"), b"m"),
                ("prompt", None, b"add a hat"),
                ("model", None, b"gpt-image-1"),
                ("n", None, b"2"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["usage"]["input_tokens_details"]["image_tokens"], 170);
        assert_eq!(v["usage"]["output_tokens"], 2112);

        let v = edit(
            &[
                ("image", Some("a.png"), b"a"),
                ("prompt", None, b"p"),
                ("size", None, b"512x512"),
            ],
            Some("my-dalle"),
        )
        .unwrap();
        assert_eq!(
            v["data"],
            json!([{"url": "https://mock.invalid/img/0.png"}])
        );
    }

    #[test]
    fn edits_refusals() {
        let prompt = ("prompt", None, &b"p"[..]);
        assert_eq!(edit(&[prompt], None).unwrap_err().param, Some("image"));
        let text_image = ("image", None, &b"not a file"[..]);
        assert_eq!(
            edit(&[text_image, prompt], None).unwrap_err().param,
            Some("image")
        );
        let image = ("image", Some("a.png"), &b"a"[..]);
        let text_mask = ("mask", None, &b"m"[..]);
        assert_eq!(
            edit(&[image, prompt, text_mask], None).unwrap_err().param,
            Some("mask")
        );
        assert_eq!(
            edit(&[image, prompt, ("n", None, b"two")], None)
                .unwrap_err()
                .param,
            Some("n")
        );
        assert_eq!(edit(&[image], None).unwrap_err().param, Some("prompt"));
    }
}
