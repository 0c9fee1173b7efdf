//! Walking the raw TOML document: tables and values with their places, and the [`Checker`] that
//! collects every problem found on the way.
//!
//! A table's keys are declared once, where they are read. [`Tbl`] remembers every key looked up
//! in it, and [`Tbl::finish`] reports the keys nobody looked up as unknown, listing the keys that
//! were looked up, in that order, as the table's keys. So a reader cannot accept a key it does not
//! read, nor read a key that a separate list forgot. A reader that returns without finishing its
//! table (an unknown kind, say) leaves that table's keys unchecked; that is how "there is no
//! telling which keys it would have" is said.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::LazyLock;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::error::{ConfigError, ConfigErrorKind, ConfigErrors};

/// Stands in for a section the file leaves out, so that its reader runs the same way and every
/// key takes its default.
static EMPTY: LazyLock<DeTable<'static>> = LazyLock::new(DeTable::new);

/// Collects errors; knows the text so it can turn byte offsets into lines and columns.
pub(super) struct Checker<'t> {
    pub(super) text: &'t str,
    pub(super) errors: Vec<ConfigError>,
}

impl<'t> Checker<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        Checker { text, errors: Vec::new() }
    }

    /// A checker for the same text whose reports nobody reads: for running a reader only to see
    /// which keys it looks up.
    pub(super) fn scratch(&self) -> Checker<'t> {
        Checker::new(self.text)
    }

    pub(super) fn report(&mut self, kind: ConfigErrorKind, span: &Range<usize>, key: &str, message: String) {
        let (line, column) = self.line_col(span.start);
        self.errors.push(ConfigError { kind, line, column, span: Some(span.clone()), key: key.to_string(), message });
    }

    pub(super) fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// The text of a value as written, for messages.
    pub(super) fn snippet(&self, span: &Range<usize>) -> String {
        self.text.get(span.clone()).map(|s| s.trim().to_string()).unwrap_or_default()
    }

    /// Sorted by place; the sort is stable, so problems at one place keep the order they were
    /// found in.
    pub(super) fn into_errors(mut self, origin: &str) -> ConfigErrors {
        self.errors.sort_by_key(|e| (e.line, e.column));
        ConfigErrors { origin: origin.to_string(), errors: self.errors }
    }
}

/// A value with its place: byte span and key path.
pub(super) struct Val<'a, 'i> {
    pub(super) value: &'a DeValue<'i>,
    pub(super) span: Range<usize>,
    pub(super) path: String,
}

impl Val<'_, '_> {
    /// Reports this value as unusable, with its place.
    pub(super) fn invalid(&self, ck: &mut Checker, message: String) {
        ck.report(ConfigErrorKind::InvalidValue, &self.span, &self.path, message);
    }

    pub(super) fn wrong_type(&self, ck: &mut Checker, expected: &str, hint: &str) {
        let found = match self.value {
            DeValue::String(s) => format!("the string {s:?}"),
            DeValue::Integer(i) => format!("the number {i}"),
            DeValue::Float(f) => format!("the number {f}"),
            DeValue::Boolean(b) => format!("{b}"),
            DeValue::Datetime(d) => format!("the date/time {d}"),
            DeValue::Array(_) => "a list".to_string(),
            DeValue::Table(_) => "a table".to_string(),
        };
        ck.report(
            ConfigErrorKind::WrongType,
            &self.span,
            &self.path,
            format!("expected {expected}, found {found}{hint}"),
        );
    }
}

/// What a lookup found: nothing, something unusable (already reported), or a value.
pub(super) enum Got<T> {
    Absent,
    Invalid,
    Valid(T),
}

/// Keys that a sibling form of a table has (another kind, another sort of transform), so that
/// finding one here can say where it belongs instead of calling it unknown.
pub(super) struct Elsewhere {
    /// Completes "only applies to ...": `kind = "file" destinations`.
    pub(super) owner: String,
    pub(super) keys: Vec<String>,
}

/// A table with its place, how to name it in messages (`[node]`, `[[source]]`, `retry`), and the
/// keys looked up in it so far.
pub(super) struct Tbl<'a, 'i> {
    table: &'a DeTable<'i>,
    pub(super) span: Range<usize>,
    pub(super) path: String,
    label: String,
    /// In the order first looked up: the order messages list them in.
    read: RefCell<Vec<String>>,
}

type Entry<'a, 'i> = (&'a Spanned<DeString<'i>>, &'a Spanned<DeValue<'i>>);

impl<'a, 'i> Tbl<'a, 'i> {
    pub(super) fn new(table: &'a DeTable<'i>, span: Range<usize>, path: String, label: &str) -> Self {
        Tbl { table, span, path, label: label.to_string(), read: RefCell::new(Vec::new()) }
    }

    /// Entries in file order (the map itself may be sorted by key).
    pub(super) fn entries(&self) -> Vec<Entry<'a, 'i>> {
        let mut entries: Vec<Entry<'a, 'i>> = self.table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        entries
    }

    fn note_read(&self, key: &str) {
        let mut read = self.read.borrow_mut();
        if !read.iter().any(|k| k == key) {
            read.push(key.to_string());
        }
    }

