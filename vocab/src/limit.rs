//! What limits are counted in: fixed windows (minute, hour, day) for request and token
//! limits, and calendar periods (daily, weekly, monthly, never) for budgets — all aligned to
//! UTC. This is the one place that says when a window or period starts, when it resets, and
//! which epoch it is, so the data plane (leases), the coordinator (lease desk) and the store
//! (usage rows keyed by period start) cannot disagree about when a budget resets.
//!
//! Times are Unix seconds as `i64` (negative before 1970). Every call is a few integer
//! operations; monthly periods add one civil-date conversion ([`crate::calendar`]).

use serde::{Deserialize, Serialize};

use crate::calendar::{civil_from_days, days_from_civil, DAY};

/// A fixed window for request and token limits; a minute starts at :00 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    Minute,
    Hour,
    Day,
}

impl Window {
    /// The window's length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3600,
            Self::Day => DAY,
        }
    }
}

/// How often a budget starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    /// Resets at 00:00 UTC every day.
    Daily,
    /// Resets on Monday 00:00 UTC.
    Weekly,
    /// Resets on the 1st of the month, 00:00 UTC.
    Monthly,
    /// Never resets (lifetime budget); its period starts at 0.
    Never,
}

impl BudgetPeriod {
    /// The text form (stored, and in the admin API).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Never => "never",
        }
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "daily" => Self::Daily,
            "weekly" => Self::Weekly,
            "monthly" => Self::Monthly,
            "never" => Self::Never,
            _ => return None,
        })
    }

    /// Start of the period containing `now`: UTC midnight, Monday 00:00 UTC, the 1st at
    /// 00:00 UTC, or 0 for `never`.
    pub fn start(self, now: i64) -> i64 {
        let days = now.div_euclid(DAY);
        match self {
            Self::Daily => days * DAY,
            // 1970-01-01 was a Thursday: the Monday-based weekday is (days + 3) mod 7.
            Self::Weekly => (days - (days + 3).rem_euclid(7)) * DAY,
            Self::Monthly => {
                let (y, m, _) = civil_from_days(days);
                days_from_civil(y, m, 1) * DAY
            }
            Self::Never => 0,
        }
    }

    /// When the period containing `now` ends and the next one starts (`None`: never).
    pub fn end(self, now: i64) -> Option<i64> {
        let start = self.start(now);
        Some(match self {
            Self::Daily => start + DAY,
            Self::Weekly => start + 7 * DAY,
            Self::Monthly => {
                let (y, m, _) = civil_from_days(start.div_euclid(DAY));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * DAY
            }
            Self::Never => return None,
        })
    }
}

/// One limit's unit and span: requests or tokens per window, or nano-dollars per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Requests(Window),
    Tokens(Window),
    /// Nano-dollars per period.
    Budget(BudgetPeriod),
}

impl LimitKind {
    /// A budget (charged by spend), not a request or token window.
    pub fn is_budget(self) -> bool {
        matches!(self, Self::Budget(_))
    }

    /// Unix time at which the window or period containing `now` began.
    pub fn start(self, now: i64) -> i64 {
        match self {
            Self::Requests(w) | Self::Tokens(w) => now - now.rem_euclid(w.seconds()),
            Self::Budget(p) => p.start(now),
        }
    }

    /// Unix time at which the window or period containing `now` ends (`None`: never).
    pub fn resets_at(self, now: i64) -> Option<i64> {
        match self {
            Self::Requests(w) | Self::Tokens(w) => Some(self.start(now) + w.seconds()),
            Self::Budget(p) => p.end(now),
        }
    }

    /// The window or period containing `now`, numbered for a lease (24 bits; see
    /// `shards::governance::lease`): consecutive windows and periods get different numbers.
    pub fn epoch(self, now: i64) -> u32 {
        let unit = match self {
            Self::Requests(w) | Self::Tokens(w) => w.seconds(),
            // Periods are numbered by the day they start on.
            Self::Budget(_) => DAY,
        };
        (self.start(now).div_euclid(unit) & 0xFF_FFFF) as u32
    }

