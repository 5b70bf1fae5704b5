//! Go `time.Duration` strings, the format kubelet uses for `cacheDuration`
//! and for durations in its config.

use anyhow::{Result, bail};
use std::time::Duration;

/// Formats whole seconds the way Go's `Duration.String` does (`0s`, `45s`,
/// `1m0s`, `1h2m3s`), so that what we emit is byte-identical to what a Go
/// provider would emit and certainly parses with `time.ParseDuration`.
pub fn format_go_seconds(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// Parses a non-negative Go duration string (`1h30m`, `1.5h`, `300ms`, `0`).
///
/// Used for durations in the host config, which operators copy from kubelet
/// configs; negative durations are rejected because no setting here has a
/// meaning for them.
pub fn parse_go_duration(text: &str) -> Result<Duration> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        bail!("invalid duration \"\": empty");
    }
    if text.starts_with('-') {
        bail!("invalid duration {text:?}: must not be negative");
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        bail!("invalid duration {text:?}");
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(num_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            bail!("invalid duration {text:?}: expected a number");
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => bail!("invalid duration {text:?}: missing unit (use ns, us, ms, s, m or h)"),
            other => bail!("invalid duration {text:?}: unknown unit {other:?}"),
        };
        let value: f64 = number
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid duration {text:?}: bad number {number:?}"))?;
        total_nanos += value * scale;
        rest = after;
    }
    if total_nanos > u64::MAX as f64 {
        bail!("invalid duration {text:?}: too large");
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        for (secs, want) in [
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1m0s"),
            (61, "1m1s"),
            (3600, "1h0m0s"),
            (3723, "1h2m3s"),
            (43200, "12h0m0s"),
            (90061, "25h1m1s"),
        ] {
            assert_eq!(format_go_seconds(secs), want, "{secs}");
        }
    }

    #[test]
    fn parses_go_forms() {
        for (text, secs_ms) in [
            ("0", 0),
            ("0s", 0),
            ("1m", 60_000),
            ("1h30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("300ms", 300),
            ("10s", 10_000),
            ("1h2m3s", 3_723_000),
        ] {
            assert_eq!(
                parse_go_duration(text).unwrap().as_millis(),
                secs_ms,
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for text in ["", "10", "1d", "abc", "-5m", "1..5s", "+", "s"] {
            assert!(parse_go_duration(text).is_err(), "{text:?} should fail");
        }
    }

    #[test]
    fn round_trips() {
        for secs in [0u64, 5, 60, 3599, 3600, 86399, 123_456] {
            let text = format_go_seconds(secs);
            assert_eq!(parse_go_duration(&text).unwrap().as_secs(), secs);
        }
    }
}
