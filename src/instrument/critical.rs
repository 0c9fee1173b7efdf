//! Critical results: a value outside the critical range the profile gives for its test, or an
//! instrument flag that says so (`HH`, `LL`, off scale `>` `<`). What [`critical`] returns names
//! the test and the kind of finding, never the value or anything about the patient, so it can go
//! into an escalation ("critical result for WBC on yumizen-1") as it is.

use std::fmt;

use super::{Flag, Profile, ResultRow, ResultStatus};

/// A critical finding about one result: which test and why, no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Critical {
    /// The instrument's test code (`WBC`).
    pub test_code: String,
    pub kind: CriticalKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriticalKind {
    /// Above the profile's `critical_high`.
    High,
    /// Below the profile's `critical_low`.
    Low,
    /// The instrument flagged it `HH` (above its high panic limit).
    FlagHH,
    /// The instrument flagged it `LL` (below its low panic limit).
    FlagLL,
    /// The instrument flagged it `>`: above what it can measure.
    AboveScale,
    /// The instrument flagged it `<`: below what it can measure.
    BelowScale,
}

impl CriticalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CriticalKind::High => "above the critical high",
            CriticalKind::Low => "below the critical low",
            CriticalKind::FlagHH => "flagged HH by the instrument",
            CriticalKind::FlagLL => "flagged LL by the instrument",
            CriticalKind::AboveScale => "above the instrument's measuring range",
            CriticalKind::BelowScale => "below the instrument's measuring range",
        }
    }
}

/// `critical result for WBC (above the critical high)`.
impl fmt::Display for Critical {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "critical result for {} ({})", self.test_code, self.kind.as_str())
    }
}

/// Whether `row` is critical, and why. In order of precedence: the profile's critical range
/// (only when the row's units are the ones the range is in, or the instrument sends none), then
/// the instrument's `HH`/`LL`, then its off-scale `>`/`<`. A result that could not be done
/// (status X) is never critical: there is no result to act on, whatever its flags.
///
/// A value with a comparator counts when every value it allows is beyond the limit: `>500`
/// with `critical_high = 400` is high, `<50` with `critical_low = 50` is low.
pub fn critical(row: &ResultRow, profile: &Profile) -> Option<Critical> {
    if row.status == Some(ResultStatus::CannotBeDone) {
        return None;
    }
    let found = |kind| Some(Critical { test_code: row.test_code.clone(), kind });
    if let Some(test) = profile.test(&row.test_code).filter(|t| units_agree(row.units.as_deref(), t))
        && let Some((comparator, value)) = parse_value(&row.value)
    {
        let above = |limit: f64| match comparator {
            Comparator::Equal => value > limit,
            Comparator::Greater => value >= limit,
            Comparator::Less => false,
        };
        let below = |limit: f64| match comparator {
            Comparator::Equal => value < limit,
            Comparator::Less => value <= limit,
            Comparator::Greater => false,
        };
        if test.critical_high.is_some_and(above) {
            return found(CriticalKind::High);
        }
        if test.critical_low.is_some_and(below) {
            return found(CriticalKind::Low);
        }
    }
    for (flag, kind) in [
        (Flag::HighHigh, CriticalKind::FlagHH),
        (Flag::LowLow, CriticalKind::FlagLL),
        (Flag::AboveScale, CriticalKind::AboveScale),
        (Flag::BelowScale, CriticalKind::BelowScale),
    ] {
        if row.flags.contains(&flag) {
            return found(kind);
        }
    }
    None
}

