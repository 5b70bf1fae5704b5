//! The two timestamp formats AWS uses here: SigV4's `X-Amz-Date`
//! (`20150830T123600Z`) and the RFC 3339 `Expiration` of STS and IMDS
//! credentials (`2026-01-01T01:00:00Z`), via `humantime`.

use std::time::{Duration, UNIX_EPOCH};

/// Seconds since the Unix epoch as SigV4's `X-Amz-Date`.
pub fn amz_date(unix_seconds: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(unix_seconds);
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace(['-', ':'], "")
}

/// An RFC 3339 UTC timestamp (optional fraction, dropped) as seconds since
/// the Unix epoch; AWS always answers in UTC (`Z`).
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let time = humantime::parse_rfc3339(text.trim()).ok()?;
    time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_amz_dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(1_767_225_599), "20251231T235959Z");
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2015-08-30T12:36:00Z"), Some(1_440_938_160));
        assert_eq!(parse_rfc3339("2026-01-01T01:00:00Z"), Some(1_767_229_200));
        assert_eq!(
            parse_rfc3339("2026-01-01T01:00:00.123Z"),
            Some(1_767_229_200)
        );
        assert_eq!(parse_rfc3339(" 2000-02-29T00:00:00Z\n"), Some(951_782_400));
        for bad in [
            "",
            "2026-01-01",
            "2026-13-01T00:00:00Z",
            "not a date",
            "2026-01-01T25:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn round_trips() {
        for t in [
            0u64,
            951_782_400,
            1_440_938_160,
            1_767_229_200,
            4_102_444_800,
        ] {
            let rfc =
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string();
            assert_eq!(parse_rfc3339(&rfc), Some(t), "{rfc}");
        }
    }
}
