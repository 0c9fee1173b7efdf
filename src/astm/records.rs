//! E1394 (LIS02-A2) records, sans IO: delimiters, escape sequences, fields by position, and
//! what a message says (its [`Summary`], its [`Query`]s).
//!
//! A record is text ending with CR; fields are split by the field delimiter, repeats within a
//! field by the repeat delimiter, components within a repeat by the component delimiter. Each
//! message declares its delimiters in its H record: `H|\^&` is field `|`, repeat `\`, component
//! `^`, escape `&`; instruments use others (`H|@^\` GeneXpert, ``H|`^&`` Erba XL, `H|\!~`), and
//! some declare no escape character (`H|\^`).
//!
//! Fields are numbered as E1394 numbers them: field 1 is the record type (`R`), so `R.3` is the
//! universal test id and `H.2` the delimiter definition (read whole, never split). Components
//! are numbered from 1. Values are unescaped when read as text (`&F&`, `&S&`, `&R&`, `&E&` and
//! `&Xhh…&` with the message's escape character); other sequences stay as written.
//!
//! Nothing here panics on input; nothing here shows record content in `Debug` or errors.

use std::borrow::Cow;
use std::fmt;

use super::ctrl::{CR, LF, STX};
use super::split::{is_header, is_terminator};

/// What some bytes start with, told without quoting them (they may be patient data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// STX: E1381 frames that were not removed.
    Stx,
    /// Another control character (its code, which is no content).
    Control(u8),
    /// Anything else (not shown).
    Text,
}

impl Start {
    pub fn of(b: u8) -> Start {
        match b {
            STX => Start::Stx,
            b if b.is_ascii_control() => Start::Control(b),
            _ => Start::Text,
        }
    }
}

impl fmt::Display for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Start::Stx => f.write_str("STX (0x02: the E1381 framing was not removed)"),
            Start::Control(c) => write!(f, "the control character 0x{c:02X}"),
            Start::Text => f.write_str("other text (not shown: it may be patient data)"),
        }
    }
}

/// What is wrong with records, or with a value to put in one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the message has no records")]
    Empty,
    #[error(
        "the message does not start with an H (header) record: it starts with {start}. Is the instrument \
         sending ASTM E1394 (LIS2-A2) records?"
    )]
    NoHeader { start: Start },
    #[error(
        "the H record's delimiters are invalid: after H come the field delimiter and 2 or 3 more distinct \
         punctuation characters (repeat, component, escape), usually |\\^&"
    )]
    BadDelimiters,
    #[error("these bytes hold {count} messages (H records); split them into messages first")]
    SeveralMessages { count: usize },
    #[error("field path {path:?}: expected a record type, a field number and an optional component, like R.3.4")]
    BadPath { path: String },
    #[error("the {what} holds a control character, or a delimiter the message has no escape character for")]
    Unencodable { what: &'static str },
}

/// The four delimiters of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: u8,
    pub repeat: u8,
    pub component: u8,
    /// `None` when the header declares only three delimiters.
    pub escape: Option<u8>,
}

impl Delimiters {
    /// `|\^&`.
    pub const STANDARD: Delimiters = Delimiters { field: b'|', repeat: b'\\', component: b'^', escape: Some(b'&') };

    /// The delimiters an H record (without its CR) declares.
    pub fn from_header(record: &[u8]) -> Result<Delimiters, RecordError> {
        if !is_header(record) {
            return Err(match record.first() {
                None => RecordError::Empty,
                Some(&b) => RecordError::NoHeader { start: Start::of(b) },
            });
        }
        let field = record[1];
        let definition = record[2..].split(|&b| b == field).next().unwrap_or_default();
        let (repeat, component, escape) = match *definition {
            [r, c] => (r, c, None),
            [r, c, e] => (r, c, Some(e)),
            _ => return Err(RecordError::BadDelimiters),
        };
        let all = [Some(field), Some(repeat), Some(component), escape];
        let chars: Vec<u8> = all.iter().flatten().copied().collect();
        let distinct = chars.iter().enumerate().all(|(i, c)| !chars[..i].contains(c));
        if !distinct || !chars.iter().all(|b| b.is_ascii_punctuation()) {
            return Err(RecordError::BadDelimiters);
        }
        Ok(Delimiters { field, repeat, component, escape })
    }

