//! The limit vocabulary the profile, the spec, the cgroups and the report
//! share: [`MilliCpus`] (a CPU bandwidth) and [`LimitKind`] (which limit).
//! Plain data below `profile` and `spec`, so neither imports the other for it.

use std::str::FromStr;

/// Thousandths of a CPU (`1500` = one and a half CPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MilliCpus(pub u32);

impl FromStr for MilliCpus {
    type Err = String;
    /// `2`, `0.5`, `1.25` (at most three decimals).
    fn from_str(s: &str) -> Result<MilliCpus, String> {
        let bad = || format!("{s:?} is not a positive number of CPUs (e.g. 2 or 0.5)");
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if (int.is_empty() && frac.is_empty())
            || frac.len() > 3
            || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
        {
            return Err(bad());
        }
        let int: u32 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let frac: u32 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
        let milli = int
            .checked_mul(1000)
            .and_then(|m| m.checked_add(frac))
            .filter(|m| *m > 0)
            .ok_or_else(bad)?;
        Ok(MilliCpus(milli))
    }
}

/// Which limit stopped a run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum LimitKind {
    /// The wall-clock timeout fired and the process tree was killed.
    Timeout,
    /// The memory limit was reached and the kernel killed a process.
    Memory,
    /// The pid limit was reached: a fork or thread creation failed.
    Pids,
    /// The cpu limit (never "hit"; listed so profiles can mark it optional).
    Cpu,
    /// A disk limit: a size-capped tmpfs (`/tmp`) filled up, or the
    /// writable binds grew past the workspace limit.
    Disk,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitKind::Timeout => "timeout",
            LimitKind::Memory => "memory",
            LimitKind::Pids => "pids",
            LimitKind::Cpu => "cpu",
            LimitKind::Disk => "disk",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_parse_to_thousandths() {
        assert_eq!("2".parse::<MilliCpus>(), Ok(MilliCpus(2000)));
        assert_eq!("0.5".parse::<MilliCpus>(), Ok(MilliCpus(500)));
        assert_eq!("1.25".parse::<MilliCpus>(), Ok(MilliCpus(1250)));
        for bad in ["", "0", "-1", "1.2345", "x", ".", "1e3"] {
            assert!(bad.parse::<MilliCpus>().is_err(), "{bad}");
        }
    }
}
