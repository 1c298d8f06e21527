//! Money: integer nano-dollars (1 USD = 10⁹), never floating point, so costs add up exactly
//! and a budget of $5 is exactly 5 000 000 000. Arithmetic is checked or saturating — a sum
//! of money never wraps. Shown and parsed as decimal US dollars (`1.234567890`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An amount of money in nano-dollars. Serialized as the bare integer.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NanoUsd(u64);

impl NanoUsd {
    pub const ZERO: Self = Self(0);
    /// Nano-dollars in one dollar.
    pub const PER_USD: u64 = 1_000_000_000;

    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    pub const fn nanos(self) -> u64 {
        self.0
    }

    /// `None` on overflow.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    pub fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    /// What is left after spending `other`; zero when `other` is larger.
    pub fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }
}

/// Dollars with all nine decimals, no symbol: `1_234_567_890` → `1.234567890`.
impl fmt::Display for NanoUsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}",
            self.0 / Self::PER_USD,
            self.0 % Self::PER_USD
        )
    }
}

/// A text that is not a non-negative decimal dollar amount with at most nine decimals, or
/// one too large for a `u64` of nano-dollars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseUsdError(String);

impl fmt::Display for ParseUsdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseUsdError {}

/// Parses decimal dollars exactly: `"0.15"` → 150 000 000 nano-dollars.
impl FromStr for NanoUsd {
    type Err = ParseUsdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && frac.is_empty()
            || !digits_ok(whole)
            || !digits_ok(frac)
            || frac.len() > 9
        {
            return Err(ParseUsdError(format!(
                "`{text}` is not a decimal amount with at most 9 decimals"
            )));
        }
        let too_large = || ParseUsdError(format!("`{text}` is too large"));
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        let frac_nanos: u64 = format!("{frac:0<9}").parse().unwrap_or(0);
        whole
            .checked_mul(Self::PER_USD)
            .and_then(|w| w.checked_add(frac_nanos))
            .map(Self)
            .ok_or_else(too_large)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(text: &str) -> Result<u64, String> {
        text.parse::<NanoUsd>()
            .map(NanoUsd::nanos)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn decimals_become_exact_nanos() {
        assert_eq!(usd("0.15"), Ok(150_000_000));
        assert_eq!(usd("10"), Ok(10_000_000_000));
        assert_eq!(usd(".5"), Ok(500_000_000));
        assert_eq!(usd("0.000000001"), Ok(1));
        assert!(usd("0.0000000001").is_err());
        assert!(usd("-1").is_err());
        assert!(usd("abc").is_err());
        assert!(usd(".").is_err());
        assert_eq!(usd("18446744074"), Err("`18446744074` is too large".into()));
    }

    #[test]
    fn shown_as_dollars_with_nine_decimals() {
        assert_eq!(
            NanoUsd::from_nanos(1_234_567_890).to_string(),
            "1.234567890"
        );
        assert_eq!(NanoUsd::ZERO.to_string(), "0.000000000");
        assert_eq!(NanoUsd::from_nanos(1).to_string(), "0.000000001");
        assert_eq!(
            NanoUsd::from_nanos(5_000_000_000).to_string(),
            "5.000000000"
        );
        assert_eq!(NanoUsd::from_nanos(12_000_000).to_string(), "0.012000000");
        let max = NanoUsd::from_nanos(u64::MAX);
        assert_eq!(max.to_string(), "18446744073.709551615");
        assert_eq!(max.to_string().parse::<NanoUsd>(), Ok(max));
    }

    #[test]
    fn sums_never_wrap() {
        let max = NanoUsd::from_nanos(u64::MAX);
        let one = NanoUsd::from_nanos(1);
        assert_eq!(max.checked_add(one), None);
        assert_eq!(max.saturating_add(one), max);
        assert_eq!(one.checked_add(one), Some(NanoUsd::from_nanos(2)));
        assert_eq!(one.saturating_sub(max), NanoUsd::ZERO);
    }
}