    /// The H record's first two fields: `H`, the field delimiter and the others.
    pub fn header_prefix(&self) -> Vec<u8> {
        let mut out = vec![b'H', self.field, self.repeat, self.component];
        out.extend(self.escape);
        out
    }
}

/// A value with its escape sequences decoded: `&F&` `&S&` `&R&` `&E&` (the message's own
/// delimiters and escape character) and `&Xhh…&` (bytes in hex). Other sequences (`&H&`, `&N&`,
/// local ones) are left as written, escape characters included.
pub fn unescape<'a>(value: &'a [u8], d: &Delimiters) -> Cow<'a, [u8]> {
    let Some(e) = d.escape else { return Cow::Borrowed(value) };
    if !value.contains(&e) {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == e
            && let Some(len) = value[i + 1..].iter().position(|&b| b == e)
        {
            let sequence = &value[i + 1..i + 1 + len];
            let decoded = match sequence {
                b"F" => Some(vec![d.field]),
                b"S" => Some(vec![d.component]),
                b"R" => Some(vec![d.repeat]),
                b"E" => Some(vec![e]),
                [b'X', hex @ ..] => decode_hex(hex),
                _ => None,
            };
            match decoded {
                Some(bytes) => out.extend_from_slice(&bytes),
                None => out.extend_from_slice(&value[i..i + len + 2]),
            }
            i += len + 2;
            continue;
        }
        out.push(value[i]);
        i += 1;
    }
    Cow::Owned(out)
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()).collect()
}

/// A value made safe to put in a field: delimiters become escape sequences. Fails on control
/// characters (a record cannot carry CR or LF in a value; a frame cannot carry the others) and
/// on delimiters when the message declares no escape character.
pub fn escape<'a>(value: &'a [u8], d: &Delimiters, what: &'static str) -> Result<Cow<'a, [u8]>, RecordError> {
    if value.iter().any(|b| b.is_ascii_control()) {
        return Err(RecordError::Unencodable { what });
    }
    let special = |b: &u8| *b == d.field || *b == d.repeat || *b == d.component || Some(*b) == d.escape;
    if !value.iter().any(special) {
        return Ok(Cow::Borrowed(value));
    }
    let Some(e) = d.escape else { return Err(RecordError::Unencodable { what }) };
    let mut out = Vec::with_capacity(value.len() + 8);
    for &b in value {
        let letter = match b {
            b if b == d.field => b'F',
            b if b == d.component => b'S',
            b if b == d.repeat => b'R',
            b if b == e => b'E',
            b => {
                out.push(b);
                continue;
            }
        };
        out.extend_from_slice(&[e, letter, e]);
    }
    Ok(Cow::Owned(out))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One record (its text without the CR), read with its message's delimiters.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    text: &'a [u8],
    d: Delimiters,
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("type", &text(self.type_id()))
            .field("fields", &self.field_count())
            .finish_non_exhaustive()
    }
}

impl<'a> Record<'a> {
    pub fn new(text: &'a [u8], d: Delimiters) -> Record<'a> {
        Record { text, d }
    }

    pub fn text(&self) -> &'a [u8] {
        self.text
    }

    pub fn delimiters(&self) -> Delimiters {
        self.d
    }

