//! The control socket: how the CLI (`outpost status`, `queue`, `tail`, ...) talks to a running
//! daemon. A Unix socket (mode 0660 by default), one JSON request per connection, one JSON
//! answer (or, for `tail`, a stream of events, one JSON object per line).
//!
//! The control server observes; it owns no data. Changes (retry, reload) go through the
//! journal or the daemon like everything else.

pub mod client;
pub mod protocol;
mod server;

pub use server::{BindError, ControlContext, ReloadError, ReloadRequest, bind, serve, source_statuses, status};
