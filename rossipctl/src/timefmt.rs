//! Time in, time out: parsing `--since`, printing timestamps and ages.
//!
//! Timestamps on the API are milliseconds since the Unix epoch. Human output shows them in
//! the local time zone (jiff reads `TZ` and the system tz database; without either it uses
//! UTC), so `--since` reads a time without an offset in that same zone: a time copied from
//! `tail` output means what it showed.

use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use rossip_proto::MessageId;
use rossip_proto::rpc::Since;

/// What `--since` accepts, for error messages and help.
pub const SINCE_FORMS: &str = "a message id (<32 hex digits>-<seq>), a time \
     (2026-11-24T05:20:01Z, 2026-11-24T05:20:01+01:00, or local: `2026-11-24 05:20:01`, \
     2026-11-24), or an age (30s, 10m, 2h, 1day)";

/// Parses a `--since` value, given the current time and the local zone.
///
/// A message id becomes [`Since::Id`]; a time, or an age counted back from `now`, becomes
/// [`Since::Time`] in milliseconds.
pub fn parse_since(value: &str, now: Timestamp, tz: &TimeZone) -> Result<Since, String> {
    let value = value.trim();
    if MessageId::from_str(value).is_ok() {
        return Ok(Since::Id(value.to_owned()));
    }
    let at = if let Ok(ts) = value.parse::<Timestamp>() {
        // RFC 3339 with `Z` or an offset: an absolute instant.
        ts
    } else if let Ok(local) = value.parse::<DateTime>() {
        // No offset: a wall-clock time here, as `tail` prints it.
        tz.to_timestamp(local)
            .map_err(|e| format!("{value:?} is not a valid local time: {e}"))?
    } else if let Ok(age) = humantime::parse_duration(value) {
        let age = jiff::SignedDuration::try_from(age)
            .map_err(|_| format!("{value:?} is too long ago"))?;
        now.checked_sub(age)
            .map_err(|_| format!("{value:?} is too long ago"))?
    } else {
        return Err(format!("cannot read {value:?}: expected {SINCE_FORMS}"));
    };
    u64::try_from(at.as_millisecond())
        .map(Since::Time)
        .map_err(|_| format!("{value:?} is before 1970"))
}

/// `YYYY-MM-DD HH:MM:SS` in `tz`. A timestamp outside what a calendar can show (a
/// misbehaving peer can send any number) is printed as the raw milliseconds instead.
pub fn format_time(ts_ms: u64, tz: &TimeZone) -> String {
    match i64::try_from(ts_ms).map(Timestamp::from_millisecond) {
        Ok(Ok(ts)) => tz.to_datetime(ts).strftime("%Y-%m-%d %H:%M:%S").to_string(),
        _ => format!("@{ts_ms}ms"),
    }
}

/// A compact age for tables: `42s`, `3m12s`, `5h07m`, `2d03h`.
pub fn format_age(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// How long ago `then_ms` was, as [`format_age`]; a time in the future (clock skew between
/// nodes) shows as `0s`.
pub fn format_ago(now_ms: u64, then_ms: u64) -> String {
    format_age(Duration::from_millis(now_ms.saturating_sub(then_ms)))
}

/// The current time in milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    u64::try_from(Timestamp::now().as_millisecond()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-24T05:20:01Z".parse().expect("valid timestamp")
    }

    fn ms(rfc3339: &str) -> u64 {
        let ts: Timestamp = rfc3339.parse().expect("valid timestamp");
        u64::try_from(ts.as_millisecond()).expect("after 1970")
    }

    #[test]
    fn since_message_id() {
        let id = format!("{}-42", "ab".repeat(16));
        assert_eq!(parse_since(&id, now(), &TimeZone::UTC), Ok(Since::Id(id)));
    }

    #[test]
    fn since_rfc3339_instant() {
        let tz = TimeZone::fixed(jiff::tz::offset(5));
        assert_eq!(
            parse_since("2026-11-24T05:00:00Z", now(), &tz),
            Ok(Since::Time(ms("2026-11-24T05:00:00Z")))
        );
        assert_eq!(
            parse_since("2026-11-24T06:00:00+01:00", now(), &tz),
            Ok(Since::Time(ms("2026-11-24T05:00:00Z")))
        );
    }

    #[test]
    fn since_local_time_uses_the_local_zone() {
        let plus2 = TimeZone::fixed(jiff::tz::offset(2));
        assert_eq!(
            parse_since("2026-11-24 07:00:00", now(), &plus2),
            Ok(Since::Time(ms("2026-11-24T05:00:00Z")))
        );
        assert_eq!(
            parse_since("2026-11-24", now(), &TimeZone::UTC),
            Ok(Since::Time(ms("2026-11-24T00:00:00Z")))
        );
    }

    #[test]
    fn since_relative_age() {
        assert_eq!(
            parse_since("10m", now(), &TimeZone::UTC),
            Ok(Since::Time(ms("2026-11-24T05:10:01Z")))
        );
        assert_eq!(
            parse_since("2h", now(), &TimeZone::UTC),
            Ok(Since::Time(ms("2026-11-24T03:20:01Z")))
        );
        assert_eq!(
            parse_since("1h 30m", now(), &TimeZone::UTC),
            Ok(Since::Time(ms("2026-11-24T03:50:01Z")))
        );
    }

    #[test]
    fn since_rejects_nonsense_with_the_accepted_forms() {
        for bad in ["yesterday", "abc-1", "", "1970-01-01T00:00:00-01:00x"] {
            let err = parse_since(bad, now(), &TimeZone::UTC).expect_err(bad);
            assert!(err.contains("message id"), "{bad:?}: {err}");
        }
        let err = parse_since("1969-12-31T23:59:59Z", now(), &TimeZone::UTC).expect_err("1969");
        assert!(err.contains("before 1970"), "{err}");
        assert!(parse_since("100000y", now(), &TimeZone::UTC).is_err());
    }

    #[test]
    fn time_is_shown_in_the_given_zone() {
        let t = ms("2026-11-24T05:20:01.999Z");
        assert_eq!(format_time(t, &TimeZone::UTC), "2026-11-24 05:20:01");
        let minus3 = TimeZone::fixed(jiff::tz::offset(-3));
        assert_eq!(format_time(t, &minus3), "2026-11-24 02:20:01");
        assert_eq!(
            format_time(u64::MAX, &TimeZone::UTC),
            "@18446744073709551615ms"
        );
    }

    #[test]
    fn ages_are_compact() {
        assert_eq!(format_age(Duration::from_secs(0)), "0s");
        assert_eq!(format_age(Duration::from_secs(59)), "59s");
        assert_eq!(format_age(Duration::from_secs(192)), "3m12s");
        assert_eq!(
            format_age(Duration::from_secs(3600 * 5 + 7 * 60 + 9)),
            "5h07m"
        );
        assert_eq!(
            format_age(Duration::from_secs(86400 * 2 + 3600 * 3)),
            "2d03h"
        );
        assert_eq!(format_ago(10_000, 20_000), "0s");
        assert_eq!(format_ago(200_000, 8_000), "3m12s");
    }
}