    /// Field 1, as sent (`H`, `R`; a sender may add a sequence digit, as some LIS do).
    pub fn type_id(&self) -> &'a [u8] {
        self.field(1).unwrap_or_default()
    }

    /// The record type when field 1 is one uppercase letter: `b'H'`, `b'P'`, `b'O'`, `b'R'`,
    /// `b'C'`, `b'Q'`, `b'M'`, `b'S'`, `b'L'`.
    pub fn kind(&self) -> Option<u8> {
        match self.type_id() {
            [c] if c.is_ascii_uppercase() => Some(*c),
            _ => None,
        }
    }

    pub fn field_count(&self) -> usize {
        self.text.split(|&b| b == self.d.field).count()
    }

    /// Field `n` (1-based: field 1 is the record type), raw.
    pub fn field(&self, n: usize) -> Option<&'a [u8]> {
        self.text.split(|&b| b == self.d.field).nth(n.checked_sub(1)?)
    }

    /// The repeats of field `n`, raw. `H.2` (the delimiter definition) is one repeat.
    pub fn repeats(&self, n: usize) -> Vec<&'a [u8]> {
        let Some(field) = self.field(n) else { return Vec::new() };
        if n == 2 && is_header(self.text) {
            return vec![field];
        }
        field.split(|&b| b == self.d.repeat).collect()
    }

    /// Component `c` (1-based) of the first repeat of field `n`, raw.
    pub fn component(&self, n: usize, c: usize) -> Option<&'a [u8]> {
        let first = *self.repeats(n).first()?;
        self.components(first).nth(c.checked_sub(1)?)
    }

    /// The components of one repeat, raw.
    pub fn components(&self, repeat: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let component = self.d.component;
        repeat.split(move |&b| b == component)
    }

    /// Component `c` of field `n`'s first repeat as text, unescaped; empty when absent.
    pub fn value(&self, n: usize, c: usize) -> String {
        self.component(n, c).map(|v| text(&unescape(v, &self.d))).unwrap_or_default()
    }

    /// Field `n` whole as text (all repeats and components, delimiters as sent), unescaped.
    pub fn field_text(&self, n: usize) -> String {
        self.field(n).map(|v| text(&unescape(v, &self.d))).unwrap_or_default()
    }

    /// A repeat's components unescaped, joined by `^`, trailing empty ones dropped: how ids
    /// are shown whatever the message's own component delimiter.
    fn joined(&self, repeat: &[u8]) -> String {
        let mut parts: Vec<String> =
            repeat.split(|&b| b == self.d.component).map(|c| text(&unescape(c, &self.d))).collect();
        while parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
        parts.join("^")
    }

    /// A universal test id's code: component 4 (the manufacturer's local code), else the first
    /// non-empty component.
    pub fn test_code(&self, repeat: &'a [u8]) -> Option<String> {
        let parts: Vec<&[u8]> = self.components(repeat).collect();
        let code = parts.get(3).filter(|c| !c.is_empty()).or_else(|| parts.iter().find(|c| !c.is_empty()))?;
        Some(text(&unescape(code, &self.d)))
    }
}

/// A field (and component) by position, as `R.3.4` or `H.5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    pub record: String,
    pub field: usize,
    pub component: Option<usize>,
}

impl std::str::FromStr for FieldPath {
    type Err = RecordError;

    fn from_str(s: &str) -> Result<FieldPath, RecordError> {
        let bad = || RecordError::BadPath { path: s.to_string() };
        let mut parts = s.split('.');
        let record = parts.next().filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()));
        let number = |p: Option<&str>| p.and_then(|n| n.parse::<usize>().ok()).filter(|&n| n > 0);
        let record = record.ok_or_else(bad)?.to_string();
        let field = number(parts.next()).ok_or_else(bad)?;
        let component = match parts.next() {
            None => None,
            c => Some(number(c).ok_or_else(bad)?),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(FieldPath { record, field, component })
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.record, self.field)?;
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        Ok(())
    }
}

/// One H…L message. Borrows its bytes; `Debug` shows record types only.
#[derive(Clone)]
pub struct Message<'a> {
    records: Vec<Record<'a>>,
    delimiters: Delimiters,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let types: Vec<String> = self.records.iter().map(|r| text(r.type_id())).collect();
        f.debug_struct("Message").field("records", &types).finish_non_exhaustive()
    }
}

/// What sort of message it is, from its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageKind {
    /// It has R records.
    Results,
    /// It has Q records: the instrument asks for orders.
    Query,
    /// O records without results: orders (sent to an instrument, or echoed by one).
    Orders,
    /// Only H, P, C, M, S, L…
    #[default]
    Other,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Results => "results",
            MessageKind::Query => "query",
            MessageKind::Orders => "orders",
            MessageKind::Other => "other",
        }
    }
}

