//! HL7 v2 field paths such as `MSH-9.1`, `PID-3.1`, `OBX[2]-5`, `PID-3(2).1`.
//!
//! A path names a segment, optionally which occurrence of it (`[n]`, 1-based), a field number,
//! optionally which repetition (`(n)`, 1-based), then optionally a component and subcomponent.
//! With no occurrence or repetition given, a *condition* considers every occurrence and every
//! repetition, and a *transform* acts on the first occurrence; a transform of a whole field
//! (`PID-3`) replaces or clears every repetition, one of a component (`PID-3.1`) acts on the
//! first repetition.

use std::fmt;
use std::str::FromStr;

/// A parsed field path. Numbers are 1-based, as HL7 counts them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    /// Three-character segment id, upper case (`MSH`, `PID`, `ZDS`).
    pub segment: String,
    /// Which occurrence of the segment; `None` means any (conditions) or the first (transforms).
    pub occurrence: Option<usize>,
    /// Field number. For MSH, `MSH-1` is the field separator and `MSH-2` the encoding characters.
    pub field: usize,
    /// Which repetition of the field; `None` means any (conditions), or for transforms the whole
    /// field if no component is given and the first repetition otherwise.
    pub repetition: Option<usize>,
    pub component: Option<usize>,
    pub subcomponent: Option<usize>,
}

impl FromStr for FieldPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!("`{s}` is not a field path ({why}); write it like `PID-3.1`, `OBX[2]-5` or `PID-3(2).1`")
        };
        let s_trim = s.trim();
        let (seg_part, rest) = s_trim.split_once('-').ok_or_else(|| bad("no `-` between segment and field"))?;
        let (segment, occurrence) = match seg_part.split_once('[') {
            Some((name, occ)) => {
                let occ = occ.strip_suffix(']').ok_or_else(|| bad("`[` without `]`"))?;
                (name, Some(parse_index(occ).ok_or_else(|| bad("occurrence must be a number ≥ 1"))?))
            }
            None => (seg_part, None),
        };
        if segment.len() != 3 || !segment.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(bad("the segment id must be three upper-case letters or digits"));
        }
        let mut parts = rest.split('.');
        let field_part = parts.next().unwrap_or_default();
        let (field, repetition) = match field_part.split_once('(') {
            Some((f, r)) => {
                let r = r.strip_suffix(')').ok_or_else(|| bad("`(` without `)`"))?;
                (f, Some(parse_index(r).ok_or_else(|| bad("repetition must be a number ≥ 1"))?))
            }
            None => (field_part, None),
        };
        let field = parse_index(field).ok_or_else(|| bad("field must be a number ≥ 1"))?;
        let component = match parts.next() {
            Some(c) => Some(parse_index(c).ok_or_else(|| bad("component must be a number ≥ 1"))?),
            None => None,
        };
        let subcomponent = match parts.next() {
            Some(c) => Some(parse_index(c).ok_or_else(|| bad("subcomponent must be a number ≥ 1"))?),
            None => None,
        };
        if parts.next().is_some() {
            return Err(bad("too many `.` parts"));
        }
        Ok(FieldPath { segment: segment.to_string(), occurrence, field, repetition, component, subcomponent })
    }
}

fn parse_index(s: &str) -> Option<usize> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Some(n),
        _ => None,
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segment)?;
        if let Some(o) = self.occurrence {
            write!(f, "[{o}]")?;
        }
        write!(f, "-{}", self.field)?;
        if let Some(r) = self.repetition {
            write!(f, "({r})")?;
        }
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        if let Some(sc) = self.subcomponent {
            write!(f, ".{sc}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_round_trip() {
        for p in ["MSH-9.1", "PID-3", "OBX[2]-5", "PID-3(2).1.2", "ZDS-1"] {
            let parsed: FieldPath = p.parse().unwrap();
            assert_eq!(parsed.to_string(), p);
        }
        let p: FieldPath = "OBX[2]-5(3).4.1".parse().unwrap();
        assert_eq!(p.segment, "OBX");
        assert_eq!(p.occurrence, Some(2));
        assert_eq!(p.field, 5);
        assert_eq!(p.repetition, Some(3));
        assert_eq!(p.component, Some(4));
        assert_eq!(p.subcomponent, Some(1));
    }

    #[test]
    fn rejects_bad_paths_with_a_hint() {
        for p in ["MSH", "msh-9", "MSH-0", "MSH-9.0", "PID-3(x)", "OBX[2-5", "PID-3.1.2.3", "PIDX-1"] {
            let err = p.parse::<FieldPath>().unwrap_err();
            assert!(err.contains("PID-3.1"), "{p}: {err}");
        }
    }
}
