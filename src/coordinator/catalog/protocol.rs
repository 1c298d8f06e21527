//! What each provider kind's catalog API looks like, as pure code: the request for a page
//! and what a page says (its models and where the next page is). No I/O, so every shape is
//! tested on bytes.
//!
//! | wire | request | models | next page |
//! |---|---|---|---|
//! | OpenAI-compatible | `GET {base}/models` | `data[].id`, `created` | none |
//! | Anthropic | `GET {base}/models[?after_id=…]` + `anthropic-version` | `data[].id`, `display_name`, `created_at` | `has_more` → `last_id` |
//! | Gemini | `GET {base}/models[?pageToken=…]` | `models[].name` without `models/`, `displayName` | `nextPageToken` |
//! | Azure | `GET {base}/openai/deployments?api-version=…` | `data[].id` (the deployment), `created_at` | none |
//! | Bedrock | not fetched: its model list is another service, signed; configured lists only | | |

use serde::Deserialize;
use shards::catalog::CatalogModel;
use shards::dialect::Wire;
use vocab::calendar::{days_from_civil, DAY};

/// The Anthropic API version sent on catalog requests (the one the gateway speaks).
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Most pages read from one catalog: a provider that keeps saying "more" is cut off here.
pub const MAX_PAGES: usize = 50;

/// The request for one page: the path and query below the provider's base URL's host.
pub fn page_path(
    wire: Wire,
    base_path: &str,
    api_version: Option<&str>,
    cursor: Option<&str>,
) -> Option<String> {
    let query = |name: &str| cursor.map_or(String::new(), |c| format!("?{name}={}", encode(c)));
    Some(match wire {
        Wire::OpenAi => format!("{base_path}/models"),
        Wire::Anthropic => format!("{base_path}/models{}", query("after_id")),
        Wire::Gemini => format!("{base_path}/models{}", query("pageToken")),
        Wire::Azure => format!(
            "{base_path}/openai/deployments?api-version={}",
            encode(api_version.unwrap_or_default())
        ),
        Wire::Bedrock => return None,
    })
}

/// One page of a catalog.
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    pub models: Vec<CatalogModel>,
    /// Where the next page starts, when there is one.
    pub next: Option<String>,
}

/// Reads one page of `wire`'s catalog.
pub fn parse_page(wire: Wire, body: &[u8]) -> Result<Page, String> {
    let invalid = |e: serde_json::Error| format!("unexpected catalog body: {e}");
    match wire {
        Wire::OpenAi | Wire::Azure => {
            let list: OpenAiList = serde_json::from_slice(body).map_err(invalid)?;
            Ok(Page {
                models: list
                    .data
                    .into_iter()
                    .map(|m| model(m.id, None, m.created.or(m.created_at).unwrap_or(0)))
                    .collect(),
                next: None,
            })
        }
        Wire::Anthropic => {
            let list: AnthropicList = serde_json::from_slice(body).map_err(invalid)?;
            Ok(Page {
                next: list.last_id.filter(|_| list.has_more),
                models: list
                    .data
                    .into_iter()
                    .map(|m| {
                        let created = m.created_at.as_deref().map_or(0, unix_of_rfc3339);
                        model(m.id, m.display_name, created)
                    })
                    .collect(),
            })
        }
        Wire::Gemini => {
            let list: GeminiList = serde_json::from_slice(body).map_err(invalid)?;
            Ok(Page {
                models: list
                    .models
                    .into_iter()
                    .map(|m| {
                        let name = m.name.strip_prefix("models/").unwrap_or(&m.name).to_owned();
                        model(name, m.display_name, 0)
                    })
                    .collect(),
                next: list.next_page_token.filter(|t| !t.is_empty()),
            })
        }
        Wire::Bedrock => Ok(Page::default()),
    }
}

/// Whether an answer with `status` means the provider has no listable catalog here (Azure
/// resources whose `api-version` no longer lists deployments answer 404 or 400).
pub fn unsupported(wire: Wire, status: u16) -> bool {
    wire == Wire::Azure && matches!(status, 400 | 404 | 405)
}

fn model(name: String, display_name: Option<String>, created: u64) -> CatalogModel {
    CatalogModel {
        name,
        display_name,
        created,
        pricing: None,
    }
}

#[derive(Deserialize)]
struct OpenAiList {
    data: Vec<OpenAiModel>,
}

#[derive(Deserialize)]
struct OpenAiModel {
    id: String,
    created: Option<u64>,
    /// Azure deployments say `created_at`.
    created_at: Option<u64>,
}

#[derive(Deserialize)]
struct AnthropicList {
    data: Vec<AnthropicModel>,
    #[serde(default)]
    has_more: bool,
    last_id: Option<String>,
}

#[derive(Deserialize)]
struct AnthropicModel {
    id: String,
    display_name: Option<String>,
    created_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiList {
    #[serde(default)]
    models: Vec<GeminiModel>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiModel {
    name: String,
    display_name: Option<String>,
}

/// `YYYY-MM-DDTHH:MM:SS…` to Unix seconds (fractions and the zone suffix ignored: Anthropic
/// writes UTC); 0 when it does not parse.
fn unix_of_rfc3339(text: &str) -> u64 {
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<u32>().ok();
    let parts = (|| {
        let days = days_from_civil(i64::from(num(0..4)?), num(5..7)?, num(8..10)?);
        let secs = i64::from(num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?);
        u64::try_from(days * DAY + secs).ok()
    })();
    parts.unwrap_or(0)
}

/// A query value percent-encoded (page tokens are opaque and may hold `=`, `+` or `/`).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
