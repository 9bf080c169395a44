//! Conversions between protobuf timestamps and `chrono` times.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

/// A protobuf timestamp of `time`. A leap second (chrono's nanos past 999 999 999, as `23:59:60` parses) is carried
/// into the next second, as Postgres stores it.
pub fn to_timestamp(time: DateTime<Utc>) -> Timestamp {
    let nanos = time.timestamp_subsec_nanos();
    Timestamp {
        seconds: time.timestamp() + i64::from(nanos / 1_000_000_000),
        nanos: (nanos % 1_000_000_000) as i32,
    }
}

/// The time of a protobuf timestamp, or `None` when it is out of range. Nanos must be 0 to 999 999 999, as the
/// Timestamp message defines them; chrono alone would also take up to 1 999 999 999 in a second ending in 59 (a leap
/// second), which Postgres stores as the next second.
pub fn from_timestamp(timestamp: &Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(timestamp.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)?;
    DateTime::from_timestamp(timestamp.seconds, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_out_of_range() {
        let now = Utc::now();
        assert_eq!(from_timestamp(&to_timestamp(now)), Some(now));
        assert_eq!(
            from_timestamp(&Timestamp {
                seconds: 0,
                nanos: -1
            }),
            None
        );
        assert_eq!(
            from_timestamp(&Timestamp {
                seconds: i64::MAX,
                nanos: 0
            }),
            None
        );
        // A leap second, as RFC 3339 text writes it, is the next second's start.
        let leap = DateTime::parse_from_rfc3339("2016-12-31T23:59:60.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            to_timestamp(leap),
            Timestamp {
                seconds: 1_483_228_800,
                nanos: 500_000_000
            }
        );
        // A leap second's nanos, which chrono would take.
        assert_eq!(
            from_timestamp(&Timestamp {
                seconds: 1_767_225_659,
                nanos: 1_500_000_000
            }),
            None
        );
    }
}
