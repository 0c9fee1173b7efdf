//! Per-destination edits of an outgoing copy (set, copy or clear a field). The journal always
//! keeps the original bytes; transforms only shape what one destination receives.

use super::FieldPath;

#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// Writes `value` (raw HL7: it may contain component separators) at `path`.
    Set { path: FieldPath, value: String },
    /// Copies the raw value at `from` to `to`.
    Copy { from: FieldPath, to: FieldPath },
    /// Empties the value at `path`.
    Clear { path: FieldPath },
}
