//! Sizes (`"512MiB"`, `"2GB"`, bytes) and durations (`"30s"`, `"1h30m"`) as written in `aac.toml`.
//!
//! `ByteSize` and `HumanDuration` have their own `Deserialize`, so a bad value is reported by
//! toml with the value's position, and the message says what was expected.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

const SIZE_EXPECTED: &str = "expected e.g. 512MiB or 4GiB";
const DURATION_EXPECTED: &str = "expected e.g. 500ms, 30s, 15m, 8h, 1d or 1h30m";

/// Binary (`KiB`…`TiB`) and decimal (`KB`…`TB`) units; the bare number or `B` is bytes.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// Largest first: a duration's parts must come in this order, each at most once.
const DURATION_UNITS: &[(&str, u64)] = &[
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a size: a whole number followed by an optional unit, e.g. `"512MiB"`, `"2GB"`, `"4096"`.
///
/// Binary units (`KiB`, `MiB`, `GiB`, `TiB`) are powers of 1024, decimal units (`KB`, `MB`, `GB`,
/// `TB`) powers of 1000; no unit or `B` means bytes. Units are case-sensitive.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size {text:?} ({SIZE_EXPECTED})");
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    if number.is_empty() {
        return Err(invalid());
    }
    let unit = unit.trim_start();
    let multiplier = SIZE_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, multiplier)| *multiplier)
        .ok_or_else(invalid)?;
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses a duration: one or more `<whole number><unit>` parts, largest unit first, e.g. `"500ms"`,
/// `"30s"`, `"15m"`, `"8h"`, `"1d"`, `"1h30m"`. Units: `d`, `h`, `m`, `s`, `ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} ({DURATION_EXPECTED})");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_ms: u64 = 0;
    // Index into DURATION_UNITS of the smallest unit a following part may use.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits_end].parse().map_err(|_| invalid())?;
        rest = &rest[digits_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let index = DURATION_UNITS[next_unit..]
            .iter()
            .position(|(name, _)| *name == unit)
            .map(|i| i + next_unit)
            .ok_or_else(invalid)?;
        next_unit = index + 1;
        total_ms = number
            .checked_mul(DURATION_UNITS[index].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("duration {text:?} is too long"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way [`parse_duration`] reads it (`"1h30m"`, `"500ms"`, `"0s"`).
pub fn format_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (name, unit_ms) in DURATION_UNITS {
        let unit_ms = u128::from(*unit_ms);
        if ms >= unit_ms {
            out.push_str(&format!("{}{name}", ms / unit_ms));
            ms %= unit_ms;
        }
    }
    out
}

/// A number of bytes, from `"4GiB"` or a bare integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"512MiB\" or \"4GiB\", or a number of bytes")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
                parse_size(text).map(ByteSize).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(bytes))
            }

            fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<ByteSize, E> {
                u64::try_from(bytes)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {bytes} ({SIZE_EXPECTED})")))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A duration, from `"15m"`, `"1h30m"`…; a bare number is refused (which unit would it be?).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"15m\" or \"8h\"")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                parse_duration(text).map(HumanDuration).map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, number: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "invalid duration {number}: a duration needs a unit, e.g. \"{number}s\" ({DURATION_EXPECTED})"
                )))
            }

            fn visit_u64<E: de::Error>(self, number: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "invalid duration {number}: a duration needs a unit, e.g. \"{number}s\" ({DURATION_EXPECTED})"
                )))
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("1024KiB"), Ok(1 << 20));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("10KB"), Ok(10_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("4 GiB"), Ok(4 << 30));
        for bad in ["", "GiB", "4 gigs", "4gib", "4G", "1.5GiB", "-1", "4GiB4"] {
            let err = parse_size(bad).unwrap_err();
            assert!(
                err.contains("invalid size") && err.contains("512MiB"),
                "{bad}: {err}"
            );
        }
        assert!(
            parse_size("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("8h"), Ok(Duration::from_secs(8 * 3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("1m30s250ms"),
            Ok(Duration::from_millis(90_250))
        );
        for bad in [
            "",
            "15",
            "m",
            "15 minutes",
            "15min",
            "30m1h",
            "1h1h",
            "1.5h",
            "-5s",
            "5S",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                err.contains("invalid duration") && err.contains("1h30m"),
                "{bad}: {err}"
            );
        }
        assert!(
            parse_duration("999999999999999d")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn durations_format_back() {
        for text in [
            "500ms",
            "30s",
            "15m",
            "8h",
            "1d",
            "1h30m",
            "1m30s250ms",
            "0s",
        ] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