    /// Looks `key` up; from now on it is one of this table's keys.
    pub(super) fn val(&self, key: &str) -> Option<Val<'a, 'i>> {
        self.note_read(key);
        self.table.get(key).map(|v| Val { value: v.get_ref(), span: v.span(), path: join_key(&self.path, key) })
    }

    /// Whether `key` is present, without making it one of this table's keys: for telling which
    /// form a table has before reading it as that form.
    pub(super) fn has(&self, key: &str) -> bool {
        self.table.get(key).is_some()
    }

    pub(super) fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.table.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(k, _)| k.span())
    }

    /// The keys looked up so far, in order.
    pub(super) fn keys_read(&self) -> Vec<String> {
        self.read.borrow().clone()
    }

    /// Reports every key that was not looked up. `elsewhere` names keys that belong to a sibling
    /// form (another kind), so the message can say so instead of "unknown".
    pub(super) fn finish(&self, ck: &mut Checker, elsewhere: &[Elsewhere]) {
        let allowed = self.read.borrow();
        for (k, _) in self.entries() {
            let key: &str = k.get_ref();
            if allowed.iter().any(|a| a == key) {
                continue;
            }
            let valid = allowed.join(", ");
            let message = if let Some(other) = elsewhere.iter().find(|e| e.keys.iter().any(|k| k == key)) {
                format!(
                    "{key:?} only applies to {}; remove it here. The keys of {} are: {valid}",
                    other.owner, self.label
                )
            } else if let Some(near) = closest(key, allowed.iter().map(String::as_str)) {
                format!("unknown key {key:?}; did you mean {near:?}? The keys of {} are: {valid}", self.label)
            } else {
                format!("unknown key {key:?}; remove it or fix its spelling. The keys of {} are: {valid}", self.label)
            };
            ck.report(ConfigErrorKind::UnknownKey, &k.span(), &join_key(&self.path, key), message);
        }
    }

    pub(super) fn missing(&self, ck: &mut Checker, key: &str, example: &str) {
        let example = if example.is_empty() { String::new() } else { format!(", e.g. {example}") };
        ck.report(
            ConfigErrorKind::MissingKey,
            &self.span,
            &join_key(&self.path, key),
            format!("{} is missing the required key {key:?}; add it{example}", self.label),
        );
    }

    pub(super) fn get<T>(
        &self,
        ck: &mut Checker,
        key: &str,
        read: impl FnOnce(&mut Checker, &Val<'a, 'i>) -> Option<T>,
    ) -> Got<T> {
        match self.val(key) {
            None => Got::Absent,
            Some(v) => match read(ck, &v) {
                Some(t) => Got::Valid(t),
                None => Got::Invalid,
            },
        }
    }

    /// An optional key: its value, or `default` when absent; `None` when invalid (reported).
    pub(super) fn opt<T>(
        &self,
        ck: &mut Checker,
        key: &str,
        default: T,
        read: impl FnOnce(&mut Checker, &Val<'a, 'i>) -> Option<T>,
    ) -> Option<T> {
        match self.get(ck, key, read) {
            Got::Absent => Some(default),
            Got::Invalid => None,
            Got::Valid(t) => Some(t),
        }
    }

    /// A required key: its value; `None` when absent or invalid (both reported).
    pub(super) fn req<T>(
        &self,
        ck: &mut Checker,
        key: &str,
        example: &str,
        read: impl FnOnce(&mut Checker, &Val<'a, 'i>) -> Option<T>,
    ) -> Option<T> {
        match self.get(ck, key, read) {
            Got::Absent => {
                self.missing(ck, key, example);
                None
            }
            Got::Invalid => None,
            Got::Valid(t) => Some(t),
        }
    }

    /// A sub-table.
    pub(super) fn table(&self, ck: &mut Checker, key: &str, label: &str) -> Got<Tbl<'a, 'i>> {
        let Some(v) = self.val(key) else {
            return Got::Absent;
        };
        match v.value {
            DeValue::Table(table) => Got::Valid(Tbl::new(table, v.span, v.path, label)),
            DeValue::Array(_) if label.starts_with('[') => {
                v.wrong_type(ck, &format!("a single {label} section"), &format!("; write {label} once, not [{label}]"));
                Got::Invalid
            }
            _ => {
                v.wrong_type(ck, &format!("a table ({label})"), "");
                Got::Invalid
            }
        }
    }

    /// An optional section: the table, or an empty one (so that defaults apply) when absent;
    /// `None` when it is not a table (reported).
    pub(super) fn section(&self, ck: &mut Checker, key: &str, label: &str) -> Option<Tbl<'a, 'i>> {
        match self.table(ck, key, label) {
            Got::Valid(t) => Some(t),
            Got::Invalid => None,
            Got::Absent => Some(Tbl::new(&EMPTY, self.span.clone(), join_key(&self.path, key), label)),
        }
    }

    /// The `[[key]]` blocks, each as a table with path `key[i]`.
    pub(super) fn blocks(&self, ck: &mut Checker, key: &str, label: &str) -> Vec<Tbl<'a, 'i>> {
        let Some(v) = self.val(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = v.value else {
            if let DeValue::Table(table) = v.value {
                v.wrong_type(
                    ck,
                    &format!("a list of {label} blocks"),
                    &format!("; write {label} (double brackets) for each {key}, not [{key}]"),
                );
                // Check it as the one block it was meant to be, so that its other problems are
                // found now and routes naming it are not reported as naming nothing.
                return vec![Tbl::new(table, v.span, format!("{}[0]", v.path), label)];
            }
            v.wrong_type(ck, &format!("a list of {label} blocks"), &format!("; write one {label} block per {key}"));
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", v.path);
            match item.get_ref() {
                DeValue::Table(table) => out.push(Tbl::new(table, item.span(), path, label)),
                other => Val { value: other, span: item.span(), path }.wrong_type(ck, &format!("a {label} table"), ""),
            }
        }
        out
    }
}