/// What logs, the journal's summary and central may know of a message: ids, codes and counts,
/// never patient names or result values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub kind: MessageKind,
    /// H.12 is `Q` (quality control), or an O record's action code (O.12) is `Q`.
    pub qc: bool,
    /// H.5, the sender (instrument name, serial, version…), components joined by `^`.
    pub instrument: String,
    /// H.12 (`P` production, `Q` QC, `T` training, `D` debugging).
    pub processing_id: String,
    /// H.13.
    pub version: String,
    /// Specimen ids, in order, once each: O.3 (else O.4) component 1, and the ids a query asks
    /// about (see [`Query::specimen_ids`]).
    pub sample_ids: Vec<String>,
    /// Test codes, in order, once each: of the results (R.3), else of the orders (O.5), else of
    /// the queries (Q.5). A code is a universal test id's component 4, else its first non-empty
    /// component.
    pub tests: Vec<String>,
    /// R records.
    pub results: usize,
    pub records: usize,
    /// Ends with an L record.
    pub complete: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", if self.qc { "QC " } else { "" }, self.kind.as_str())?;
        if !self.instrument.is_empty() {
            write!(f, " from {:?}", self.instrument)?;
        }
        write!(f, ": {} record(s), {} result(s)", self.records, self.results)?;
        if !self.sample_ids.is_empty() {
            write!(f, ", samples {}", self.sample_ids.join(","))?;
        }
        if !self.tests.is_empty() {
            write!(f, ", tests {}", self.tests.join(","))?;
        }
        if !self.complete {
            f.write_str(" (incomplete: no L record)")?;
        }
        Ok(())
    }
}

/// An instrument's request for orders (a Q record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Q.3, starting range id: component 2 (the specimen id) of each repeat; a repeat without
    /// it is taken whole (Erba XL sends ``^id1`id2`id3``, later ids as bare repeats).
    pub specimen_ids: Vec<String>,
    /// Q.5 test codes (`ALL` for all).
    pub tests: Vec<String>,
    /// Q.13, request information status: `O` orders, `A` cancel the last request, `F` final
    /// results…
    pub status: String,
}

impl Query {
    /// Q.13 is `A`: the instrument withdraws its last request (no reply expected).
    pub fn is_cancel(&self) -> bool {
        self.status == "A"
    }
}

