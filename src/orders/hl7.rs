//! Orders out of an EHR's HL7 v2 order message (ORM^O01, OML^O21), by the 2.5.1 segment
//! definitions. Pure.
//!
//! A message holds order groups: an ORC, then its OBR (the test ordered) with, in OML^O21, a
//! TQ1 (timing and priority) and the SPM (the specimen). A group starts at each ORC; an OBR
//! following another in one group starts a group of its own under the same ORC (senders that
//! give one ORC for several tests). Per group:
//!
//! | what | where |
//! |---|---|
//! | control | ORC-1 (`NW`, `XO`, `CA`...; no ORC: `NW`) |
//! | specimen id | the configured paths, first non-empty (default `SPM-2.1`, `OBR-3.1`, `OBR-2.1`) |
//! | placer / filler order number | ORC-2.1 / ORC-3.1, else OBR-2.1 / OBR-3.1 |
//! | test | OBR-4: code ^ text ^ system |
//! | priority | TQ1-9.1, else ORC-7.6, else OBR-27.6: `S` stat, anything else routine |
//! | specimen type | SPM-4.1, else OBR-15.1 |
//! | patient | PID-3.1, PID-5.1 / PID-5.2, PID-7 (date), PID-8 |
//!
//! A path with a component reads its first subcomponent (`SPM-2.1` is an EIP's placer id,
//! whose entity id is `SPM-2.1.1`). Groups for one specimen with one control make one
//! [`Change`] with several tests.

use super::{Change, Control, Patient, Test};
use crate::hl7::{Charset, FieldPath, Message};

/// What one message gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    pub changes: Vec<Change>,
    /// Groups without a specimen id (or a control code that changes nothing an instrument
    /// sees is not counted: it is no order to cache).
    pub unreadable: usize,
}

/// Whether `body` is an ORM^O01 or OML^O21 message, from MSH-9 alone (no parse: intake asks
/// this of every HL7 item from an order source).
pub fn is_order_message(body: &[u8]) -> bool {
    let start = body.iter().position(|b| !b" \t\r\n".contains(b)).unwrap_or(body.len());
    let body = &body[start..];
    if !body.starts_with(b"MSH") || body.len() < 8 {
        return false;
    }
    let field = body[3];
    let component = body[4];
    let line = body.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    let Some(msh9) = line.split(|&b| b == field).nth(8) else { return false };
    let mut parts = msh9.split(|&b| b == component);
    let code = parts.next().unwrap_or_default();
    let trigger = parts.next().unwrap_or_default();
    matches!((code, trigger), (b"ORM", b"O01") | (b"OML", b"O21"))
}

/// Decodes and reads `body` when it is an order message; `None` when it is not one (or cannot
/// be read: intake stores it as it stores anything).
pub fn extract_bytes(body: &[u8], charset: Option<Charset>, specimen_paths: &[FieldPath]) -> Option<Extracted> {
    if !is_order_message(body) {
        return None;
    }
    let decoded = crate::hl7::decode(body, charset);
    let message = Message::parse(&decoded.text).ok()?;
    Some(extract(&message, specimen_paths))
}

/// The segments of one order group, by occurrence number (1-based, per segment id).
#[derive(Debug, Clone, Copy, Default)]
struct Group {
    orc: Option<usize>,
    obr: Option<usize>,
    tq1: Option<usize>,
    spm: Option<usize>,
}

