use super::*;

fn names(page: &Page) -> Vec<&str> {
    page.models.iter().map(|m| m.name.as_str()).collect()
}

#[test]
fn openai_compatible() {
    let body = br#"{"object":"list","data":[
        {"id":"gpt-4o","object":"model","created":1715367049,"owned_by":"system"},
        {"id":"llama-3","object":"model"}]}"#;
    let page = parse_page(Wire::OpenAi, body).unwrap();
    assert_eq!(names(&page), ["gpt-4o", "llama-3"]);
    assert_eq!(page.models[0].created, 1_715_367_049);
    assert_eq!(page.next, None);
    assert_eq!(
        page_path(Wire::OpenAi, "/v1", None, None).as_deref(),
        Some("/v1/models")
    );
}

#[test]
fn anthropic_pages() {
    let body = br#"{"data":[{"type":"model","id":"claude-3-5-haiku-20241022",
        "display_name":"Claude Haiku 3.5","created_at":"2024-10-22T00:00:00Z"}],
        "has_more":true,"first_id":"claude-3-5-haiku-20241022","last_id":"claude-3-5-haiku-20241022"}"#;
    let page = parse_page(Wire::Anthropic, body).unwrap();
    assert_eq!(names(&page), ["claude-3-5-haiku-20241022"]);
    assert_eq!(
        page.models[0].display_name.as_deref(),
        Some("Claude Haiku 3.5")
    );
    assert_eq!(page.models[0].created, 1_729_555_200);
    assert_eq!(page.next.as_deref(), Some("claude-3-5-haiku-20241022"));
    assert_eq!(
        page_path(Wire::Anthropic, "/v1", None, page.next.as_deref()).as_deref(),
        Some("/v1/models?after_id=claude-3-5-haiku-20241022")
    );
    let last = br#"{"data":[],"has_more":false,"first_id":null,"last_id":null}"#;
    assert_eq!(parse_page(Wire::Anthropic, last).unwrap(), Page::default());
}

#[test]
fn gemini_pages() {
    let body = br#"{"models":[{"name":"models/gemini-1.5-flash","displayName":"Gemini 1.5 Flash",
        "supportedGenerationMethods":["generateContent"]}],"nextPageToken":"Ch8+/="}"#;
    let page = parse_page(Wire::Gemini, body).unwrap();
    assert_eq!(names(&page), ["gemini-1.5-flash"]);
    assert_eq!(page.next.as_deref(), Some("Ch8+/="));
    assert_eq!(
        page_path(Wire::Gemini, "/v1beta", None, page.next.as_deref()).as_deref(),
        Some("/v1beta/models?pageToken=Ch8%2B%2F%3D")
    );
    assert_eq!(parse_page(Wire::Gemini, b"{}").unwrap(), Page::default());
}

#[test]
fn azure_deployments() {
    let body = br#"{"data":[{"id":"my-gpt4o","model":"gpt-4o","object":"deployment",
        "created_at":1700000000,"status":"succeeded"}],"object":"list"}"#;
    let page = parse_page(Wire::Azure, body).unwrap();
    assert_eq!(names(&page), ["my-gpt4o"]);
    assert_eq!(page.models[0].created, 1_700_000_000);
    assert_eq!(
        page_path(Wire::Azure, "", Some("2022-12-01"), None).as_deref(),
        Some("/openai/deployments?api-version=2022-12-01")
    );
    assert!(unsupported(Wire::Azure, 404));
    assert!(!unsupported(Wire::OpenAi, 404));
    assert!(!unsupported(Wire::Azure, 500));
}

#[test]
fn bedrock_is_not_fetched_and_bad_bodies_are_errors() {
    assert_eq!(page_path(Wire::Bedrock, "", None, None), None);
    assert!(parse_page(Wire::OpenAi, b"<html>").is_err());
    assert!(parse_page(Wire::Anthropic, br#"{"data":[{"name":"x"}]}"#).is_err());
}

#[test]
fn rfc3339_dates() {
    assert_eq!(unix_of_rfc3339("1970-01-01T00:00:00Z"), 0);
    assert_eq!(
        unix_of_rfc3339("2023-11-14T22:13:20.5+00:00"),
        1_700_000_000
    );
    assert_eq!(unix_of_rfc3339("soon"), 0);
}