impl<'a> Message<'a> {
    /// Reads one message: records end at CR (or LF, or CR LF); empty records are skipped; the
    /// first must be an H record, and there must be no other.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, RecordError> {
        let mut lines = bytes.split(|&b| b == CR || b == LF).filter(|l| !l.is_empty());
        let first = lines.next().ok_or(RecordError::Empty)?;
        let delimiters = Delimiters::from_header(first)?;
        let mut records = vec![Record::new(first, delimiters)];
        records.extend(lines.map(|l| Record::new(l, delimiters)));
        let headers = records.iter().filter(|r| is_header(r.text)).count();
        if headers > 1 {
            return Err(RecordError::SeveralMessages { count: headers });
        }
        Ok(Message { records, delimiters })
    }

    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    pub fn records(&self) -> &[Record<'a>] {
        &self.records
    }

    pub fn header(&self) -> Record<'a> {
        self.records[0]
    }

    /// The records of one type (`b'R'`).
    pub fn of_kind(&self, kind: u8) -> impl Iterator<Item = &Record<'a>> {
        self.records.iter().filter(move |r| r.kind() == Some(kind))
    }

    /// Ends with an L record.
    pub fn is_complete(&self) -> bool {
        self.records.last().is_some_and(|r| is_terminator(r.text))
    }

    /// The non-empty values at `path` in every record of its type and every repeat, unescaped:
    /// `R.3.4` gives each result's test code, `H.5` the sender.
    pub fn values(&self, path: &FieldPath) -> Vec<String> {
        self.values_per_record(path).into_iter().flatten().collect()
    }

    /// [`Message::values`], one list per record of the path's type (an empty list for a record
    /// without a value): which R record holds what, for rules that look at one result at a time.
    pub fn values_per_record(&self, path: &FieldPath) -> Vec<Vec<String>> {
        self.records
            .iter()
            .filter(|r| r.type_id() == path.record.as_bytes())
            .map(|r| self.record_values(r, path))
            .collect()
    }

    fn record_values(&self, r: &Record<'a>, path: &FieldPath) -> Vec<String> {
        let mut out = Vec::new();
        for repeat in r.repeats(path.field) {
            let value = match path.component {
                None => Some(repeat),
                Some(c) => c.checked_sub(1).and_then(|i| r.components(repeat).nth(i)),
            };
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                out.push(text(&unescape(v, &self.delimiters)));
            }
        }
        out
    }

    /// The instrument's queries (Q records).
    pub fn queries(&self) -> Vec<Query> {
        self.of_kind(b'Q')
            .map(|q| {
                let mut specimen_ids = Vec::new();
                for repeat in q.repeats(3) {
                    let parts: Vec<&[u8]> = q.components(repeat).collect();
                    let id = if parts.len() > 1 { parts[1] } else { parts[0] };
                    if !id.is_empty() {
                        specimen_ids.push(text(&unescape(id, &self.delimiters)));
                    }
                }
                let tests = q.repeats(5).into_iter().filter_map(|t| q.test_code(t)).collect();
                Query { specimen_ids, tests, status: q.value(13, 1) }
            })
            .collect()
    }

    pub fn summary(&self) -> Summary {
        let h = self.header();
        let has = |k| self.of_kind(k).next().is_some();
        let kind = if has(b'Q') {
            MessageKind::Query
        } else if has(b'R') {
            MessageKind::Results
        } else if has(b'O') {
            MessageKind::Orders
        } else {
            MessageKind::Other
        };
        let processing_id = h.value(12, 1);
        let qc = processing_id == "Q" || self.of_kind(b'O').any(|o| o.value(12, 1) == "Q");
        let mut sample_ids = Vec::new();
        for o in self.of_kind(b'O') {
            let id = Some(o.value(3, 1)).filter(|v| !v.is_empty()).unwrap_or_else(|| o.value(4, 1));
            push_once(&mut sample_ids, id);
        }
        for q in self.queries() {
            for id in q.specimen_ids {
                push_once(&mut sample_ids, id);
            }
        }
        let mut tests = Vec::new();
        for field in [(b'R', 3), (b'O', 5), (b'Q', 5)] {
            if tests.is_empty() {
                for r in self.of_kind(field.0) {
                    for repeat in r.repeats(field.1) {
                        push_once(&mut tests, r.test_code(repeat).unwrap_or_default());
                    }
                }
            }
        }
        Summary {
            kind,
            qc,
            instrument: h.field(5).map(|f| h.joined(f)).unwrap_or_default(),
            processing_id,
            version: h.value(13, 1),
            sample_ids,
            tests,
            results: self.of_kind(b'R').count(),
            records: self.records.len(),
            complete: self.is_complete(),
        }
    }
}