/// Whether a value in `units` (as the instrument sent them) is in the units of the map entry:
/// no units sent (the map's apply), the map's units, or the instrument's spelling of them, case
/// ignored (instruments write `mg/dl` for `mg/dL`).
pub(super) fn units_agree(units: Option<&str>, test: &super::TestDef) -> bool {
    let Some(units) = units.map(str::trim).filter(|u| !u.is_empty()) else {
        return true;
    };
    [&test.units, &test.instrument_units].into_iter().flatten().any(|u| u.eq_ignore_ascii_case(units))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Comparator {
    Equal,
    Greater,
    Less,
}

/// `4.55` → (=, 4.55); `>500`, `>=500` → (>, 500); `<0.5`, `<=0.5` → (<, 0.5). `None` for text.
pub(super) fn parse_value(value: &str) -> Option<(Comparator, f64)> {
    let value = value.trim();
    let (comparator, number) = if let Some(rest) = value.strip_prefix(">=").or_else(|| value.strip_prefix('>')) {
        (Comparator::Greater, rest)
    } else if let Some(rest) = value.strip_prefix("<=").or_else(|| value.strip_prefix('<')) {
        (Comparator::Less, rest)
    } else {
        (Comparator::Equal, value)
    };
    let number = number.trim();
    let plain = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+')
        && number.bytes().any(|b| b.is_ascii_digit());
    let n: f64 = number.parse().ok().filter(|_| plain)?;
    n.is_finite().then_some((comparator, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(code: &str, value: &str, units: Option<&str>, flags: &[&str]) -> ResultRow {
        ResultRow {
            test_code: code.into(),
            value: value.into(),
            units: units.map(str::to_string),
            flags: flags.iter().filter_map(|f| Flag::from_code(f)).collect(),
            status: Some(ResultStatus::Final),
            ..ResultRow::default()
        }
    }

    fn yumizen() -> Profile {
        Profile::builtin("horiba-yumizen-h500").unwrap()
    }

    #[test]
    fn the_critical_range_decides_first() {
        let p = yumizen();
        // From the Yumizen capture: HGB 4.6 g/dL flagged LL is below the critical low (7.0).
        let hgb = row("HGB", "4.6", Some("g/dL"), &["LL"]);
        assert_eq!(critical(&hgb, &p), Some(Critical { test_code: "HGB".into(), kind: CriticalKind::Low }));
        // HCT 13.8 % (LL) likewise.
        assert_eq!(critical(&row("HCT", "13.8", Some("%"), &["LL"]), &p).unwrap().kind, CriticalKind::Low);
        assert_eq!(critical(&row("WBC", "31.2", Some("10E3/uL"), &["H"]), &p).unwrap().kind, CriticalKind::High);
        // Normal and merely low results are not critical.
        assert_eq!(critical(&row("WBC", "4.55", Some("10E3/uL"), &["N"]), &p), None);
        assert_eq!(critical(&row("PLT", "139", Some("10E3/uL"), &["L"]), &p), None);
    }

    #[test]
    fn instrument_flags_count_where_the_profile_has_no_range() {
        let p = yumizen();
        // From the capture: RBC 1.74 LL and RDW-CV 28.8 HH; neither has a critical range.
        assert_eq!(critical(&row("RBC", "1.74", Some("10E6/uL"), &["LL"]), &p).unwrap().kind, CriticalKind::FlagLL);
        assert_eq!(critical(&row("RDW-CV", "28.8", Some("%"), &["HH"]), &p).unwrap().kind, CriticalKind::FlagHH);
        assert_eq!(critical(&row("P-LCC", "900", None, &[">"]), &p).unwrap().kind, CriticalKind::AboveScale);
        assert_eq!(critical(&row("P-LCC", "0", None, &["<"]), &p).unwrap().kind, CriticalKind::BelowScale);
    }

    #[test]
    fn comparators_count_only_when_every_allowed_value_is_beyond() {
        let p = yumizen();
        assert_eq!(critical(&row("PLT", ">1000", None, &[]), &p).unwrap().kind, CriticalKind::High);
        assert_eq!(critical(&row("PLT", "<20", None, &[]), &p).unwrap().kind, CriticalKind::Low);
        assert_eq!(critical(&row("PLT", "<=20", None, &[]), &p).unwrap().kind, CriticalKind::Low);
        // "<900" may be anything below 900: not critical high; ">5" not critical low.
        assert_eq!(critical(&row("PLT", "<900", None, &[]), &p), None);
        assert_eq!(critical(&row("PLT", ">5", None, &[]), &p), None);
    }

    #[test]
    fn other_units_are_never_compared_against_the_range() {
        let p = yumizen();
        // 4.6 g/L would be far below 7.0 g/dL, but the range is in g/dL: no judgement by range.
        assert_eq!(critical(&row("HGB", "46", Some("g/L"), &[]), &p), None);
        // The instrument's flags still count.
        assert_eq!(critical(&row("HGB", "46", Some("g/L"), &["LL"]), &p).unwrap().kind, CriticalKind::FlagLL);
        // Case-insensitive match of the instrument's spelling.
        assert_eq!(critical(&row("HGB", "4.6", Some("G/DL"), &[]), &p).unwrap().kind, CriticalKind::Low);
    }

    #[test]
    fn a_test_that_could_not_be_done_is_never_critical() {
        // From the Pentra capture: BAS# "-----" flagged HH with status X.
        let p = Profile::builtin("horiba-pentra-xlr").unwrap();
        let mut bas = row("BAS#", "-----", None, &["HH"]);
        bas.status = Some(ResultStatus::CannotBeDone);
        assert_eq!(critical(&bas, &p), None);
        bas.status = Some(ResultStatus::Warning);
        assert_eq!(critical(&bas, &p).unwrap().kind, CriticalKind::FlagHH);
    }

    #[test]
    fn unmapped_codes_and_text_values_rely_on_flags() {
        let p = yumizen();
        assert_eq!(critical(&row("NOPE", "1e9", None, &[]), &p), None);
        assert_eq!(critical(&row("WBC", "see comment", None, &[]), &p), None);
        assert_eq!(critical(&row("WBC", "1e9", None, &[]), &p), None, "exponents are not instrument numbers");
    }

    #[test]
    fn the_message_names_the_test_and_never_the_value() {
        let c = critical(&row("HGB", "4.6", Some("g/dL"), &[]), &yumizen()).unwrap();
        let text = c.to_string();
        assert_eq!(text, "critical result for HGB (below the critical low)");
        assert!(!text.contains("4.6"));
    }

    #[test]
    fn values_parse() {
        assert_eq!(parse_value(" 4.55 "), Some((Comparator::Equal, 4.55)));
        assert_eq!(parse_value("-2.0"), Some((Comparator::Equal, -2.0)));
        assert_eq!(parse_value(">=500"), Some((Comparator::Greater, 500.0)));
        assert_eq!(parse_value("< 0.5"), Some((Comparator::Less, 0.5)));
        for text in ["", "-----", "NOT DETECTED", "1e5", "inf", "NaN", "<", "4,55"] {
            assert_eq!(parse_value(text), None, "{text}");
        }
    }
}
