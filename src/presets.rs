//! Provider kinds: which API family a provider speaks, where it lives by default and how its
//! key is sent. `kind: groq` and a key is all a user writes for a known provider; anything
//! OpenAI-compatible elsewhere is `kind: openai_compatible` with a `base_url`.

use serde::Deserialize;
use shards::dialect::Wire;

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Any OpenAI-compatible API at `base_url` (the default).
    #[default]
    OpenaiCompatible,
    Openai,
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
    Groq,
    Mistral,
    Together,
    Deepseek,
    Openrouter,
    Xai,
    Fireworks,
    Ollama,
    Vllm,
}

impl ProviderKind {
    pub fn wire(self) -> Wire {
        match self {
            Self::Azure => Wire::Azure,
            Self::Anthropic => Wire::Anthropic,
            Self::Gemini => Wire::Gemini,
            Self::Bedrock => Wire::Bedrock,
            _ => Wire::OpenAi,
        }
    }

    /// The base URL used when the config gives none; `None` when one is required.
    pub fn default_base_url(self, region: Option<&str>) -> Option<String> {
        let url = match self {
            Self::OpenaiCompatible | Self::Azure => return None,
            Self::Bedrock => {
                return region.map(|r| format!("https://bedrock-runtime.{r}.amazonaws.com"))
            }
            Self::Openai => "https://api.openai.com/v1",
            Self::Anthropic => "https://api.anthropic.com/v1",
            Self::Gemini => "https://generativelanguage.googleapis.com/v1beta",
            Self::Groq => "https://api.groq.com/openai/v1",
            Self::Mistral => "https://api.mistral.ai/v1",
            Self::Together => "https://api.together.xyz/v1",
            Self::Deepseek => "https://api.deepseek.com/v1",
            Self::Openrouter => "https://openrouter.ai/api/v1",
            Self::Xai => "https://api.x.ai/v1",
            Self::Fireworks => "https://api.fireworks.ai/inference/v1",
            Self::Ollama => "http://127.0.0.1:11434/v1",
            Self::Vllm => "http://127.0.0.1:8000/v1",
        };
        Some(url.to_owned())
    }

    /// The header line that carries an API key.
    pub fn key_line(self, key: &str) -> Vec<u8> {
        match self.wire() {
            Wire::Azure => format!("api-key: {key}\r\n"),
            Wire::Anthropic => format!("x-api-key: {key}\r\n"),
            Wire::Gemini => format!("x-goog-api-key: {key}\r\n"),
            Wire::OpenAi | Wire::Bedrock => format!("authorization: Bearer {key}\r\n"),
        }
        .into_bytes()
    }

    /// Only OpenAI itself serves `/v1/responses`; elsewhere it is translated to chat.
    pub fn serves_responses(self) -> bool {
        self == Self::Openai
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets() {
        assert_eq!(
            ProviderKind::Groq.default_base_url(None).unwrap(),
            "https://api.groq.com/openai/v1"
        );
        assert_eq!(ProviderKind::OpenaiCompatible.default_base_url(None), None);
        assert_eq!(
            ProviderKind::Bedrock
                .default_base_url(Some("eu-west-1"))
                .unwrap(),
            "https://bedrock-runtime.eu-west-1.amazonaws.com"
        );
        assert_eq!(ProviderKind::Anthropic.key_line("k"), b"x-api-key: k\r\n");
        assert_eq!(ProviderKind::Mistral.wire(), Wire::OpenAi);
    }
}
