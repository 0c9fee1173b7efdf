//! The order cache's logic, with no IO: what an EHR's order message asks for ([`hl7`]), how a
//! change applies to the order already cached for a specimen ([`merge`]), and how a cached
//! order becomes an instrument's O record (its tests in the instrument's own codes,
//! [`instrument_tests`], [`to_astm`]).
//!
//! The cache itself lives in the journal (`journal/orders.rs`, schema v7): intake stores what
//! an order message from a source in `[orders] from` changes before the sender's ACK goes back,
//! and the ASTM adapter reads it to answer an instrument's query (Q record) and to push orders
//! to instruments that take unsolicited downloads.
//!
//! Promises: no IO, no tokio, no clock (times come in as arguments). `Debug` of these types
//! shows ids and codes, never the patient (a specimen id is an id, as in every log line of
//! outpost; names, birth dates and sex are PHI and are left out).

pub mod hl7;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::instrument::{Profile, TestId};

/// What intake needs of the config to fill the cache (swapped whole by a reload).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// The HL7 sources whose ORM^O01 and OML^O21 messages fill the cache (`[orders] from`).
    pub from: Vec<String>,
    /// Where an order's specimen id is: the first non-empty of these (`[orders] specimen_id`).
    pub specimen_id: Vec<crate::hl7::FieldPath>,
    /// The lab links that take unsolicited downloads: each new, changed or cancelled order
    /// becomes a pending download for each.
    pub download_to: Vec<String>,
}

impl Settings {
    pub fn from_config(config: &crate::config::Config) -> Settings {
        Settings {
            from: config.orders.from.clone(),
            specimen_id: config.orders.specimen_id.clone(),
            download_to: config.order_download_sources(),
        }
    }

    /// Whether items from `source` may hold orders.
    pub fn takes(&self, source: &str) -> bool {
        self.from.iter().any(|s| s == source)
    }
}

/// `SPM-2.1` (OML^O21's specimen), `OBR-3.1` (the filler's number), `OBR-2.1` (the placer's).
pub fn default_specimen_paths() -> Vec<crate::hl7::FieldPath> {
    ["SPM-2.1", "OBR-3.1", "OBR-2.1"].iter().filter_map(|p| p.parse().ok()).collect()
}

/// What the order control code (ORC-1) asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// `NW` (or no ORC-1): new order.
    New,
    /// `XO`, `RP`, `SN`, `RO`...: the order changed or replaced.
    Change,
    /// `CA`, `OC`, `DC`, `CR`, `OD`, `DR`: cancelled or discontinued.
    Cancel,
}

impl Control {
    /// The action an ORC-1 code asks for; `None` for codes that change nothing the instrument
    /// sees (status changes, holds, acknowledgements).
    pub fn from_code(code: &str) -> Option<Control> {
        match code.trim().to_ascii_uppercase().as_str() {
            "" | "NW" => Some(Control::New),
            "XO" | "XX" | "RP" | "RU" | "SN" | "RO" | "NA" => Some(Control::Change),
            "CA" | "OC" | "DC" | "CR" | "OD" | "DR" | "DF" => Some(Control::Cancel),
            _ => None,
        }
    }
}

/// One test ordered (an OBR's universal service id), with the order numbers of its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Test {
    /// OBR-4.1: a LOINC or local code.
    pub code: String,
    /// OBR-4.2.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// OBR-4.3: `LN`, or a local system.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub system: String,
    /// ORC-2.1, else OBR-2.1.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub placer: String,
    /// ORC-3.1, else OBR-3.1.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filler: String,
}

impl Test {
    /// The same test as `other`: the same placer order number when both have one, else the
    /// same code.
    fn same(&self, other: &Test) -> bool {
        if !self.placer.is_empty() && !other.placer.is_empty() {
            self.placer == other.placer
        } else {
            self.code == other.code
        }
    }
}

/// Who the specimen is from, for the P record. PHI: never logged, not in `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Patient {
    /// PID-3.1.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// PID-5.1 (family name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub family: String,
    /// PID-5.2 (given name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub given: String,
    /// PID-7, `YYYYMMDD`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub birth_date: String,
    /// PID-8: `F`, `M`, `U`...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sex: String,
}

impl fmt::Debug for Patient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Patient(..)")
    }
}

impl Patient {
    fn is_empty(&self) -> bool {
        *self == Patient::default()
    }
}

