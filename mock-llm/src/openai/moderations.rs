//! `POST /v1/moderations`: one result per input item, flagged for violence when its text
//! says "kill", so that tests can provoke a flag with a word.

use serde_json::{json, Map, Value};

use super::Call;
use crate::reply::{next_id, to_bytes, Output, Rejection};

/// OpenAI's moderation categories.
const CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];
/// The categories OpenAI's omni model also judges images for.
const IMAGE_CATEGORIES: [&str; 6] = [
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "violence",
    "violence/graphic",
];
const TRIGGER: &str = "kill";
/// Score of a category that is not flagged, and of one that is.
const CALM: f64 = 0.0001;
const FLAGGED: f64 = 0.9;

/// One input item: its text (empty for an image) and its kind.
struct Item {
    text: String,
    image: bool,
}

/// `POST /v1/moderations`.
pub fn moderations(call: &Call<'_>) -> Result<Output, Rejection> {
    let req: Value = call.json()?;
    let model = match &req["model"] {
        Value::Null => "omni-moderation-latest",
        Value::String(m) => m,
        _ => return Err(Rejection::invalid("model", "model must be a string")),
    };
    let items = inputs(&req["input"])?;
    let results: Vec<Value> = items.iter().map(result).collect();
    Ok(Output::Json(to_bytes(&json!({
        "id": format!("modr-{}", next_id()),
        "model": model,
        "results": results,
    }))))
}

/// `input` as a string, strings, or `text` and `image_url` parts.
fn inputs(input: &Value) -> Result<Vec<Item>, Rejection> {
    let invalid = || {
        Rejection::invalid(
            "input",
            "input must be a string, an array of strings, or an array of text and image_url parts",
        )
    };
    let text = |t: &str| Item {
        text: t.to_owned(),
        image: false,
    };
    match input {
        Value::String(s) => Ok(vec![text(s)]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| match (item, item["type"].as_str()) {
                (Value::String(s), _) => Ok(text(s)),
                (_, Some("text")) => item["text"].as_str().map(text).ok_or_else(invalid),
                (_, Some("image_url")) => Ok(Item {
                    text: String::new(),
                    image: true,
                }),
                _ => Err(invalid()),
            })
            .collect(),
        _ => Err(invalid()),
    }
}

fn result(item: &Item) -> Value {
    let flagged = item.text.to_lowercase().contains(TRIGGER);
    let mut categories = Map::new();
    let mut scores = Map::new();
    let mut applied = Map::new();
    for name in CATEGORIES {
        let hit = flagged && name == "violence";
        categories.insert(name.to_owned(), json!(hit));
        scores.insert(name.to_owned(), json!(if hit { FLAGGED } else { CALM }));
        let types: &[&str] = match (item.image, IMAGE_CATEGORIES.contains(&name)) {
            (false, _) => &["text"],
            (true, true) => &["image"],
            (true, false) => &[],
        };
        applied.insert(name.to_owned(), json!(types));
    }
    json!({
        "flagged": flagged,
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": applied,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_call, reply};
    use super::*;

    fn moderate(body: Value) -> Result<Value, Rejection> {
        reply(json_call(moderations, &body))
    }

    #[test]
    fn flags_kill_as_violence() {
        let v = moderate(json!({"input": ["hello", "I will KILL the process"]})).unwrap();
        assert!(v["id"].as_str().unwrap().starts_with("modr-"));
        assert_eq!(v["model"], "omni-moderation-latest");
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["flagged"], false);
        assert_eq!(results[1]["flagged"], true);
        assert_eq!(results[1]["categories"]["violence"], true);
        assert_eq!(results[1]["categories"]["hate"], false);
        assert_eq!(results[1]["category_scores"]["violence"], FLAGGED);
        assert_eq!(results[0]["category_scores"]["violence"], CALM);
        for r in results {
            assert_eq!(r["categories"].as_object().unwrap().len(), CATEGORIES.len());
            assert_eq!(r["category_applied_input_types"]["hate"], json!(["text"]));
        }
    }

    #[test]
    fn multimodal_parts() {
        let v = moderate(json!({"model": "omni-moderation-2024-09-26", "input": [
            {"type": "text", "text": "kill"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
        ]}))
        .unwrap();
        assert_eq!(v["model"], "omni-moderation-2024-09-26");
        let image = &v["results"][1];
        assert_eq!(image["flagged"], false);
        assert_eq!(
            image["category_applied_input_types"]["violence"],
            json!(["image"])
        );
        assert_eq!(image["category_applied_input_types"]["hate"], json!([]));
        assert_eq!(v["results"][0]["flagged"], true);
        assert_eq!(
            moderate(json!({"input": "skill"})).unwrap()["results"][0]["flagged"],
            true
        );
    }

    #[test]
    fn refusals() {
        for body in [
            json!({}),
            json!({"input": []}),
            json!({"input": 3}),
            json!({"input": [{"type": "audio"}]}),
            json!({"input": [{"type": "text"}]}),
            json!({"input": "x", "model": 1}),
        ] {
            assert_eq!(moderate(body.clone()).unwrap_err().status, 400, "{body}");
        }
    }
}