fn push_once(list: &mut Vec<String>, value: String) {
    if !value.is_empty() && !list.contains(&value) {
        list.push(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PENTRA: &[u8] = b"H|\\^&|||ABX|||||||P|E1394-97|20220727121551\r\
P|1||||Mohale^Rita||19771201|F\r\
O|1|S1234^00^00||^^^DIF|||202205270000|202205260000|||||||Standard||||||||||F\r\
R|1|^^^WBC^804-5^1|8.5|1||||W||NNE NNEMT||20220727121550\r\
C|1|I|Alarm_WBC^LMNE-^BASO+^LL^NL^LN^NO^SL1|I\r\
R|2|^^^LYM#^731-0^1|3.29|1||||W||NNE NNEMT||20220727121550\r\
L|1|N\r";

    #[test]
    fn delimiters_from_headers() {
        let d = |h: &[u8]| Delimiters::from_header(h);
        assert_eq!(d(b"H|\\^&|||x"), Ok(Delimiters::STANDARD));
        assert_eq!(d(b"H|`^&"), Ok(Delimiters { field: b'|', repeat: b'`', component: b'^', escape: Some(b'&') }));
        assert_eq!(
            d(b"H|@^\\|URM"),
            Ok(Delimiters { field: b'|', repeat: b'@', component: b'^', escape: Some(b'\\') })
        );
        assert_eq!(d(b"H|\\!~|||"), Ok(Delimiters { field: b'|', repeat: b'\\', component: b'!', escape: Some(b'~') }));
        assert_eq!(d(b"H|\\^|||"), Ok(Delimiters { field: b'|', repeat: b'\\', component: b'^', escape: None }));
        assert_eq!(d(b"H|\\^&~|"), Err(RecordError::BadDelimiters));
        assert_eq!(d(b"H|\\\\&|"), Err(RecordError::BadDelimiters));
        assert_eq!(d(b"H||||"), Err(RecordError::BadDelimiters));
        assert_eq!(d(b"H|ab&|"), Err(RecordError::BadDelimiters));
        assert_eq!(d(b"P|1"), Err(RecordError::NoHeader { start: Start::Text }));
        assert_eq!(d(b"\x021H|"), Err(RecordError::NoHeader { start: Start::Stx }));
        assert_eq!(Delimiters::STANDARD.header_prefix(), b"H|\\^&");
    }

    #[test]
    fn escapes_both_ways() {
        let d = Delimiters::STANDARD;
        assert_eq!(unescape(b"a&F&b&S&c&R&d&E&e", &d).as_ref(), b"a|b^c\\d&e");
        assert_eq!(unescape(b"&X0D0A&", &d).as_ref(), b"\r\n");
        // Unknown, malformed and unterminated sequences stay as written; what follows is read.
        assert_eq!(unescape(b"&H&bold&N&&F&", &d).as_ref(), b"&H&bold&N&|");
        assert_eq!(unescape(b"&X0&&Xzz&x&", &d).as_ref(), b"&X0&&Xzz&x&");
        assert!(matches!(unescape(b"plain", &d), Cow::Borrowed(_)));
        let genexpert = Delimiters::from_header(b"H|@^\\").unwrap();
        assert_eq!(unescape(b"a\\F\\b\\R\\c", &genexpert).as_ref(), b"a|b@c");
        for value in [b"a|b^c\\d&e".as_slice(), b"plain", b"&&"] {
            let escaped = escape(value, &d, "test").unwrap();
            assert!(!escaped.contains(&b'|') && !escaped.contains(&b'^') && !escaped.contains(&b'\\'));
            assert_eq!(unescape(&escaped, &d).as_ref(), value);
        }
        assert!(escape(b"a\rb", &d, "specimen id").is_err());
        let three = Delimiters { escape: None, ..d };
        assert_eq!(escape(b"a|b", &three, "x"), Err(RecordError::Unencodable { what: "x" }));
        assert_eq!(unescape(b"a&F&b", &three).as_ref(), b"a&F&b");
    }

    #[test]
    fn fields_by_position() {
        let m = Message::parse(PENTRA).unwrap();
        let h = m.header();
        assert_eq!(h.kind(), Some(b'H'));
        assert_eq!(h.field(2), Some(b"\\^&".as_slice()));
        assert_eq!(h.repeats(2), [b"\\^&".as_slice()]);
        assert_eq!(h.value(5, 1), "ABX");
        assert_eq!(h.value(12, 1), "P");
        let o = m.of_kind(b'O').next().unwrap();
        assert_eq!((o.value(3, 1), o.value(3, 2)), ("S1234".into(), "00".into()));
        let r = m.of_kind(b'R').next().unwrap();
        assert_eq!(r.component(3, 4), Some(b"WBC".as_slice()));
        assert_eq!(r.component(3, 9), None);
        assert_eq!(r.field(0), None);
        assert_eq!(r.field(99), None);
        assert_eq!(r.value(99, 1), "");
        assert_eq!(m.values(&"R.3.4".parse().unwrap()), ["WBC", "LYM#"]);
        assert_eq!(m.values(&"R.9".parse().unwrap()), ["W", "W"]);
        assert_eq!(m.values(&"Z.1".parse().unwrap()), Vec::<String>::new());
        assert!(m.is_complete());
        // Debug shows types and counts only.
        let debug = format!("{m:?} {:?}", m.records()[1]);
        assert!(!debug.contains("Mohale") && debug.contains("\"P\""), "{debug}");
    }

    #[test]
    fn field_paths() {
        assert_eq!("R.3.4".parse::<FieldPath>(), Ok(FieldPath { record: "R".into(), field: 3, component: Some(4) }));
        assert_eq!("H.5".parse::<FieldPath>().map(|p| p.to_string()), Ok("H.5".into()));
        for bad in ["", "R", "R.", "R.0", "R.3.0", "R.x", "R.3.4.5", ".3", "R-1.3"] {
            assert!(bad.parse::<FieldPath>().is_err(), "{bad}");
        }
    }

    #[test]
    fn summary_has_ids_codes_and_counts_only() {
        let s = Message::parse(PENTRA).unwrap().summary();
        assert_eq!(s.kind, MessageKind::Results);
        assert!(!s.qc);
        assert_eq!(s.instrument, "ABX");
        assert_eq!(s.sample_ids, ["S1234"]);
        assert_eq!(s.tests, ["WBC", "LYM#"]);
        assert_eq!((s.results, s.records, s.complete), (2, 7, true));
        let shown = format!("{s} {s:?}");
        for phi in ["Mohale", "Rita", "19771201", "8.5", "3.29", "Alarm"] {
            assert!(!shown.contains(phi), "{phi} in {shown}");
        }
    }

    #[test]
    fn qc_from_processing_id_or_action_code() {
        let m = b"H|\\^&|||X|||||||Q\rO|1|QC1||^^^GLU\rR|1|^^^GLU|5\rL|1|N\r";
        assert!(Message::parse(m).unwrap().summary().qc);
        let m = b"H|\\^&|||X|||||||P\rO|1|QC1||^^^GLU|||||||Q\rR|1|^^^GLU|5\rL|1|N\r";
        assert!(Message::parse(m).unwrap().summary().qc);
    }

    #[test]
    fn queries_and_cancel() {
        let vitros = b"H|\\^&|||3600796||||||||LIS2-A|20201121110643\rQ|1|^1068687||ALL||||||||O\rL|1|N\r";
        let m = Message::parse(vitros).unwrap();
        let q = &m.queries()[0];
        assert_eq!(
            (q.specimen_ids.as_slice(), q.tests.as_slice()),
            (["1068687".to_string()].as_slice(), ["ALL".to_string()].as_slice())
        );
        assert!(!q.is_cancel());
        let s = m.summary();
        assert_eq!((s.kind, s.sample_ids.as_slice()), (MessageKind::Query, ["1068687".to_string()].as_slice()));
        let erba = b"H|`^&\rQ|1|^1007149`1007152`1007151|||S|||||||A\rL|1|N\r";
        let q = &Message::parse(erba).unwrap().queries()[0];
        assert_eq!(q.specimen_ids, ["1007149", "1007152", "1007151"]);
        assert!(q.is_cancel());
    }

    #[test]
    fn parse_refuses_what_is_not_one_message() {
        assert_eq!(Message::parse(b"").unwrap_err(), RecordError::Empty);
        assert_eq!(Message::parse(b"\r\r").unwrap_err(), RecordError::Empty);
        assert_eq!(Message::parse(b"\x01x").unwrap_err(), RecordError::NoHeader { start: Start::Control(1) });
        assert_eq!(
            Message::parse(b"H|\\^&\rL|1\rH|\\^&\rL|1\r").unwrap_err(),
            RecordError::SeveralMessages { count: 2 }
        );
        // The error names no content.
        let e = Message::parse(b"Doe^John|1").unwrap_err().to_string();
        assert!(!e.contains("Doe"), "{e}");
        // Empty records and CR LF are fine; a message without L is read, and says so.
        let m = Message::parse(b"H|\\^&\r\n\r\nP|1\r\n").unwrap();
        assert_eq!(m.records().len(), 2);
        assert!(!m.is_complete());
    }

    #[test]
    fn never_panics_on_arbitrary_records() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..3000 {
            let len = (x % 60) as usize;
            let mut bytes = b"H|".to_vec();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(b"|\\^&`@!~\rHLRQOX0aF"[(x % 18) as usize]);
            }
            if let Ok(m) = Message::parse(&bytes) {
                let _ = m.summary();
                let _ = m.queries();
                for r in m.records() {
                    for n in 0..6 {
                        let _ = r.value(n, n);
                        let _ = r.field_text(n);
                    }
                }
            }
        }
    }
}