/// What one order message asks for one specimen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub control: Control,
    pub specimen_id: String,
    /// The first group's order numbers.
    pub placer: String,
    pub filler: String,
    /// Several OBRs for one specimen: several tests. Empty for a cancellation that names none
    /// (the whole order).
    pub tests: Vec<Test>,
    /// `S` stat or `R` routine (ASTM O.6).
    pub priority: String,
    pub patient: Patient,
    /// SPM-4.1, else OBR-15.1.
    pub specimen_type: String,
}

/// Whether a cached order still stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Active,
    Cancelled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> State {
        match s {
            "cancelled" => State::Cancelled,
            _ => State::Active,
        }
    }
}

/// An order as cached for one specimen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub specimen_id: String,
    pub placer: String,
    pub filler: String,
    pub state: State,
    pub priority: String,
    pub specimen_type: String,
    /// What is ordered; for a cancelled order, what was ordered when it was cancelled (an
    /// instrument it was sent to is told to cancel those).
    pub tests: Vec<Test>,
    pub patient: Patient,
    /// The journal item (the HL7 message) it last changed with.
    pub item_id: String,
    /// Unix ms of that change.
    pub received_at: i64,
}

impl Order {
    /// What the results' ORU^R01 says of the order they answer: its numbers, and OBR-4 when
    /// the order is for one test.
    pub fn order_ref(&self) -> crate::instrument::OrderRef {
        let first_test = self.tests.first();
        let placer =
            Some(self.placer.clone()).filter(|p| !p.is_empty()).or_else(|| first_test.map(|t| t.placer.clone()));
        let filler =
            Some(self.filler.clone()).filter(|f| !f.is_empty()).or_else(|| first_test.map(|t| t.filler.clone()));
        crate::instrument::OrderRef {
            placer_order_number: placer.filter(|p| !p.is_empty()),
            filler_order_number: filler.filter(|f| !f.is_empty()),
            universal_service_id: match self.tests.as_slice() {
                [one] => Some(crate::instrument::Coded {
                    code: one.code.clone(),
                    text: one.text.clone(),
                    system: one.system.clone(),
                }),
                _ => None,
            },
        }
    }

    /// The patient as the order names them, for results whose instrument knew nothing of the
    /// patient (most analyzers send an empty P record and rely on the specimen id).
    pub fn result_patient(&self) -> crate::instrument::Patient {
        let p = &self.patient;
        crate::instrument::Patient {
            ids: Some(p.id.clone()).filter(|i| !i.is_empty()).into_iter().collect(),
            name: (!(p.family.is_empty() && p.given.is_empty())).then(|| crate::instrument::PersonName {
                family: p.family.clone(),
                given: p.given.clone(),
                middle: String::new(),
            }),
            birth_date: Some(p.birth_date.clone()).filter(|b| !b.is_empty()),
            sex: crate::instrument::Sex::from_code(&p.sex),
        }
    }

    /// The same order, disregarding which item and when.
    fn same_content(&self, other: &Order) -> bool {
        Order { item_id: String::new(), received_at: 0, ..self.clone() }
            == Order { item_id: String::new(), received_at: 0, ..other.clone() }
    }
}

/// What a change did to a specimen's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// Nothing (an EHR's retransmission, a cancellation of what is not cached).
    Unchanged,
    /// New or changed, active: instruments that take downloads get it (again).
    Active(Order),
    /// Cancelled now: instruments it was sent to are told to cancel it.
    Cancelled(Order),
    /// Some tests cancelled, others still ordered.
    Reduced(Order),
}

