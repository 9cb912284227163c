//! Billing periods: calendar months in UTC, named `YYYY-MM`. A period's
//! bounds are `[first day 00:00Z, first day of the next month 00:00Z)` in
//! Unix milliseconds.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Errors parsing a period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("period {0:?} is not YYYY-MM (e.g. 2026-11)")]
    Malformed(String),
    #[error("time {0} ms is out of range")]
    OutOfRange(i64),
}

/// A calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Period {
    pub year: i32,
    pub month: u8,
}

impl Period {
    /// Parses `YYYY-MM` strictly (four-digit year 1970–9999, two-digit month).
    pub fn parse(s: &str) -> Result<Self, PeriodError> {
        let bad = || PeriodError::Malformed(s.to_owned());
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4
            || m.len() != 2
            || !y.bytes().all(|b| b.is_ascii_digit())
            || !m.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u8 = m.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || year < 1970 {
            return Err(bad());
        }
        Ok(Self { year, month })
    }

    /// The month containing `ms`.
    pub fn of_ms(ms: i64) -> Result<Self, PeriodError> {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .map_err(|_| PeriodError::OutOfRange(ms))?;
        Ok(Self {
            year: t.year(),
            month: u8::from(t.month()),
        })
    }

    /// `[start, end)` in Unix milliseconds.
    pub fn bounds(self) -> (i64, i64) {
        (
            month_start_ms(self.year, self.month),
            self.next().start_ms(),
        )
    }

    pub fn start_ms(self) -> i64 {
        month_start_ms(self.year, self.month)
    }

    pub fn end_ms(self) -> i64 {
        self.next().start_ms()
    }

    /// Length in milliseconds.
    pub fn len_ms(self) -> i64 {
        self.end_ms() - self.start_ms()
    }

    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }
}

fn month_start_ms(year: i32, month: u8) -> i64 {
    let m = time::Month::try_from(month).expect("month validated");
    let d = time::Date::from_calendar_date(year, m, 1).expect("date in range");
    i64::try_from(d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000)
        .expect("date in range")
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// RFC 3339 UTC with milliseconds only when they are not zero
/// (`2026-11-01T00:00:00Z`, `2026-11-20T10:15:02.250Z`): the form invoice
/// documents use.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    match t.millisecond() {
        0 => format!("{base}Z"),
        n => format!("{base}.{n:03}Z"),
    }
}

/// Parses RFC 3339 or a date (`YYYY-MM-DD`, midnight UTC) into Unix ms.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    crate::clock::dates::parse_time_ms(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_bounds() {
        let p = Period::parse("2026-11").unwrap();
        assert_eq!(p.to_string(), "2026-11");
        assert_eq!(rfc3339(p.start_ms()), "2026-11-01T00:00:00Z");
        assert_eq!(rfc3339(p.end_ms()), "2026-12-01T00:00:00Z");
        assert_eq!(p.len_ms(), 30 * 86_400_000);
        let d = Period::parse("2026-12").unwrap();
        assert_eq!(rfc3339(d.end_ms()), "2027-01-01T00:00:00Z");
        assert_eq!(Period::of_ms(d.start_ms()).unwrap(), d);
        assert_eq!(Period::of_ms(d.end_ms() - 1).unwrap(), d);
        for bad in [
            "2026-13",
            "2026-00",
            "26-11",
            "2026-1",
            "2026/11",
            "",
            "2026-11-01",
            "abcd-ef",
            "1969-12",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.500Z");
    }
}
