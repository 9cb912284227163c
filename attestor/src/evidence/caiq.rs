//! CAIQ-lite answers as data (`cookbook/procurement/caiq-lite.toml`):
//! keyed by CSA CAIQ v4 question IDs (`A&A-02.1`, `CEK-03.1`, …), with our
//! own answer text (CSA's question text is not copied), Yes/No/NA, and the
//! pack files each answer points to as evidence. Parsed strictly and
//! validated when a pack is built: well-formed and unique IDs, a known
//! answer, and every evidence reference present in the pack.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The answers shipped with Cloister (the operator may pass another file).
pub const BUILT_IN: &str = include_str!("../../../cookbook/procurement/caiq-lite.toml");

/// CCM v4 domain prefixes a CAIQ v4 question ID starts with.
pub const DOMAINS: &[&str] = &[
    "A&A", "AIS", "BCR", "CCC", "CEK", "DCS", "DSP", "GRC", "HRS", "IAM", "IPY", "IVS", "LOG",
    "SEF", "STA", "TVM", "UEM",
];

/// Errors reading or validating answers.
#[derive(Debug, thiserror::Error)]
pub enum CaiqError {
    #[error("answers file: {0}")]
    Toml(#[from] Box<toml::de::Error>),
    #[error("answer {id}: {why}")]
    Invalid { id: String, why: String },
    #[error("answers file: version {0:?} is not 1.1")]
    Version(String),
}

/// Yes, No or NA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Yes,
    No,
    #[serde(rename = "NA")]
    Na,
}

impl Reply {
    pub fn as_str(self) -> &'static str {
        match self {
            Reply::Yes => "Yes",
            Reply::No => "No",
            Reply::Na => "NA",
        }
    }
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// CAIQ v4 question ID.
    pub id: String,
    /// The CCM domain's name (for readers).
    pub domain: String,
    pub answer: Reply,
    /// Our own answer text.
    pub text: String,
    /// Pack files (or directories, ending in `/`) that back the answer.
    pub evidence: Vec<String>,
}

/// One service-level objective the pack states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub name: String,
    pub objective: String,
    pub target: String,
    pub window: String,
}

/// The answers file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    pub version: String,
    #[serde(rename = "answer")]
    pub answers: Vec<Answer>,
    #[serde(default, rename = "slo")]
    pub slos: Vec<Slo>,
}

/// Whether `id` has the shape of a CAIQ v4 question ID (`DOM-NN.N`).
pub fn valid_id(id: &str) -> bool {
    let Some((domain, rest)) = id.split_once('-') else {
        return false;
    };
    let Some((control, question)) = rest.split_once('.') else {
        return false;
    };
    DOMAINS.contains(&domain)
        && control.len() == 2
        && control.bytes().all(|b| b.is_ascii_digit())
        && control != "00"
        && (1..=2).contains(&question.len())
        && question.bytes().all(|b| b.is_ascii_digit())
        && !question.starts_with('0')
}

impl Answers {
    /// Parses and checks the file's own rules (IDs, uniqueness, text).
    pub fn parse(text: &str) -> Result<Self, CaiqError> {
        let a: Answers = toml::from_str(text).map_err(Box::new)?;
        if a.version != "1.1" {
            return Err(CaiqError::Version(a.version));
        }
        let mut seen = BTreeSet::new();
        for ans in &a.answers {
            let bad = |why: &str| CaiqError::Invalid {
                id: ans.id.clone(),
                why: why.to_owned(),
            };
            if !valid_id(&ans.id) {
                return Err(bad("not a CAIQ v4 question ID (e.g. A&A-02.1, CEK-03.1)"));
            }
            if !seen.insert(ans.id.as_str()) {
                return Err(bad("answered twice"));
            }
            if ans.text.trim().is_empty() || ans.domain.trim().is_empty() {
                return Err(bad("domain and text must not be empty"));
            }
            if ans.answer != Reply::Na && ans.evidence.is_empty() {
                return Err(bad("a Yes or No answer names at least one evidence file"));
            }
        }
        if a.answers.is_empty() {
            return Err(CaiqError::Invalid {
                id: "-".into(),
                why: "no answers".into(),
            });
        }
        Ok(a)
    }

