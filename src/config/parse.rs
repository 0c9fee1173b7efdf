//! Reads a TOML config into the typed [`Config`], collecting every error with its place.
//!
//! Two steps, as STYLE.md asks. The text is first parsed into a raw TOML document that keeps the
//! byte span of every key and value (`toml::de::DeTable`). The document is then walked by hand,
//! not through serde derive, so that one bad key never hides the next: every problem becomes a
//! [`ConfigError`](super::ConfigError) with its line, column and key path, and [`parse`] returns
//! them all, sorted by place. A TOML syntax error is the one exception: such a document cannot be
//! walked, so it is reported alone.
//!
//! This file holds the top level; each section is read in its own file beside it (`sections.rs`,
//! `uplink.rs`, `source/`, `destination/`, `route.rs`), over the walker in `walk.rs` and the value
//! readers in `values.rs`. A section's keys are the keys its reader reads (see `walk.rs`).
//!
//! Pure: no IO. Nothing is bound, opened or resolved (host names in `connect` are checked for
//! form only), so a config checks the same on a laptop as on the gateway.

use toml::de::DeTable;

use super::error::{ConfigErrorKind, ConfigErrors};
use super::values::{distinct, names};
use super::walk::{Checker, Got, Tbl};
use super::{
    Config, Destination, EscalationRule, Route, Source, default_state_dir, destination, orders, route, rule, sections,
    source, uplink,
};

/// Parses and validates a config text. `origin` names the file in error messages.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let mut ck = Checker::new(text);
            let span = e.span().unwrap_or(0..0);
            let what = e.message().replace('\n', " ");
            let message = if what.starts_with("duplicate key") {
                format!("not valid TOML: {} is set a second time in the same table; keep one", ck.snippet(&span))
            } else {
                format!(
                    "not valid TOML: {what}; fix the file at this place (strings need double \
                     quotes, sections are written [name] or [[name]], lists [a, b])"
                )
            };
            ck.report(ConfigErrorKind::Syntax, &span, "", message);
            return Err(ck.into_errors(origin));
        }
    };
    let mut ck = Checker::new(text);
    let root = Tbl::new(doc.get_ref(), 0..0, String::new(), "the top level of the file");
    let config = build(&mut ck, &root);
    if !ck.errors.is_empty() {
        return Err(ck.into_errors(origin));
    }
    config.ok_or_else(|| {
        ConfigErrors::single(
            origin,
            "the config was refused but no reason was recorded; this is a bug in outpost, \
             please report it with the config file"
                .to_string(),
        )
    })
}

/// Builds the typed config. Each reader reports what it finds wrong and returns `None` for a part
/// it could not build; `parse` only looks at the result when nothing was reported.
fn build(ck: &mut Checker, root: &Tbl<'_, '_>) -> Option<Config> {
    // Every top-level key is looked up before any section is read, so that the top level's
    // unknown keys are reported first: one on line 1, column 1 shares its place with a missing
    // [node] (which has no place of its own), and problems at one place keep their report order.
    let node_table = root.table(ck, "node", "[node]");
    let control_table = root.section(ck, "control", "[control]");
    let journal_table = root.section(ck, "journal", "[journal]");
    let routing_table = root.section(ck, "routing", "[routing]");
    let escalation_table = root.section(ck, "escalation", "[escalation]");
    let uplink_table = root.table(ck, "uplink", "[uplink]");
    let orders_table = root.section(ck, "orders", "[orders]");
    let source_tables = root.blocks(ck, "source", "[[source]]");
    let destination_tables = root.blocks(ck, "destination", "[[destination]]");
    let route_tables = root.blocks(ck, "route", "[[route]]");
    root.finish(ck, &[]);

    let node = match node_table {
        Got::Valid(t) => sections::node(ck, &t),
        Got::Invalid => None,
        Got::Absent => {
            ck.report(
                ConfigErrorKind::MissingKey,
                &(0..0),
                "node",
                "the [node] section is missing; add it with this gateway's site and id, e.g. \
                 [node] site = \"northfield\" id = \"gw-01\""
                    .to_string(),
            );
            None
        }
    };
    let state_dir = node.as_ref().map(|n| n.state_dir.clone()).unwrap_or_else(default_state_dir);
    let control = control_table.and_then(|t| sections::control(ck, &t, &state_dir));
    let journal = journal_table.and_then(|t| sections::journal(ck, &t, &state_dir));
    let routing = routing_table.and_then(|t| sections::routing(ck, &t));
    let (escalation, rule_tables) = match escalation_table {
        Some(t) => sections::escalation(ck, &t),
        None => (None, Vec::new()),
    };
    let has_uplink = !matches!(uplink_table, Got::Absent);
    let uplink = match uplink_table {
        Got::Valid(t) => uplink::uplink(ck, &t, node.as_ref(), &state_dir).map(Some),
        Got::Invalid => None,
        Got::Absent => Some(None),
    };

    // Names first, so that a route can be checked against every name the file gives, even those
    // of blocks that have other problems (which are reported on their own).
    let source_names = names(ck, &source_tables, "source", "ehr-feed");
    let destination_names = names(ck, &destination_tables, "destination", "lis");
    let route_names = names(ck, &route_tables, "route", "everything");
    let known_sources = distinct(&source_names);
    let known_destinations = distinct(&destination_names);

    let sources: Vec<Option<Source>> =
        source_tables.iter().zip(source_names).map(|(t, name)| source::source(ck, t, name, &state_dir)).collect();
    let order_cache = orders_table.as_ref().and_then(|t| {
        let mut o = orders::orders(ck, t, &known_sources)?;
        orders::resolve(ck, t, &mut o, &sources);
        Some(o)
    });
    let destinations: Vec<Option<Destination>> = destination_tables
        .iter()
        .zip(destination_names)
        .map(|(t, name)| destination::destination(ck, t, name, &state_dir))
        .collect();
    let routes: Vec<Option<Route>> = route_tables
        .iter()
        .zip(route_names)
        .map(|(t, name)| route::route(ck, t, name, &known_sources, &known_destinations))
        .collect();

    let rule_names = names(ck, &rule_tables, "escalation rule", "critical-result");
    let rules: Vec<Option<EscalationRule>> =
        rule_tables.iter().zip(rule_names).map(|(t, name)| rule::rule(ck, t, name, &known_sources)).collect();
    let escalation = escalation.map(|mut e| {
        e.rules = rules.into_iter().flatten().collect();
        e
    });

    destination::uplink_destinations(ck, &destination_tables, &destinations, has_uplink);
    route::transforms_fit_kinds(ck, &route_tables, &routes, &sources, &destinations);

    Some(Config {
        uplink: uplink?,
        orders: order_cache?,
        node: node?,
        control: control?,
        journal: journal?,
        routing: routing?,
        escalation: escalation?,
        sources: sources.into_iter().collect::<Option<_>>()?,
        destinations: destinations.into_iter().collect::<Option<_>>()?,
        routes: routes.into_iter().collect::<Option<_>>()?,
        source_text: ck.text.to_string(),
    })
}

#[cfg(test)]
mod tests;
