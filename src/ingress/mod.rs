//! Ingress adapters: they own sockets (and later serial ports and modems), turn bytes into
//! items, hand them to [`crate::intake::Intake`], and answer the sender. One module per kind.

pub mod mllp;
