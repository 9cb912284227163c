//! The one size syntax of Cloister: every command-line flag, profile
//! annotation and config key that takes a size (the runner's `--memory`,
//! `--tmp-size`, `store gc --max-bytes`, its `[limits]` keys; the
//! attestor's `limits.max_body_bytes`) reads it through [`parse_size`], and
//! every config file through [`deserialize`].
//!
//! A crate of its own because both binaries need it and neither the
//! sandbox (where the runner's limits live) nor the attestor may depend on
//! the other; `cloister-policy`, the only crate below the sandbox, is about
//! policy digests, not units.
#![forbid(unsafe_code)]

use serde::{Deserialize, Deserializer};

/// Why a size was refused (see [`parse_size`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizeError {
    #[error("{0:?} is not a size (a number of bytes, or with K, M, G, T or KiB, MiB, GiB, TiB)")]
    Malformed(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parses a size: `4096`, `64K`, `512M`, `10G`, `1T`, or with `KiB`, `MiB`,
/// `GiB`, `TiB` (every unit a power of 1024; `KB`, `MB`... and a trailing
/// `B` are read the same, case does not matter).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| SizeError::Malformed(s.to_string()))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(SizeError::Malformed(s.to_string())),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| SizeError::TooLarge(s.to_string()))
}

/// A size key of a config file (serde `deserialize_with`): a number of
/// bytes (`4096`) or a string in the [`parse_size`] syntax (`"512M"`).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d) {
        Ok(Size::Bytes(n)) => Ok(n),
        Ok(Size::Text(s)) => parse_size(&s).map_err(serde::de::Error::custom),
        Err(_) => Err(serde::de::Error::custom(
            "expected a size: a number of bytes, or a string such as \"512M\" or \"1GiB\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_powers_of_1024_and_case_does_not_matter() {
        for (s, n) in [
            ("4096", 4096),
            ("0", 0),
            ("64K", 64 << 10),
            ("64k", 64 << 10),
            ("64KiB", 64 << 10),
            ("64KB", 64 << 10),
            ("512M", 512 << 20),
            ("512 MiB", 512 << 20),
            ("1GiB", 1 << 30),
            ("10G", 10 << 30),
            ("1T", 1 << 40),
            ("2tib", 2 << 40),
            ("100B", 100),
            (" 7M ", 7 << 20),
            ("1gib", 1 << 30),
            ("3MiB", 3 << 20),
            ("1TiB", 1 << 40),
            ("10 G", 10 << 30),
            ("16KB", 16 << 10),
        ] {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
    }

    #[test]
    fn bad_sizes_are_refused_naming_the_value() {
        for s in [
            "", "M", "ten", "5X", "1X", "1.5G", "-1", "1 G B", "1 GiBs", "0x10",
        ] {
            let e = parse_size(s).unwrap_err();
            assert_eq!(e, SizeError::Malformed(s.to_string()), "{s}");
            assert!(e.to_string().contains("KiB"), "{e}");
        }
        assert_eq!(
            parse_size("99999999T"),
            Err(SizeError::TooLarge("99999999T".into()))
        );
        assert_eq!(
            parse_size("1X").unwrap_err().to_string(),
            "\"1X\" is not a size (a number of bytes, or with K, M, G, T or KiB, MiB, GiB, TiB)"
        );
    }

    #[derive(Debug, Deserialize)]
    struct Conf {
        #[serde(deserialize_with = "deserialize")]
        size: u64,
    }

    #[test]
    fn config_keys_take_a_number_or_the_size_syntax() {
        let read = |text: &str| toml::from_str::<Conf>(text).map(|c| c.size);
        assert_eq!(read("size = 4096").unwrap(), 4096);
        assert_eq!(read("size = \"4096\"").unwrap(), 4096);
        assert_eq!(read("size = \"2MiB\"").unwrap(), 2 << 20);
        let e = read("size = \"2 parsecs\"").unwrap_err().to_string();
        assert!(e.contains("\"2 parsecs\" is not a size"), "{e}");
        let e = read("size = true").unwrap_err().to_string();
        assert!(e.contains("expected a size"), "{e}");
        assert!(read("size = -1").is_err());
    }
}
