//! Times on the wire: [`rfc3339`] of a Unix-millisecond time, the period
//! bounds a query or a CLI flag takes ([`parse_time_ms`]) and calendar
//! months ([`month_bounds`]).

/// RFC 3339 (UTC, milliseconds) of a Unix-millisecond time.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Parses a period bound: RFC 3339 or `YYYY-MM-DD` (midnight UTC).
pub fn parse_time_ms(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let t = if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        t
    } else {
        let d =
            time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
        d.midnight().assume_utc()
    };
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// `[start, end)` of the calendar month (UTC) containing `ms`, or of
/// `YYYY-MM` when given.
pub fn month_bounds(ms: i64, period: Option<&str>) -> Option<(i64, i64)> {
    let first = match period {
        Some(p) => {
            let (y, m) = p.split_once('-')?;
            if y.len() != 4 || m.len() != 2 {
                return None;
            }
            let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
            time::Date::from_calendar_date(y.parse().ok()?, month, 1).ok()?
        }
        None => {
            let now =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
            time::Date::from_calendar_date(now.year(), now.month(), 1).ok()?
        }
    };
    let next = if first.month() == time::Month::December {
        time::Date::from_calendar_date(first.year() + 1, time::Month::January, 1).ok()?
    } else {
        time::Date::from_calendar_date(first.year(), first.month().next(), 1).ok()?
    };
    let ms_of = |d: time::Date| {
        i64::try_from(d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000).ok()
    };
    Some((ms_of(first)?, ms_of(next)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_bounds() {
        let (a, b) = month_bounds(0, Some("2026-04")).unwrap();
        assert_eq!(rfc3339(a), "2026-04-01T00:00:00Z");
        assert_eq!(rfc3339(b), "2026-05-01T00:00:00Z");
        let (a, b) = month_bounds(0, Some("2025-12")).unwrap();
        assert_eq!(rfc3339(a), "2025-12-01T00:00:00Z");
        assert_eq!(rfc3339(b), "2026-01-01T00:00:00Z");
        assert!(month_bounds(0, Some("2026-13")).is_none());
        assert!(month_bounds(0, Some("26-01")).is_none());
        assert_eq!(parse_time_ms("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_time_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_time_ms("yesterday"), None);
    }
}