/// The order changes in `message` (see the module docs).
pub fn extract(message: &Message<'_>, specimen_paths: &[FieldPath]) -> Extracted {
    let mut groups: Vec<Group> = Vec::new();
    let mut current: Option<Group> = None;
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for id in message.segment_ids() {
        let n = {
            let count = seen.entry(id).or_insert(0);
            *count += 1;
            *count
        };
        match id {
            "ORC" => {
                groups.extend(current.take());
                current = Some(Group { orc: Some(n), ..Group::default() });
            }
            "OBR" => match current.as_mut() {
                Some(g) if g.obr.is_none() => g.obr = Some(n),
                Some(g) => {
                    let orc = g.orc;
                    groups.push(*g);
                    current = Some(Group { orc, obr: Some(n), ..Group::default() });
                }
                None => current = Some(Group { obr: Some(n), ..Group::default() }),
            },
            "TQ1" => {
                if let Some(g) = current.as_mut().filter(|g| g.tq1.is_none()) {
                    g.tq1 = Some(n);
                }
            }
            "SPM" => {
                if let Some(g) = current.as_mut().filter(|g| g.spm.is_none()) {
                    g.spm = Some(n);
                }
            }
            _ => {}
        }
    }
    groups.extend(current);

    let read = Reader { message };
    let patient = Patient {
        id: read.at("PID", Some(1), 3, Some(1)),
        family: read.at("PID", Some(1), 5, Some(1)),
        given: read.at("PID", Some(1), 5, Some(2)),
        birth_date: read.at("PID", Some(1), 7, Some(1)).chars().take(8).collect(),
        sex: read.at("PID", Some(1), 8, Some(1)),
    };
    let mut out = Extracted::default();
    for g in groups.iter().filter(|g| g.obr.is_some() || g.orc.is_some()) {
        let Some(control) = Control::from_code(&read.at("ORC", g.orc, 1, Some(1))) else { continue };
        let specimen_id = specimen_paths.iter().map(|p| read.path(g, p)).find(|v| !v.trim().is_empty());
        let Some(specimen_id) = specimen_id.map(|s| s.trim().to_string()) else {
            out.unreadable += 1;
            continue;
        };
        let first = |a: String, b: String| if a.is_empty() { b } else { a };
        let placer = first(read.at("ORC", g.orc, 2, Some(1)), read.at("OBR", g.obr, 2, Some(1)));
        let filler = first(read.at("ORC", g.orc, 3, Some(1)), read.at("OBR", g.obr, 3, Some(1)));
        let code = read.at("OBR", g.obr, 4, Some(1));
        let test = (!code.is_empty()).then(|| Test {
            code,
            text: read.at("OBR", g.obr, 4, Some(2)),
            system: read.at("OBR", g.obr, 4, Some(3)),
            placer: placer.clone(),
            filler: filler.clone(),
        });
        let priority =
            [read.at("TQ1", g.tq1, 9, Some(1)), read.at("ORC", g.orc, 7, Some(6)), read.at("OBR", g.obr, 27, Some(6))]
                .into_iter()
                .find(|p| !p.is_empty())
                .unwrap_or_default();
        let priority = if priority.eq_ignore_ascii_case("S") { "S" } else { "R" }.to_string();
        let specimen_type = first(read.at("SPM", g.spm, 4, Some(1)), read.at("OBR", g.obr, 15, Some(1)));
        let same = |c: &Change| c.specimen_id == specimen_id && c.control == control;
        match out.changes.iter_mut().find(|c| same(c)) {
            Some(c) => {
                c.tests.extend(test);
                if c.priority != "S" {
                    c.priority = priority;
                }
                if c.specimen_type.is_empty() {
                    c.specimen_type = specimen_type;
                }
            }
            None => out.changes.push(Change {
                control,
                specimen_id,
                placer,
                filler,
                tests: test.into_iter().collect(),
                priority,
                patient: patient.clone(),
                specimen_type,
            }),
        }
    }
    out
}

struct Reader<'m, 'a> {
    message: &'m Message<'a>,
}

impl Reader<'_, '_> {
    /// The first value at `segment[occurrence]-field(1).component.1`; empty when the group has
    /// no such segment.
    fn at(&self, segment: &str, occurrence: Option<usize>, field: usize, component: Option<usize>) -> String {
        let Some(occurrence) = occurrence else { return String::new() };
        let path = FieldPath {
            segment: segment.to_string(),
            occurrence: Some(occurrence),
            field,
            repetition: Some(1),
            component,
            subcomponent: component.map(|_| 1),
        };
        self.message.values(&path).into_iter().next().unwrap_or_default()
    }

    /// A configured path: in the group's own segment for ORC, OBR, TQ1 and SPM; elsewhere the
    /// occurrence it names, or the first.
    fn path(&self, g: &Group, p: &FieldPath) -> String {
        let occurrence = match p.segment.as_str() {
            "ORC" => g.orc,
            "OBR" => g.obr,
            "TQ1" => g.tq1,
            "SPM" => g.spm,
            _ => Some(p.occurrence.unwrap_or(1)),
        };
        let Some(occurrence) = occurrence else { return String::new() };
        let path = FieldPath {
            occurrence: Some(occurrence),
            repetition: Some(p.repetition.unwrap_or(1)),
            subcomponent: p.subcomponent.or(p.component.map(|_| 1)),
            ..p.clone()
        };
        self.message.values(&path).into_iter().next().unwrap_or_default()
    }
}