/// Applies `change` to the order cached for its specimen (if any): pure, so the journal's
/// writer calls it inside its transaction.
///
/// - New or changed: tests are added, a test with the same placer number (else the same code)
///   replaced; the patient, priority and specimen type take the change's values when it has
///   them. A cancelled order ordered again is active again with the new tests only.
/// - Cancelled: the tests it names (by placer number, else code; all when it names none) go;
///   when none is left the order is cancelled, keeping its tests.
pub fn merge(existing: Option<&Order>, change: &Change, item_id: &str, now: i64) -> Merged {
    let fresh = |tests: Vec<Test>| Order {
        specimen_id: change.specimen_id.clone(),
        placer: change.placer.clone(),
        filler: change.filler.clone(),
        state: State::Active,
        priority: change.priority.clone(),
        specimen_type: change.specimen_type.clone(),
        tests,
        patient: change.patient.clone(),
        item_id: item_id.to_string(),
        received_at: now,
    };
    let result = match (change.control, existing) {
        (Control::Cancel, None) => return Merged::Unchanged,
        (Control::Cancel, Some(old)) if old.state == State::Cancelled => return Merged::Unchanged,
        (Control::Cancel, Some(old)) => {
            let left: Vec<Test> = if change.tests.is_empty() {
                Vec::new()
            } else {
                old.tests.iter().filter(|t| !change.tests.iter().any(|c| c.same(t))).cloned().collect()
            };
            if left.len() == old.tests.len() {
                return Merged::Unchanged;
            }
            let mut order = old.clone();
            order.item_id = item_id.to_string();
            order.received_at = now;
            if left.is_empty() {
                order.state = State::Cancelled;
                return Merged::Cancelled(order);
            }
            order.tests = left;
            return Merged::Reduced(order);
        }
        (_, None) => fresh(change.tests.clone()),
        (_, Some(old)) if old.state == State::Cancelled => fresh(change.tests.clone()),
        (_, Some(old)) => {
            let mut order = old.clone();
            for t in &change.tests {
                match order.tests.iter_mut().find(|o| o.same(t)) {
                    Some(o) => *o = t.clone(),
                    None => order.tests.push(t.clone()),
                }
            }
            let take = |mine: &mut String, theirs: &str| {
                if !theirs.is_empty() {
                    *mine = theirs.to_string();
                }
            };
            take(&mut order.placer, &change.placer);
            take(&mut order.filler, &change.filler);
            take(&mut order.priority, &change.priority);
            take(&mut order.specimen_type, &change.specimen_type);
            if !change.patient.is_empty() {
                order.patient = change.patient.clone();
            }
            order.item_id = item_id.to_string();
            order.received_at = now;
            order
        }
    };
    match existing {
        Some(old) if old.same_content(&result) => Merged::Unchanged,
        _ => Merged::Active(result),
    }
}

/// An order's tests in an instrument's own codes. With a profile, each code is looked up in
/// its test map backwards (a LOINC code, or a local code in its system, to the instrument's
/// code; a code that is itself one of the instrument's codes is taken as it is); a test the
/// instrument does not do goes to the second list. Without a profile, the codes as ordered.
pub fn instrument_tests(tests: &[Test], profile: Option<&Profile>) -> (Vec<String>, Vec<String>) {
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for t in tests {
        let code = match profile {
            None => Some(t.code.clone()),
            Some(p) => reverse(p, t),
        };
        match code {
            Some(c) if !c.is_empty() => {
                if !known.contains(&c) {
                    known.push(c)
                }
            }
            _ => unknown.push(t.code.clone()),
        }
    }
    (known, unknown)
}

fn reverse(profile: &Profile, test: &Test) -> Option<String> {
    let system = test.system.trim();
    let by_id = profile.tests.iter().find(|(_, def)| match &def.id {
        TestId::Loinc(code) => code == &test.code && (system.is_empty() || system.eq_ignore_ascii_case("LN")),
        TestId::Local { code, system: theirs } => {
            code == &test.code && (system.is_empty() || system.eq_ignore_ascii_case(theirs))
        }
    });
    match by_id {
        Some((instrument_code, _)) => Some(instrument_code.clone()),
        None => profile.tests.contains_key(&test.code).then(|| test.code.clone()),
    }
}

/// A cached order as the O record an instrument takes (`action`: `N` new, `C` cancel), its
/// tests in the instrument's codes (see [`instrument_tests`]). The codes it does not know are
/// returned beside it, for the log.
pub fn to_astm(order: &Order, profile: Option<&Profile>, action: &str) -> (crate::astm::Order, Vec<String>) {
    let (tests, unknown) = instrument_tests(&order.tests, profile);
    let mut o = crate::astm::Order::new(order.specimen_id.clone(), tests);
    o.patient_id = order.patient.id.clone();
    o.patient_name = [order.patient.family.clone(), order.patient.given.clone()].into_iter().collect::<Vec<_>>();
    if o.patient_name.iter().all(String::is_empty) {
        o.patient_name.clear();
    }
    o.birth_date = order.patient.birth_date.clone();
    o.sex = order.patient.sex.clone();
    o.priority = if order.priority == "S" { "S".into() } else { "R".into() };
    o.action_code = action.to_string();
    o.specimen_descriptor = order.specimen_type.clone();
    (o, unknown)
}

#[cfg(test)]
mod tests;