/// The keys `read` looks up, found by running it on an empty table and discarding what it
/// reports: how one kind's messages name the keys of the other kinds without a second list.
pub(super) fn keys_read_by(ck: &Checker, read: impl FnOnce(&mut Checker, &Tbl<'_, '_>)) -> Vec<String> {
    let t = Tbl::new(&EMPTY, 0..0, String::new(), "");
    read(&mut ck.scratch(), &t);
    t.keys_read()
}

/// `path.key`, quoting keys that are not bare TOML keys (`when."MSH-9.1"`).
pub(super) fn join_key(path: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare { key.to_string() } else { format!("{key:?}") };
    if path.is_empty() { key } else { format!("{path}.{key}") }
}

pub(super) use crate::suggest::closest;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::{count_in, string};

    /// Reads `text` as the table `[[source]]` (path `source[0]`) with `read`, finishes it with
    /// `elsewhere`, and returns what was reported as `key: message`.
    fn walk(text: &str, elsewhere: &[Elsewhere], read: impl FnOnce(&mut Checker, &Tbl<'_, '_>)) -> Vec<String> {
        let doc = DeTable::parse(text).unwrap();
        let mut ck = Checker::new(text);
        let t = Tbl::new(doc.get_ref(), 0..0, "source[0]".to_string(), "[[source]]");
        read(&mut ck, &t);
        t.finish(&mut ck, elsewhere);
        ck.errors.iter().map(|e| format!("{}: {}", e.key, e.message)).collect()
    }

    fn listen_and_connections(ck: &mut Checker, t: &Tbl<'_, '_>) {
        t.req(ck, "listen", "", string);
        t.opt(ck, "max_connections", 64, count_in(1, 65_535));
    }

    #[test]
    fn a_key_read_is_accepted_and_one_not_read_is_unknown() {
        let got = walk("listen = \"0.0.0.0:2575\"\nmax_conections = 5\n", &[], listen_and_connections);
        assert_eq!(
            got,
            ["source[0].max_conections: unknown key \"max_conections\"; did you mean \"max_connections\"? \
                 The keys of [[source]] are: listen, max_connections"]
        );
        // Present or not, a key looked up is one of the table's keys.
        assert_eq!(walk("listen = \"0.0.0.0:2575\"\n", &[], listen_and_connections), Vec::<String>::new());
    }

    #[test]
    fn keys_are_listed_in_the_order_first_read() {
        let got = walk("colour = 1\nlisten = \"x\"\n", &[], |ck, t| {
            t.opt(ck, "max_connections", 64, count_in(1, 65_535));
            t.req(ck, "listen", "", string);
            t.val("max_connections");
        });
        assert_eq!(
            got,
            ["source[0].colour: unknown key \"colour\"; remove it or fix its spelling. The keys of \
                 [[source]] are: max_connections, listen"]
        );
    }

    #[test]
    fn looking_at_a_key_without_reading_it_does_not_accept_it() {
        let got = walk("listen = \"x\"\nset = 1\n", &[], |ck, t| {
            assert!(t.has("set") && !t.has("copy"));
            t.req(ck, "listen", "", string);
        });
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("source[0].set: unknown key \"set\""), "{got:?}");
    }

    #[test]
    fn a_key_of_another_form_says_where_it_belongs() {
        let other = keys_read_by(&Checker::new(""), |ck, t| {
            t.req(ck, "dir", "", string);
        });
        assert_eq!(other, ["dir"]);
        let elsewhere = [Elsewhere { owner: "kind = \"directory\" sources".to_string(), keys: other }];
        let got = walk("listen = \"x\"\ndir = \"in\"\n", &elsewhere, listen_and_connections);
        assert_eq!(
            got,
            ["source[0].dir: \"dir\" only applies to kind = \"directory\" sources; remove it here. \
                 The keys of [[source]] are: listen, max_connections"]
        );
    }

    #[test]
    fn keys_read_by_keeps_no_reports() {
        let ck = Checker::new("");
        let keys = keys_read_by(&ck, listen_and_connections);
        assert_eq!(keys, ["listen", "max_connections"]);
        assert!(ck.errors.is_empty());
    }
}