    /// The name used in errors, headers, metrics and cluster lease counters: rpm, rph, rpd,
    /// tpm, tph, tpd, budget.
    pub fn name(self) -> &'static str {
        match self {
            Self::Requests(Window::Minute) => "rpm",
            Self::Requests(Window::Hour) => "rph",
            Self::Requests(Window::Day) => "rpd",
            Self::Tokens(Window::Minute) => "tpm",
            Self::Tokens(Window::Hour) => "tph",
            Self::Tokens(Window::Day) => "tpd",
            Self::Budget(_) => "budget",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds for a UTC date-time.
    fn ts(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, mo, d) * DAY + h * 3600 + mi * 60 + s
    }

    #[test]
    fn windows_align_to_utc() {
        let rpm = LimitKind::Requests(Window::Minute);
        let now = ts(2024, 2, 29, 12, 34, 56);
        assert_eq!(rpm.start(now), ts(2024, 2, 29, 12, 34, 0));
        assert_eq!(rpm.resets_at(now), Some(ts(2024, 2, 29, 12, 35, 0)));
        assert_ne!(rpm.epoch(now), rpm.epoch(now + 4));
        let tph = LimitKind::Tokens(Window::Hour);
        assert_eq!(tph.start(now), ts(2024, 2, 29, 12, 0, 0));
        assert_eq!(tph.epoch(now), tph.epoch(ts(2024, 2, 29, 12, 59, 59)));
        let rpd = LimitKind::Requests(Window::Day);
        assert_eq!(rpd.resets_at(now), Some(ts(2024, 3, 1, 0, 0, 0)));
        // Before 1970 a window still starts at or before `now`.
        assert_eq!(rpm.start(-1), -60);
        assert_eq!(rpm.resets_at(-1), Some(0));
    }

    #[test]
    fn daily_boundaries() {
        let p = BudgetPeriod::Daily;
        let midnight = ts(2024, 3, 10, 0, 0, 0);
        assert_eq!(p.start(midnight), midnight);
        assert_eq!(p.start(midnight - 1), midnight - DAY);
        assert_eq!(p.start(midnight + DAY - 1), midnight);
        assert_eq!(p.end(midnight + DAY - 1), Some(midnight + DAY));
        assert_eq!(p.start(0), 0);
        assert_eq!(p.start(-1), -DAY);
        assert_eq!(p.end(-1), Some(0));
    }

    #[test]
    fn weeks_start_on_monday_utc() {
        let p = BudgetPeriod::Weekly;
        // 2024-01-01 was a Monday.
        let monday = ts(2024, 1, 1, 0, 0, 0);
        assert_eq!(p.start(monday), monday);
        assert_eq!(p.start(monday - 1), ts(2023, 12, 25, 0, 0, 0));
        // Sunday 23:59:59 still belongs to the week that started 6 days ago.
        assert_eq!(p.start(ts(2024, 1, 7, 23, 59, 59)), monday);
        assert_eq!(
            p.end(ts(2024, 1, 7, 23, 59, 59)),
            Some(ts(2024, 1, 8, 0, 0, 0))
        );
        // 2024-02-29 was a Thursday; its week ends on Monday 2024-03-04.
        assert_eq!(
            p.end(ts(2024, 2, 29, 12, 34, 56)),
            Some(ts(2024, 3, 4, 0, 0, 0))
        );
        // The epoch was a Thursday; its week began Monday 1969-12-29.
        assert_eq!(p.start(0), ts(1969, 12, 29, 0, 0, 0));
        assert_eq!(p.start(0), -3 * DAY);
        assert_eq!(p.start(-3 * DAY - 1), -10 * DAY);
    }

