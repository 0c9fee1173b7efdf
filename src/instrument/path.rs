//! Places in ASTM E1394 records, written as instrument interface manuals write them: `R.4` is
//! field 4 of a result record, `R.3.4` component 4 of field 3. Fields count as the standard
//! counts them: field 1 is the record type letter (`R`), so the sequence number is field 2 and
//! the universal test id field 3. A path names the first repetition of a field.

use std::fmt;
use std::str::FromStr;

/// A record type, a field and optionally a component; all numbers 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AstmPath {
    /// `H`, `P`, `O`, `R`, `C`, `Q`, `M` or `L`.
    pub record: char,
    /// 2 or more (field 1 is the record type itself).
    pub field: usize,
    pub component: Option<usize>,
}

/// The record types of E1394 / LIS2-A2.
pub(crate) const RECORD_TYPES: &str = "HPORCQML";

impl FromStr for AstmPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| format!("{s:?} is not a record path ({why}); write it like \"R.4\" or \"R.3.4\"");
        let mut parts = s.trim().split('.');
        let record = parts.next().unwrap_or_default();
        let mut letters = record.chars();
        let (Some(letter), None) = (letters.next(), letters.next()) else {
            return Err(bad("it must start with one record letter"));
        };
        if !RECORD_TYPES.contains(letter) {
            return Err(bad(&format!("{letter:?} is not a record type; the record types are H, P, O, R, C, Q, M, L")));
        }
        let field = match parts.next().map(str::parse::<usize>) {
            Some(Ok(n)) if n >= 2 => n,
            Some(Ok(1)) => return Err(bad("field 1 is the record type letter itself; fields with data start at 2")),
            _ => return Err(bad("the field must be a number from 2")),
        };
        let component = match parts.next().map(str::parse::<usize>) {
            None => None,
            Some(Ok(n)) if n >= 1 => Some(n),
            Some(_) => return Err(bad("the component must be a number from 1")),
        };
        if parts.next().is_some() {
            return Err(bad("a path has at most a record, a field and a component"));
        }
        Ok(AstmPath { record: letter, field, component })
    }
}

impl fmt::Display for AstmPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.record, self.field)?;
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        for p in ["R.4", "R.3.4", "O.3", "O.4.1", "H.12", "R.13"] {
            let path: AstmPath = p.parse().unwrap();
            assert_eq!(path.to_string(), p);
        }
        let p: AstmPath = "R.3.4".parse().unwrap();
        assert_eq!((p.record, p.field, p.component), ('R', 3, Some(4)));
    }

    #[test]
    fn refuses_bad_paths_saying_why() {
        for (p, why) in [
            ("R", "field"),
            ("R.1", "record type letter itself"),
            ("R.0", "from 2"),
            ("X.3", "not a record type"),
            ("r.3", "not a record type"),
            ("RR.3", "one record letter"),
            ("R.3.0", "component"),
            ("R.3.x", "component"),
            ("R.3.4.1", "at most"),
            ("R-3", "one record letter"),
            ("", "one record letter"),
        ] {
            let err = p.parse::<AstmPath>().unwrap_err();
            assert!(err.contains(why) && err.contains("\"R.3.4\""), "{p}: {err}");
        }
    }
}