    /// Every evidence reference must be a file of the pack (or a directory
    /// holding at least one).
    pub fn check_evidence(&self, files: &BTreeSet<String>) -> Result<(), CaiqError> {
        for ans in &self.answers {
            for ev in &ans.evidence {
                let present = match ev.strip_suffix('/') {
                    Some(dir) => files
                        .range(format!("{dir}/")..)
                        .next()
                        .is_some_and(|f| f.starts_with(&format!("{dir}/"))),
                    None => files.contains(ev),
                };
                if !present {
                    return Err(CaiqError::Invalid {
                        id: ans.id.clone(),
                        why: format!("evidence {ev:?} is not in the pack"),
                    });
                }
            }
        }
        Ok(())
    }

    /// The answers as CSV (RFC 4180), one row per question.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("question_id,domain,answer,answer_text,evidence\r\n");
        for a in &self.answers {
            let row = [
                a.id.as_str(),
                a.domain.as_str(),
                a.answer.as_str(),
                a.text.as_str(),
                &a.evidence.join(";"),
            ];
            let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
        out
    }

    /// Answers per domain prefix (for the README's summary).
    pub fn counts(&self) -> BTreeMap<&str, (usize, usize)> {
        let mut out: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for a in &self.answers {
            let d = a.id.split('-').next().unwrap_or_default();
            let e = out.entry(d).or_default();
            e.0 += 1;
            if a.answer == Reply::Yes {
                e.1 += 1;
            }
        }
        out
    }
}

/// One CSV cell: quoted when it holds a comma, quote or line break, quotes doubled.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_caiq_v4_shape() {
        for ok in ["A&A-02.1", "CEK-03.1", "LOG-13.2", "IVS-09.1"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in [
            "A&A-2.1",
            "XYZ-01.1",
            "CEK-03",
            "CEK-00.1",
            "CEK-03.0",
            "cek-03.1",
            "CEK-03.123",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_shipped_answers_parse_and_quote_in_csv() {
        let a = Answers::parse(BUILT_IN).unwrap();
        assert!(a.answers.len() >= 20);
        assert!(a.answers.iter().any(|x| x.id.starts_with("LOG-")));
        let csv = a.to_csv();
        assert_eq!(csv.lines().count(), a.answers.len() + 1);
        assert_eq!(csv_cell("a,\"b\""), "\"a,\"\"b\"\"\"");
    }

    #[test]
    fn bad_answers_are_refused_with_the_question() {
        let one = "[[answer]]\nid = \"CEK-03.1\"\ndomain = \"d\"\nanswer = \"Yes\"\ntext = \"t\"\nevidence = [\"a\", \"dir/\"]\n";
        let file = format!("version = \"1.1\"\n{one}");
        let a = Answers::parse(&file).unwrap();
        let dup = format!("{file}{one}");
        assert!(
            matches!(Answers::parse(&dup), Err(CaiqError::Invalid { id, .. }) if id == "CEK-03.1")
        );
        assert!(Answers::parse(&file.replace("\"Yes\"", "\"Maybe\"")).is_err());
        assert!(Answers::parse(&file.replace("1.1", "1.0")).is_err());
        assert!(Answers::parse(&file.replace("CEK-03.1", "CEK-3")).is_err());
        let files =
            |names: &[&str]| -> BTreeSet<String> { names.iter().map(|s| s.to_string()).collect() };
        assert!(a.check_evidence(&files(&["b", "dir/x"])).is_err());
        assert!(a.check_evidence(&files(&["a", "dirx/y"])).is_err());
        a.check_evidence(&files(&["a", "dir/x"])).unwrap();
    }
}