    #[test]
    fn months_and_leap_years() {
        let p = BudgetPeriod::Monthly;
        assert_eq!(
            p.start(ts(2024, 2, 29, 23, 59, 59)),
            ts(2024, 2, 1, 0, 0, 0)
        );
        assert_eq!(
            p.end(ts(2024, 2, 29, 23, 59, 59)),
            Some(ts(2024, 3, 1, 0, 0, 0))
        );
        assert_eq!(p.start(ts(2024, 3, 1, 0, 0, 0)), ts(2024, 3, 1, 0, 0, 0));
        assert_eq!(
            p.start(ts(2024, 3, 1, 0, 0, 0) - 1),
            ts(2024, 2, 1, 0, 0, 0)
        );
        assert_eq!(
            p.start(ts(2023, 12, 31, 23, 59, 59)),
            ts(2023, 12, 1, 0, 0, 0)
        );
        assert_eq!(
            p.end(ts(2023, 12, 31, 23, 59, 59)),
            Some(ts(2024, 1, 1, 0, 0, 0))
        );
        // Non-leap 2100 and 2023, leap 2000.
        assert_eq!(
            p.start(ts(2100, 3, 1, 0, 0, 0) - 1),
            ts(2100, 2, 1, 0, 0, 0)
        );
        assert_eq!(
            p.end(ts(2100, 2, 28, 0, 0, 0)),
            Some(ts(2100, 3, 1, 0, 0, 0))
        );
        assert_eq!(
            p.end(ts(2023, 2, 10, 0, 0, 0)),
            Some(ts(2023, 3, 1, 0, 0, 0))
        );
        assert_eq!(p.start(ts(2000, 2, 29, 12, 0, 0)), ts(2000, 2, 1, 0, 0, 0));
        // Before 1970.
        assert_eq!(p.start(0), 0);
        assert_eq!(p.start(-1), ts(1969, 12, 1, 0, 0, 0));
        assert_eq!(p.end(-1), Some(0));
        assert_eq!(p.start(ts(1900, 2, 28, 23, 0, 0)), ts(1900, 2, 1, 0, 0, 0));
        assert_eq!(
            p.end(ts(1900, 2, 28, 23, 0, 0)),
            Some(ts(1900, 3, 1, 0, 0, 0))
        );
    }

    #[test]
    fn never_starts_at_zero_and_never_ends() {
        let p = BudgetPeriod::Never;
        assert_eq!(p.start(1_700_000_000), 0);
        assert_eq!(p.start(0), 0);
        assert_eq!(p.end(1_700_000_000), None);
        assert_eq!(LimitKind::Budget(p).resets_at(1_700_000_000), None);
        assert_eq!(
            LimitKind::Budget(p).epoch(1_700_000_000),
            LimitKind::Budget(p).epoch(0)
        );
    }

    #[test]
    fn budget_epochs_change_exactly_at_period_boundaries() {
        let now = ts(2024, 2, 29, 12, 34, 56);
        for p in [
            BudgetPeriod::Daily,
            BudgetPeriod::Weekly,
            BudgetPeriod::Monthly,
        ] {
            let kind = LimitKind::Budget(p);
            let start = kind.start(now);
            let end = kind.resets_at(now).unwrap();
            assert_eq!(kind.epoch(start), kind.epoch(now), "{p:?}");
            assert_eq!(kind.epoch(end - 1), kind.epoch(now), "{p:?}");
            assert_ne!(kind.epoch(end), kind.epoch(now), "{p:?}");
            assert_ne!(kind.epoch(start - 1), kind.epoch(now), "{p:?}");
        }
    }

    #[test]
    fn period_text_round_trips() {
        for p in [
            BudgetPeriod::Daily,
            BudgetPeriod::Weekly,
            BudgetPeriod::Monthly,
            BudgetPeriod::Never,
        ] {
            assert_eq!(BudgetPeriod::parse(p.as_str()), Some(p));
        }
        assert_eq!(BudgetPeriod::parse("hourly"), None);
    }
}
