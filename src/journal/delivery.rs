//! Where one item's delivery to one destination stands: the `deliveries.state` column, each
//! delivery in `queue ls` / `queue show`, and their `--state` filter.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its turn, or for its next attempt.
    Pending,
    /// Handed to the destination, its answer not yet recorded (pending again after a restart).
    /// Only in rows from before schema 9, which stopped recording attempts as they start.
    InFlight,
    /// The destination (for the uplink: central) acknowledged it.
    Delivered,
    /// Given up on: kept as a dead letter until retried from the CLI.
    Failed,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 4] =
        [DeliveryState::Pending, DeliveryState::InFlight, DeliveryState::Delivered, DeliveryState::Failed];

    /// The name stored in the journal and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that widths in format strings apply.
        f.pad(self.as_str())
    }
}

impl ToSql for DeliveryState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for DeliveryState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        DeliveryState::parse(text).ok_or_else(|| FromSqlError::Other(format!("unknown delivery state {text:?}").into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_journals_and_the_clis() {
        for state in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
            assert_eq!(serde_json::from_value::<DeliveryState>(state.as_str().into()).unwrap(), state);
        }
        assert_eq!(DeliveryState::InFlight.as_str(), "in_flight");
        assert_eq!(DeliveryState::parse("in-flight"), None);
        assert_eq!(format!("[{:<10}]", DeliveryState::Failed), "[failed    ]");
    }

    #[test]
    fn an_unknown_state_in_the_journal_is_an_error_not_a_guess() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let read = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, DeliveryState>(0));
        assert_eq!(read("SELECT 'delivered'").unwrap(), DeliveryState::Delivered);
        assert!(read("SELECT 'lost'").is_err());
        let stored: String = conn.query_row("SELECT ?1", [DeliveryState::InFlight], |r| r.get(0)).unwrap();
        assert_eq!(stored, "in_flight");
    }
}
