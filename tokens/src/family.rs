//! Which tokenizer a model uses: [`Family::of_model`] maps a model name, as a client or a
//! route names it, to o200k_base, cl100k_base, or the approximation for every other model.
//!
//! Cost: a few prefix comparisons on the name; no allocation.

use crate::vocab::Vocab;

/// A model's tokenizer family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// OpenAI's o200k_base: gpt-4o, gpt-4.1, gpt-4.5, gpt-5*, o1, o3, o4*, chatgpt-4o,
    /// gpt-oss, codex-mini, gpt-realtime, gpt-audio. Counts are exact.
    O200k,
    /// OpenAI's cl100k_base: gpt-4, gpt-4-turbo, gpt-3.5*, text-embedding-3*,
    /// text-embedding-ada-002, davinci-002, babbage-002. Counts are exact.
    Cl100k,
    /// Every other model (Claude, Gemini, Llama, Mistral, Qwen, …), whose tokenizer ringgate
    /// does not have: counted with cl100k_base as an approximation. Measured on seven
    /// samples (`tokens/accuracy/approx.py`): on English, code and JSON it is exact for
    /// Llama 3, within +4 % of Llama 4, within −9 %…−1 % of Mistral's Tekken and 6–23 %
    /// under Mistral's older SentencePiece; on German/French it counts 14–22 % more than
    /// Tekken and Llama 4, on Chinese/Japanese 29–84 % more. Claude's and Gemini's
    /// tokenizers were not available to measure.
    Approx,
}

impl Family {
    /// The family of `model`. Provider prefixes (`openai/gpt-4o-mini`,
    /// `azure/gpt-4o`, `openrouter/openai/gpt-4o`, Bedrock's `openai.gpt-oss-120b-1:0`),
    /// fine-tune names (`ft:gpt-4o-mini-2024-07-18:org::id`), dated and other suffixes
    /// (`gpt-4o-2024-08-06`) and letter case do not change the answer. An Azure deployment
    /// named something else entirely (`azure/prod-chat`) is [`Family::Approx`].
    pub fn of_model(model: &str) -> Family {
        let name = model.trim();
        let name = name.rsplit('/').next().unwrap_or(name);
        let name = name.strip_prefix("ft:").unwrap_or(name);
        let name = strip_prefix_ignore_case(name, "openai.").unwrap_or(name);
        let is = |prefix: &str| starts_with_ignore_case(name, prefix);
        // A name that is exactly `base` or continues after it with `-`, `:`, `_` or `@`
        // (`gpt-4-turbo`, `o1-mini`, `gpt-4:deployment`) but not with a letter or a dot
        // (`gpt-4o`, `gpt-4.1`, `o1x`).
        let is_model = |base: &str| {
            is(base)
                && name
                    .as_bytes()
                    .get(base.len())
                    .is_none_or(|c| matches!(c, b'-' | b':' | b'_' | b'@'))
        };
        const O200K: &[&str] = &[
            "gpt-4o",
            "chatgpt-4o",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-5",
            "gpt-oss",
            "codex-mini",
            "gpt-realtime",
            "gpt-audio",
            "omni-moderation",
        ];
        const O200K_EXACT: &[&str] = &["o1", "o3", "o4"];
        const CL100K: &[&str] = &[
            "gpt-3.5",
            "gpt-35",
            "text-embedding-3",
            "text-embedding-ada-002",
            "davinci-002",
            "babbage-002",
        ];
        if O200K.iter().any(|p| is(p)) || O200K_EXACT.iter().any(|b| is_model(b)) {
            Family::O200k
        } else if CL100K.iter().any(|p| is(p)) || is_model("gpt-4") {
            Family::Cl100k
        } else {
            Family::Approx
        }
    }

    /// The encoding this family counts with.
    pub(crate) fn vocab(self) -> Vocab {
        match self {
            Family::O200k => Vocab::O200k,
            Family::Cl100k | Family::Approx => Vocab::Cl100k,
        }
    }

    /// True when counts are the model's own tokenizer's, false for [`Family::Approx`].
    pub fn is_exact(self) -> bool {
        self != Family::Approx
    }

    /// A short name for logs and metrics: `o200k_base`, `cl100k_base` or `approx`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::O200k => "o200k_base",
            Family::Cl100k => "cl100k_base",
            Family::Approx => "approx",
        }
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if starts_with_ignore_case(s, prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Family::{self, *};

    #[test]
    fn openai_models() {
        let cases: &[(&str, Family)] = &[
            ("gpt-4o", O200k),
            ("gpt-4o-mini", O200k),
            ("gpt-4o-2024-08-06", O200k),
            ("chatgpt-4o-latest", O200k),
            ("gpt-4.1", O200k),
            ("gpt-4.1-nano-2025-04-14", O200k),
            ("gpt-4.5-preview", O200k),
            ("gpt-5", O200k),
            ("gpt-5-mini", O200k),
            ("gpt-5.1-codex", O200k),
            ("o1", O200k),
            ("o1-mini", O200k),
            ("o1-2024-12-17", O200k),
            ("o3", O200k),
            ("o3-mini", O200k),
            ("o4-mini", O200k),
            ("o4-mini-2025-04-16", O200k),
            ("gpt-oss-120b", O200k),
            ("gpt-4", Cl100k),
            ("gpt-4-0613", Cl100k),
            ("gpt-4-turbo", Cl100k),
            ("gpt-4-turbo-2024-04-09", Cl100k),
            ("gpt-4-32k", Cl100k),
            ("gpt-3.5-turbo", Cl100k),
            ("gpt-3.5-turbo-0125", Cl100k),
            ("gpt-35-turbo", Cl100k),
            ("text-embedding-3-small", Cl100k),
            ("text-embedding-3-large", Cl100k),
            ("text-embedding-ada-002", Cl100k),
        ];
        for &(model, family) in cases {
            assert_eq!(Family::of_model(model), family, "{model}");
        }
    }

    #[test]
    fn prefixes_suffixes_and_case() {
        let cases: &[(&str, Family)] = &[
            ("openai/gpt-4o-mini", O200k),
            ("azure/gpt-4o", O200k),
            ("azure/gpt-35-turbo", Cl100k),
            ("openrouter/openai/gpt-4o", O200k),
            ("openai.gpt-oss-120b-1:0", O200k),
            ("ft:gpt-4o-mini-2024-07-18:my-org::abc123", O200k),
            ("ft:gpt-3.5-turbo-0125:org:name:id", Cl100k),
            ("GPT-4o", O200k),
            (" gpt-4 ", Cl100k),
            ("gpt-4:my-deployment", Cl100k),
        ];
        for &(model, family) in cases {
            assert_eq!(Family::of_model(model), family, "{model}");
        }
    }

    #[test]
    fn everything_else_is_approximate() {
        for model in [
            "claude-3-5-sonnet-20241022",
            "anthropic/claude-sonnet-4",
            "gemini-2.0-flash",
            "meta-llama/Llama-3.1-8B-Instruct",
            "mistral-large-latest",
            "qwen2.5-72b",
            "o1x",
            "o5",
            "gpt-4x",
            "azure/prod-chat",
            "",
            "/",
        ] {
            assert_eq!(Family::of_model(model), Approx, "{model}");
            assert!(!Family::of_model(model).is_exact());
        }
    }
}
