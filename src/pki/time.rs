//! Unix time helpers: the current time and a UTC rendering for messages.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds per day, for validity periods given in days.
pub(crate) const SECS_PER_DAY: i64 = 86_400;

/// The current time in seconds since the Unix epoch (negative before 1970).
pub fn now_unix() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Renders Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
///
/// Written here rather than taken from a date crate: it is only used for messages, and this is
/// the whole of it (Howard Hinnant's days-to-civil algorithm, valid for every i64 input we pass,
/// which come from parsed certificates and so lie between years 0 and 9999).
pub fn format_unix_utc(secs: i64) -> String {
    let (date, time) = date_and_time(secs);
    format!("{date} {time} UTC")
}

/// `YYYY-MM-DD` and `HH:MM:SS` of Unix seconds, UTC.
fn date_and_time(secs: i64) -> (String, String) {
    let days = secs.div_euclid(SECS_PER_DAY);
    let rem = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, (rem % 3600) / 60, rem % 60),
    )
}

/// Renders Unix seconds as ISO 8601 UTC, `YYYY-MM-DDTHH:MM:SSZ` (logs, JSON output).
pub fn format_unix_iso(secs: i64) -> String {
    let (date, time) = date_and_time(secs);
    format!("{date}T{time}Z")
}

/// Converts days since 1970-01-01 into (year, month, day) of the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of the (400-year) era.
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    // Saturating so that absurd times from a peer (file mtimes) cannot overflow.
    let year = yoe.saturating_add(era.saturating_mul(400)) + i64::from(month <= 2);
    // Both values are range-limited by the arithmetic above.
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_the_epoch_and_known_dates() {
        assert_eq!(format_unix_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_unix_utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(format_unix_utc(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(format_unix_utc(253_402_300_799), "9999-12-31 23:59:59 UTC");
    }

    #[test]
    fn now_is_after_2024() {
        assert!(now_unix() > 1_704_067_200);
    }
}
