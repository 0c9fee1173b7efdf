//! A message's delimiters, and HL7 escape sequences (`\F\ \S\ \T\ \R\ \E\`, v2.7's `\P\`, and
//! `\Xhh..\`).
//!
//! Unescaping decodes the delimiter sequences and hex sequences that spell ASCII characters
//! (`\X0D\`); it leaves every other sequence (formatting such as `\.br\` or `\H\`, character-set
//! switches) as written, escape characters included, so nothing is silently dropped.

use std::borrow::Cow;

use super::Header;

/// The field separator and encoding characters of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
    /// The v2.7 truncation character (a fifth encoding character), if the message has one.
    pub truncation: Option<char>,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&', truncation: None }
    }
}

impl Delimiters {
    /// From MSH-1 and MSH-2 (`encoding` must already be validated: 4 or 5 characters).
    pub fn new(field: char, encoding: &str) -> Option<Delimiters> {
        let mut chars = encoding.chars();
        Some(Delimiters {
            field,
            component: chars.next()?,
            repetition: chars.next()?,
            escape: chars.next()?,
            subcomponent: chars.next()?,
            truncation: chars.next(),
        })
    }

    /// The header's delimiters; the defaults if the header does not carry usable ones.
    pub fn of(header: &Header) -> Delimiters {
        Delimiters::new(header.field_separator, &header.encoding_characters)
            .filter(|_| header.field_separator != '\0')
            .unwrap_or_default()
    }

    pub fn to_parser(self) -> hl7_parser::message::Separators {
        hl7_parser::message::Separators {
            field: self.field,
            component: self.component,
            subcomponent: self.subcomponent,
            repetition: self.repetition,
            escape: self.escape,
            lenient_newlines: false,
        }
    }

    /// MSH-2 as it should be written.
    pub fn encoding_characters(&self) -> String {
        let mut s: String = [self.component, self.repetition, self.escape, self.subcomponent].iter().collect();
        s.extend(self.truncation);
        s
    }

    pub fn escape(&self, text: &str) -> String {
        let e = self.escape;
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            let code = match c {
                _ if c == e => "E",
                _ if c == self.field => "F",
                _ if c == self.component => "S",
                _ if c == self.subcomponent => "T",
                _ if c == self.repetition => "R",
                _ if Some(c) == self.truncation => "P",
                '\r' => "X0D",
                '\n' => "X0A",
                _ => {
                    out.push(c);
                    continue;
                }
            };
            out.push(e);
            out.push_str(code);
            out.push(e);
        }
        out
    }

    pub fn unescape<'t>(&self, raw: &'t str) -> Cow<'t, str> {
        let e = self.escape;
        if !raw.contains(e) {
            return Cow::Borrowed(raw);
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(start) = rest.find(e) {
            out.push_str(&rest[..start]);
            let after = &rest[start + e.len_utf8()..];
            let Some(len) = after.find(e) else {
                // An escape character with no closing one is taken literally.
                out.push_str(&rest[start..]);
                return Cow::Owned(out);
            };
            let code = &after[..len];
            match self.decode_sequence(code) {
                Some(decoded) => out.push_str(&decoded),
                None => out.push_str(&rest[start..start + e.len_utf8() * 2 + len]),
            }
            rest = &after[len + e.len_utf8()..];
        }
        out.push_str(rest);
        Cow::Owned(out)
    }

    fn decode_sequence(&self, code: &str) -> Option<String> {
        let single = match code {
            "F" => Some(self.field),
            "S" => Some(self.component),
            "T" => Some(self.subcomponent),
            "R" => Some(self.repetition),
            "E" => Some(self.escape),
            "P" => self.truncation,
            _ => None,
        };
        if let Some(c) = single {
            return Some(c.to_string());
        }
        let hex = code.strip_prefix('X')?;
        if hex.is_empty() || hex.len() % 2 != 0 {
            return None;
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| {
                let byte = u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()?;
                byte.is_ascii().then_some(byte as char)
            })
            .collect()
    }
}

/// Escapes `text` for use as one HL7 value in a message with `header`'s delimiters (the
/// defaults `|^~\&` without a header). Line breaks become `\X0D\` / `\X0A\`.
pub fn escape(text: &str, header: Option<&Header>) -> String {
    header.map(Delimiters::of).unwrap_or_default().escape(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_unescapes_delimiters() {
        let d = Delimiters::default();
        let text = "a|b^c&d~e\\f\r\ng";
        let escaped = d.escape(text);
        assert_eq!(escaped, r"a\F\b\S\c\T\d\R\e\E\f\X0D\\X0A\g");
        assert_eq!(d.unescape(&escaped), text);
    }

    #[test]
    fn custom_delimiters() {
        let d = Delimiters::new('#', "$*!@%").unwrap();
        assert_eq!(d.escape("a#b$c!d%"), "a!F!b!S!c!E!d!P!");
        assert_eq!(d.unescape("a!F!b!S!c!E!d!P!"), "a#b$c!d%");
        assert_eq!(d.encoding_characters(), "$*!@%");
    }

    #[test]
    fn unknown_and_unterminated_sequences_stay_as_written() {
        let d = Delimiters::default();
        assert_eq!(d.unescape(r"line\.br\two \H\bold\N\"), r"line\.br\two \H\bold\N\");
        assert_eq!(d.unescape(r"C:\temp"), r"C:\temp");
        assert_eq!(d.unescape(r"\XE9\"), r"\XE9\");
        assert_eq!(d.unescape(r"\X414\"), r"\X414\");
        assert_eq!(d.unescape(r"\X4142\é\F\"), "ABé|");
    }

    #[test]
    fn escape_uses_the_header() {
        let header = Header { field_separator: '#', encoding_characters: "$*!@".into(), ..Header::default() };
        assert_eq!(escape("a#b", Some(&header)), "a!F!b");
        assert_eq!(escape("a|b", None), r"a\F\b");
        assert_eq!(escape("a|b", Some(&Header::default())), r"a\F\b");
    }
}
