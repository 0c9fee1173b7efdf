//! HL7 v2: reading messages (summary, field values), building ACKs, applying transforms.
//! Pure code: no IO.

mod charset;
mod path;

pub use charset::Charset;
pub use path::FieldPath;
mod transform;
pub use transform::Transform;
// TEMP until the hl7 branch lands
mod stub;
pub use stub::*;
