use super::render::{self, Shape};
use super::*;

fn model(name: &str, price: Option<(u64, u64)>) -> CatalogModel {
    CatalogModel {
        name: name.into(),
        pricing: price.map(|(i, o)| Pricing {
            input_per_mtok: NanoUsd::from_nanos(i),
            output_per_mtok: NanoUsd::from_nanos(o),
        }),
        ..CatalogModel::default()
    }
}

fn catalog() -> Catalog {
    Catalog {
        providers: vec![
            ProviderModels {
                provider: "oa".into(),
                models: vec![
                    model("gpt-4o-mini", Some((150_000_000, 600_000_000))),
                    model("gpt-4o", None),
                ],
            },
            ProviderModels {
                provider: "an".into(),
                models: vec![CatalogModel {
                    display_name: Some("Claude Haiku".into()),
                    created: 1_729_555_200,
                    ..model("claude-3-5-haiku", None)
                }],
            },
            ProviderModels {
                provider: "gone".into(),
                models: vec![model("x", None)],
            },
        ],
    }
}

const ALIASES: &[AliasTarget<'static>] = &[AliasTarget {
    alias: "fast",
    provider: "oa",
    model: "gpt-4o-mini",
}];

fn key(providers: &[&str], models: &[&str]) -> KeyPolicy {
    KeyPolicy {
        id: "k".into(),
        team_id: None,
        customer_id: None,
        allowed_providers: providers.iter().map(|p| (*p).to_owned()).collect(),
        allowed_models: models.iter().map(|m| (*m).to_owned()).collect(),
        expires_at: None,
        active: true,
        limits: Vec::new(),
        cache_ttl_secs: None,
    }
}

fn ids(key: Option<&KeyPolicy>) -> Vec<String> {
    let catalog = catalog();
    listing(&catalog, &["oa", "an"], ALIASES, key)
        .into_iter()
        .map(|m| m.id)
        .collect()
}

#[test]
fn lists_live_providers_then_aliases() {
    assert_eq!(
        ids(None),
        ["oa/gpt-4o-mini", "oa/gpt-4o", "an/claude-3-5-haiku", "fast"]
    );
}

#[test]
fn filters_by_the_keys_models_and_providers() {
    assert_eq!(ids(Some(&key(&[], &["oa/gpt-4o"]))), ["oa/gpt-4o"]);
    // A bare model name allows it at any provider, and the alias resolving to it.
    assert_eq!(
        ids(Some(&key(&[], &["gpt-4o-mini"]))),
        ["oa/gpt-4o-mini", "fast"]
    );
    assert_eq!(ids(Some(&key(&[], &["fast"]))), ["fast"]);
    assert_eq!(ids(Some(&key(&["an"], &[]))), ["an/claude-3-5-haiku"]);
}

#[test]
fn openai_shape_with_pricing() {
    let catalog = catalog();
    let listed = listing(&catalog, &["oa"], ALIASES, None);
    let v: serde_json::Value =
        serde_json::from_slice(&render::list(Shape::OpenAi, &listed)).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(
        v["data"][0],
        serde_json::json!({
            "id": "oa/gpt-4o-mini", "object": "model", "created": 0, "owned_by": "oa",
            "pricing": {"input_per_million_tokens": 0.15, "output_per_million_tokens": 0.6, "currency": "USD"},
        })
    );
    assert!(v["data"][1].get("pricing").is_none());
    assert_eq!(v["data"][2]["owned_by"], "ringgate");
    assert_eq!(v["data"][2]["pricing"]["input_per_million_tokens"], 0.15);
}

#[test]
fn anthropic_shape() {
    let catalog = catalog();
    let listed = listing(&catalog, &["an"], &[], None);
    let v: serde_json::Value =
        serde_json::from_slice(&render::list(Shape::Anthropic, &listed)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "data": [{
                "type": "model", "id": "an/claude-3-5-haiku",
                "display_name": "Claude Haiku", "created_at": "2024-10-22T00:00:00Z",
            }],
            "has_more": false, "first_id": "an/claude-3-5-haiku", "last_id": "an/claude-3-5-haiku",
        })
    );
    let one: serde_json::Value =
        serde_json::from_slice(&render::one(Shape::Anthropic, &listed[0])).unwrap();
    assert_eq!(one, v["data"][0]);
    let empty: serde_json::Value =
        serde_json::from_slice(&render::list(Shape::Anthropic, &[])).unwrap();
    assert_eq!(empty["first_id"], serde_json::Value::Null);
}
