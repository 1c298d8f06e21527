//! Budget periods and the pure calendar arithmetic behind them (UTC).

use serde::{Deserialize, Serialize};

/// How often a budget resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    /// Resets at 00:00 UTC every day.
    Daily,
    /// Resets on Monday 00:00 UTC.
    Weekly,
    /// Resets on the 1st of the month, 00:00 UTC.
    Monthly,
    /// Never resets (lifetime budget); its period start is 0.
    Never,
}

impl BudgetPeriod {
    /// The stored text form.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Daily => "daily",
            BudgetPeriod::Weekly => "weekly",
            BudgetPeriod::Monthly => "monthly",
            BudgetPeriod::Never => "never",
        }
    }

    /// Parses the stored text form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "daily" => BudgetPeriod::Daily,
            "weekly" => BudgetPeriod::Weekly,
            "monthly" => BudgetPeriod::Monthly,
            "never" => BudgetPeriod::Never,
            _ => return None,
        })
    }
}

const DAY: i64 = 86_400;

/// Start (unix seconds, UTC) of the budget period containing `now_unix`.
///
/// daily = UTC midnight, weekly = Monday 00:00 UTC, monthly = the 1st at
/// 00:00 UTC, never = 0. Works for instants before 1970 too.
pub fn period_start(period: BudgetPeriod, now_unix: i64) -> i64 {
    let days = now_unix.div_euclid(DAY);
    match period {
        BudgetPeriod::Daily => days * DAY,
        // 1970-01-01 was a Thursday: Monday-based weekday = (days + 3) mod 7.
        BudgetPeriod::Weekly => (days - (days + 3).rem_euclid(7)) * DAY,
        BudgetPeriod::Monthly => {
            let (y, m, _) = civil_from_days(days);
            days_from_civil(y, m, 1) * DAY
        }
        BudgetPeriod::Never => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month 1..=12, day 1..=31).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds for a UTC date-time.
    fn ts(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, mo, d) * DAY + h * 3600 + mi * 60 + s
    }

    #[test]
    fn civil_roundtrip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(ts(2024, 2, 29, 0, 0, 0), 1_709_164_800);
        for z in [-800_000, -1, 0, 1, 11_016, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn daily_boundaries() {
        let p = BudgetPeriod::Daily;
        let midnight = ts(2024, 3, 10, 0, 0, 0);
        assert_eq!(period_start(p, midnight), midnight);
        assert_eq!(period_start(p, midnight - 1), midnight - DAY);
        assert_eq!(period_start(p, midnight + DAY - 1), midnight);
        assert_eq!(period_start(p, 0), 0);
        assert_eq!(period_start(p, -1), -DAY);
    }

    #[test]
    fn weekly_starts_monday() {
        let p = BudgetPeriod::Weekly;
        // 2024-01-01 was a Monday.
        let monday = ts(2024, 1, 1, 0, 0, 0);
        assert_eq!(period_start(p, monday), monday);
        assert_eq!(period_start(p, monday - 1), ts(2023, 12, 25, 0, 0, 0));
        // Sunday 23:59:59 still belongs to the week that started 6 days ago.
        assert_eq!(period_start(p, ts(2024, 1, 7, 23, 59, 59)), monday);
        assert_eq!(
            period_start(p, ts(2024, 1, 8, 0, 0, 0)),
            ts(2024, 1, 8, 0, 0, 0)
        );
        // The epoch was a Thursday; its week began Monday 1969-12-29.
        assert_eq!(period_start(p, 0), ts(1969, 12, 29, 0, 0, 0));
        assert_eq!(period_start(p, 0), -3 * DAY);
    }

    #[test]
    fn monthly_boundaries() {
        let p = BudgetPeriod::Monthly;
        assert_eq!(
            period_start(p, ts(2024, 2, 29, 23, 59, 59)),
            ts(2024, 2, 1, 0, 0, 0)
        );
        assert_eq!(
            period_start(p, ts(2024, 3, 1, 0, 0, 0)),
            ts(2024, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            period_start(p, ts(2024, 3, 1, 0, 0, 0) - 1),
            ts(2024, 2, 1, 0, 0, 0)
        );
        assert_eq!(
            period_start(p, ts(2023, 12, 31, 23, 59, 59)),
            ts(2023, 12, 1, 0, 0, 0)
        );
        assert_eq!(
            period_start(p, ts(2024, 1, 1, 0, 0, 0)),
            ts(2024, 1, 1, 0, 0, 0)
        );
        // Non-leap 2100 and leap 2000.
        assert_eq!(
            period_start(p, ts(2100, 3, 1, 0, 0, 0) - 1),
            ts(2100, 2, 1, 0, 0, 0)
        );
        assert_eq!(
            period_start(p, ts(2000, 2, 29, 12, 0, 0)),
            ts(2000, 2, 1, 0, 0, 0)
        );
        assert_eq!(period_start(p, 0), 0);
        assert_eq!(period_start(p, -1), ts(1969, 12, 1, 0, 0, 0));
    }

    #[test]
    fn never_is_zero() {
        assert_eq!(period_start(BudgetPeriod::Never, 1_700_000_000), 0);
        assert_eq!(period_start(BudgetPeriod::Never, 0), 0);
    }

    #[test]
    fn period_text_roundtrip() {
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
