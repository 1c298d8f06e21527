//! The request-log query's parameters as text: status and cache filters and the paging
//! cursor, each parsed from and printed as what the admin API's query string carries.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use vocab::CacheKind;

use crate::model::RequestLog;

/// A filter on the status returned to the client; parsed from `429` or `4xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Exactly this status (100..=999).
    Code(u16),
    /// Every status of this class: `Class(4)` is 400..=499 (1..=9).
    Class(u8),
}

impl StatusFilter {
    /// The statuses it matches, `[low, high)`.
    pub(super) fn range(self) -> (i64, i64) {
        match self {
            StatusFilter::Code(c) => (i64::from(c), i64::from(c) + 1),
            StatusFilter::Class(d) => (i64::from(d) * 100, i64::from(d) * 100 + 100),
        }
    }
}

/// A status filter that is neither a code 100..=999 nor a class `1xx`..=`9xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidStatus;

impl fmt::Display for InvalidStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected a status code 100..999 (e.g. 429) or a class 1xx..9xx (e.g. 5xx)")
    }
}

impl std::error::Error for InvalidStatus {}

impl FromStr for StatusFilter {
    type Err = InvalidStatus;

    /// `429` (exactly three digits, 100..=999) or `4xx` (`X` also accepted).
    fn from_str(s: &str) -> Result<Self, InvalidStatus> {
        let b = s.as_bytes();
        if b.len() != 3 || !(b'1'..=b'9').contains(&b[0]) {
            return Err(InvalidStatus);
        }
        let digit = b[0] - b'0';
        if b[1..].iter().all(|c| c.eq_ignore_ascii_case(&b'x')) {
            return Ok(StatusFilter::Class(digit));
        }
        if b[1..].iter().all(u8::is_ascii_digit) {
            let code =
                u16::from(digit) * 100 + u16::from(b[1] - b'0') * 10 + u16::from(b[2] - b'0');
            return Ok(StatusFilter::Code(code));
        }
        Err(InvalidStatus)
    }
}

impl fmt::Display for StatusFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusFilter::Code(c) => write!(f, "{c}"),
            StatusFilter::Class(d) => write!(f, "{d}xx"),
        }
    }
}

/// A filter on which cache answered; parsed from `exact`, `semantic` or `any`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheFilter {
    /// Requests this cache answered.
    Kind(CacheKind),
    /// Requests any cache answered.
    Any,
}

/// A cache filter that is none of `exact`, `semantic`, `any`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCacheFilter;

impl fmt::Display for InvalidCacheFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected exact, semantic or any")
    }
}

impl std::error::Error for InvalidCacheFilter {}

impl FromStr for CacheFilter {
    type Err = InvalidCacheFilter;

    fn from_str(s: &str) -> Result<Self, InvalidCacheFilter> {
        match s {
            "any" => Ok(CacheFilter::Any),
            _ => CacheKind::parse(s)
                .map(CacheFilter::Kind)
                .ok_or(InvalidCacheFilter),
        }
    }
}

impl fmt::Display for CacheFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheFilter::Kind(kind) => f.write_str(kind.as_str()),
            CacheFilter::Any => f.write_str("any"),
        }
    }
}

/// Where a page ended: the `(ts_ms, id)` of its last row. Shown and parsed as an opaque
/// string (URL-safe base64 of `"{ts_ms}:{id}"`, any id text), and serialized as that string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    pub(super) ts_ms: i64,
    pub(super) id: String,
}

impl LogCursor {
    pub(super) fn after(log: &RequestLog) -> Self {
        Self {
            ts_ms: log.ts_ms,
            id: log.id.clone(),
        }
    }
}

pub(super) const CURSOR_B64: base64::engine::GeneralPurpose =
    base64::engine::general_purpose::URL_SAFE_NO_PAD;

impl fmt::Display for LogCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&CURSOR_B64.encode(format!("{}:{}", self.ts_ms, self.id)))
    }
}

/// A cursor that this store did not make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCursor;

impl fmt::Display for InvalidCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a cursor returned by a previous page (pass next_cursor unchanged)")
    }
}

impl std::error::Error for InvalidCursor {}

impl FromStr for LogCursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, InvalidCursor> {
        let bytes = CURSOR_B64.decode(s).map_err(|_| InvalidCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| InvalidCursor)?;
        let (ts, id) = text.split_once(':').ok_or(InvalidCursor)?;
        let digits = ts.strip_prefix('-').unwrap_or(ts);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidCursor);
        }
        Ok(Self {
            ts_ms: ts.parse().map_err(|_| InvalidCursor)?,
            id: id.to_owned(),
        })
    }
}

impl serde::Serialize for LogCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
