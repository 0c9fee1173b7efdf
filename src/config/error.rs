//! The errors a config check reports: each problem with its place in the file, and the whole
//! list for one file. These are the only config types other modules see besides the typed config.

use std::fmt;
use std::ops::Range;

/// What sort of problem a [`ConfigError`] is; lets tests and tools tell errors apart without
/// matching on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigErrorKind {
    /// The text is not valid TOML.
    Syntax,
    /// A key that this table does not have (often a misspelling).
    UnknownKey,
    /// A required key or section is absent, or a list that must not be empty is.
    MissingKey,
    /// A value of the wrong TOML type: a number where a string belongs, a table for a list, ...
    WrongType,
    /// A value of the right type that does not mean anything: a bad duration, size, address,
    /// charset, field path, regex, glob, name or path.
    InvalidValue,
    /// A number, size or duration outside its allowed range, or two values that contradict.
    OutOfRange,
    /// A name given twice: two sources, destinations or routes with one name, or one
    /// destination or source listed twice in a route.
    Duplicate,
    /// A route naming a source or destination that the file does not define.
    UnknownName,
    /// A `kind` outpost does not know.
    UnknownKind,
    /// Anything else, such as a file that cannot be read.
    Other,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ConfigErrorKind,
    /// 1-based line of the offending key or value; 0 when the error has no place in the file
    /// (for example, the file could not be read).
    pub line: usize,
    /// 1-based column, counted in characters; 0 when `line` is 0.
    pub column: usize,
    /// Byte range in the text the error points at.
    pub span: Option<Range<usize>>,
    /// Where in the document: `node.site`, `source[1].listen`, `route[0].when."MSH-9.1"`.
    /// Indices count `[[source]]` (etc.) blocks from 0 in file order. Empty for syntax errors.
    pub key: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl ConfigError {
    fn write(&self, f: &mut fmt::Formatter<'_>, origin: Option<&str>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::with_capacity(4);
        if let Some(origin) = origin {
            parts.push(origin.to_string());
        }
        if self.line > 0 {
            parts.push(self.line.to_string());
            parts.push(self.column.to_string());
        }
        let place = parts.join(":");
        if !place.is_empty() {
            write!(f, "{place}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// `{line}:{col}: {key path}: {message}`; the place or key is left out when there is none.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, None)
    }
}

/// Every problem found in one config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file name used in messages.
    pub origin: String,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// One error with no place in the file, such as "cannot read config file".
    pub fn single(origin: &str, message: String) -> Self {
        ConfigErrors {
            origin: origin.to_string(),
            errors: vec![ConfigError {
                kind: ConfigErrorKind::Other,
                line: 0,
                column: 0,
                span: None,
                key: String::new(),
                message,
            }],
        }
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// Each error as one line, `{origin}:{line}:{col}: {key path}: {message}` (as `config
    /// check` prints them).
    pub fn messages(&self) -> Vec<String> {
        self.to_string().lines().map(str::to_string).collect()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// One error per line, each ending in a newline: `{origin}:{line}:{col}: {key path}: {message}`.
/// (The CLI prints it with `eprint!` and follows it with a count.)
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            e.write(f, Some(&self.origin))?;
            f.write_str("\n")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
