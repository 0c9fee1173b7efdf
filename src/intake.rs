//! Intake: what every adapter does with an item it received, whatever its kind. Read it (the
//! payload kind's reader: charset, parse, summary), route it, journal it durably, announce it,
//! and tell the adapter how to answer the sender. Adapters own sockets, folders and framing;
//! this owns the rest.

use std::sync::Arc;

use crate::current::Current;
use crate::envelope::{Kind, NewEnvelope, Status, now_ms};
use crate::escalate::ActiveEscalations;
use crate::events::{Bus, Escalation, EscalationCode, EventKind, Severity};
use crate::hl7::{Charset, Header, Outcome};
use crate::journal::{Inserted, Journal, JournalError, TakenFile};
use crate::payload;
use crate::router::Router;
use crate::stats::{Stats, inc};

/// One item as an adapter received it.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub source: String,
    pub kind: Kind,
    /// Overrides the charset the item declares (a source setting).
    pub charset: Option<Charset>,
    /// The exact bytes received.
    pub body: Vec<u8>,
    /// What the adapter adds to the summary (`file` for an item taken from a folder). Names
    /// and ids only: never content.
    pub fields: Vec<(&'static str, String)>,
}

impl Arrival {
    pub fn new(source: &str, kind: Kind, charset: Option<Charset>, body: Vec<u8>) -> Arrival {
        Arrival { source: source.to_string(), kind, charset, body, fields: Vec::new() }
    }
}

/// What announcing an item needs once the journal has answered (its envelope went there).
struct Read {
    source: String,
    kind: Kind,
    status: Status,
    size: usize,
    summary: crate::envelope::Summary,
    routes: Vec<String>,
    destinations: Vec<String>,
    note: Option<String>,
    header: Option<Header>,
    /// The rules it was routed with (their escalation switches apply to it).
    rules: Arc<Rules>,
    /// The escalation rules it matched.
    hits: Vec<crate::escalate::rules::Hit>,
    /// Made by outpost from another item (a lab message's HL7 results), not received: not
    /// counted as received.
    derived: bool,
}

/// How the adapter should answer the sender.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The item's HL7 header, when it is HL7 and could be parsed (an HL7 ACK mirrors it).
    pub header: Option<Header>,
    pub outcome: Outcome,
    /// The journal id, when stored (or already stored, for a retransmission).
    pub id: Option<String>,
    /// Text for the sender when the outcome is not `Stored`.
    pub error: Option<String>,
}

/// What a reload replaces: the routes, and which problems escalate per item.
pub struct Rules {
    pub router: Router,
    pub escalate_unrouted: bool,
    pub escalate_rejected: bool,
    /// `[[escalation.rule]]`: escalations on what an item holds.
    pub escalation_rules: Vec<crate::config::EscalationRule>,
    /// The instrument profile of each lab link that has one, by source name: its items are
    /// read with it (test codes where it says, critical ranges).
    pub profiles: std::collections::HashMap<String, crate::instrument::Profile>,
    /// `[orders]`: which sources' order messages fill the order cache.
    pub orders: crate::orders::Settings,
}

pub struct Intake {
    journal: Journal,
    rules: Current<Rules>,
    bus: Bus,
    stats: Arc<Stats>,
    /// "Journal full" is raised once while items are refused, and cleared by the next item
    /// stored, rather than repeated for every refusal.
    escalations: ActiveEscalations,
    refusing: std::sync::atomic::AtomicBool,
    /// Bumped after orders were cached: lab links that take downloads look for pending ones.
    order_updates: tokio::sync::watch::Sender<u64>,
}

impl Rules {
    pub fn from_config(config: &crate::config::Config) -> Rules {
        Rules {
            router: Router::new(config),
            escalate_unrouted: config.escalation.on_unrouted,
            escalate_rejected: config.escalation.on_rejected,
            escalation_rules: config.escalation.rules.clone(),
            profiles: config
                .sources
                .iter()
                .filter_map(|s| s.kind.profile().map(|p| (s.name.clone(), p.clone())))
                .collect(),
            orders: crate::orders::Settings::from_config(config),
        }
    }
}

impl Intake {
    pub fn new(journal: Journal, rules: Rules, bus: Bus, stats: Arc<Stats>, escalations: ActiveEscalations) -> Intake {
        Intake {
            journal,
            rules: Current::new(rules),
            bus,
            stats,
            escalations,
            refusing: std::sync::atomic::AtomicBool::new(false),
            order_updates: tokio::sync::watch::Sender::new(0),
        }
    }

    fn journal_full(&self, reason: Option<String>) {
        self.refusing.store(reason.is_some(), std::sync::atomic::Ordering::Relaxed);
        self.escalations.set(&self.bus, EscalationCode::JournalFull, Severity::Critical, "journal", reason);
    }

    /// Swaps the routing rules (config reload). Items already journaled keep their decision.
    pub fn set_rules(&self, rules: Rules) {
        self.rules.set(rules);
    }

    /// Takes one item as received: reads it as its kind, routes, journals (returning after
    /// the commit), announces.
    pub async fn accept(&self, arrival: Arrival) -> Receipt {
        let orders = self.orders_in(&arrival);
        let (envelope, read) = self.read(arrival);
        let inserted = self.journal.insert(envelope).await;
        self.cache_orders(&read.source, orders, &inserted).await;
        self.announce(read, inserted)
    }

    /// Takes an item and the items made from it (a lab message and its results as HL7): all
    /// are committed in one transaction, linked in their summaries (`derived_from`, `derived`),
    /// or none is. The receipt is the first item's, which is what the sender is answered for; a
    /// retransmission of it stores nothing again.
    pub async fn accept_linked(&self, primary: Arrival, derived: Vec<Arrival>) -> Receipt {
        if derived.is_empty() {
            return self.accept(primary).await;
        }
        let (envelope, read) = self.read(primary);
        let (envelopes, reads): (Vec<NewEnvelope>, Vec<Read>) = derived
            .into_iter()
            .map(|a| {
                let (e, mut r) = self.read(a);
                r.derived = true;
                (e, r)
            })
            .unzip();
        match self.journal.insert_linked(envelope, envelopes).await {
            Ok(inserted) => {
                let mut inserted = inserted.into_iter();
                let Some(first) = inserted.next() else {
                    return self.announce(read, Err(JournalError::Closed));
                };
                let receipt = self.announce(read, Ok(first));
                for (r, i) in reads.into_iter().zip(inserted) {
                    self.announce(r, Ok(i));
                }
                receipt
            }
            Err(e) => self.announce(read, Err(e)),
        }
    }

    /// Takes every item of one file together: all are committed in one transaction with the
    /// file's record, or none is (a refusal, a crash), so a file read again after a crash is
    /// recognised by its record and never stored twice. Receipts are in the items' order.
    pub async fn accept_file(&self, arrivals: Vec<Arrival>, file: TakenFile) -> Result<Vec<Receipt>, JournalError> {
        let orders: Vec<_> = arrivals.iter().map(|a| self.orders_in(a)).collect();
        let (envelopes, reads): (Vec<NewEnvelope>, Vec<Read>) = arrivals.into_iter().map(|a| self.read(a)).unzip();
        match self.journal.insert_file(envelopes, file).await {
            Ok(inserted) => {
                for ((read, orders), i) in reads.iter().zip(orders).zip(&inserted) {
                    self.cache_orders(&read.source, orders, &Ok(i.clone())).await;
                }
                Ok(reads.into_iter().zip(inserted).map(|(r, i)| self.announce(r, Ok(i))).collect())
            }
            Err(e) => {
                // Announced once, as a refusal of the file's first item would be.
                if let Some(first) = reads.into_iter().next() {
                    self.announce(first, Err(e.copy()));
                }
                Err(e)
            }
        }
    }

    /// Reads an item as its kind and routes it: everything short of journaling. Returns the
    /// envelope to journal and what announcing it needs.
    fn read(&self, arrival: Arrival) -> (NewEnvelope, Read) {
        let Arrival { source, kind, charset, body, fields } = arrival;
        let rules = self.rules.get();
        let decoded = payload::decode_from(kind, &body, charset, rules.profiles.get(&source));
        let charset_name = decoded.charset().map(|c| c.name().to_string());
        let mut parsed = decoded.parse();
        if let Ok(item) = parsed.as_mut() {
            item.add_fields(&fields);
        }
        let mut hits = Vec::new();
        let (header, mut summary, status, decision, note) = match &parsed {
            Ok(item) => {
                if item.skipped_lines() > 0 {
                    tracing::info!(
                        source,
                        lines = item.skipped_lines(),
                        "item has lines the reader skipped (kept as received; routing cannot see them)"
                    );
                }
                let decision = rules.router.route(&source, item);
                hits = crate::escalate::rules::evaluate(&rules.escalation_rules, &source, item);
                let status = if decision.is_unrouted() { Status::Unrouted } else { Status::Accepted };
                (item.hl7_header(), item.summary(), status, decision, None)
            }
            Err(e) => {
                (None, payload::unreadable_summary(kind), Status::Rejected, Default::default(), Some(e.to_string()))
            }
        };
        for (name, value) in fields {
            summary.set(name, value);
        }
        drop(parsed);
        drop(decoded);
        let read = Read {
            source: source.clone(),
            kind,
            status,
            size: body.len(),
            summary: summary.clone(),
            routes: decision.routes.clone(),
            destinations: decision.destinations.clone(),
            note: note.clone(),
            header,
            rules,
            hits,
            derived: false,
        };
        let envelope = NewEnvelope {
            source,
            kind,
            received_at: now_ms(),
            status,
            body,
            summary,
            charset: charset_name,
            routes: decision.routes,
            destinations: decision.destinations,
            note,
        };
        (envelope, read)
    }

    /// Counts, logs and announces what became of an item, and says how to answer its sender.
    fn announce(&self, read: Read, inserted: Result<Inserted, JournalError>) -> Receipt {
        let Read { source, kind, status, size, summary, routes, destinations, note, header, rules, hits, derived } =
            read;
        let source = source.as_str();
        let stats = self.stats.source(source);
        if inserted.is_ok() && self.refusing.load(std::sync::atomic::Ordering::Relaxed) {
            self.journal_full(None);
        }
        match inserted {
            Ok(Inserted::Stored { id, .. }) => {
                // Per item, so at debug: a backlog of 100,000 would exceed journald's rate limit
                // and hide the warnings. The daemon logs a summary of counts instead.
                if derived {
                    tracing::debug!(event = "derived", source, item_id = %id, kind = kind.as_str(), item_type = %summary.item_type, size, status = status.as_str(), "made from a received item");
                } else {
                    inc(&stats.received);
                    tracing::debug!(event = "received", source, item_id = %id, kind = kind.as_str(), item_type = %summary.item_type, size, status = status.as_str(), "received");
                }
                self.bus.emit(EventKind::Received {
                    id: id.clone(),
                    source: source.to_string(),
                    kind: kind.as_str().into(),
                    message_type: summary.item_type.clone(),
                    control_id: summary.item_ref.clone(),
                    size,
                });
                match status {
                    Status::Accepted => self.bus.emit(EventKind::Routed { id: id.clone(), routes, destinations }),
                    Status::Unrouted => {
                        self.bus.emit(EventKind::Unrouted {
                            id: id.clone(),
                            source: source.to_string(),
                            message_type: summary.item_type.clone(),
                        });
                        if rules.escalate_unrouted {
                            self.escalate(EscalationCode::Unrouted, &id, format!(
                                "item {id} ({}) from {source} matched no route; it is kept (outpost queue ls --state unrouted)",
                                summary.item_type
                            ));
                        }
                    }
                    Status::Rejected => {
                        inc(&stats.rejected);
                        let reason = note.clone().unwrap_or_default();
                        self.bus.emit(EventKind::Rejected {
                            id: id.clone(),
                            source: source.to_string(),
                            reason: reason.clone(),
                        });
                        if rules.escalate_rejected {
                            self.escalate(EscalationCode::Rejected, &id, format!(
                                "item {id} from {source} is not a readable {} item ({reason}); it is kept (outpost queue show {id})", kind.label()
                            ));
                        }
                    }
                }
                for hit in &hits {
                    self.escalate_with(
                        hit.severity,
                        EscalationCode::Rule,
                        &id,
                        rule_message(hit, &id, source, &summary),
                    );
                }
                let (outcome, error) = match status {
                    Status::Rejected => (Outcome::Unparseable, note),
                    _ => (Outcome::Stored, None),
                };
                Receipt { header, outcome, id: Some(id), error }
            }
            Ok(Inserted::Duplicate { id, .. }) => {
                inc(&stats.duplicates);
                tracing::debug!(event = "duplicate", source, item_id = %id, "retransmission of a stored item: acknowledged again, not stored twice");
                self.bus.emit(EventKind::Duplicate {
                    id: id.clone(),
                    source: source.to_string(),
                    control_id: summary.item_ref.clone(),
                });
                Receipt { header, outcome: Outcome::Stored, id: Some(id), error: None }
            }
            Err(e) => {
                inc(&stats.refused);
                let reason = e.to_string();
                if e.is_capacity() {
                    // The journal_full escalation says it once; the summary counts refusals.
                    tracing::debug!(source, error = %reason, "cannot store a received item; the sender is told to resend later");
                } else {
                    tracing::error!(source, error = %reason, "cannot store a received item; the sender is told to resend later");
                }
                self.bus.emit(EventKind::Refused { source: source.to_string(), reason: reason.clone() });
                if e.is_capacity() {
                    self.journal_full(Some(reason.clone()));
                }
                let error = match e {
                    JournalError::Closed => "outpost is shutting down; resend later".to_string(),
                    other => other.to_string(),
                };
                Receipt { header, outcome: Outcome::CannotStore, id: None, error: Some(error) }
            }
        }
    }

    /// Routes unrouted items again with the current rules (after a tech fixed them): one item
    /// by id, or every unrouted item. Returns (routed now, still unrouted).
    pub async fn reroute(&self, id: Option<String>) -> Result<(usize, usize), JournalError> {
        let items = self.journal.read(move |r| r.unrouted(id.as_deref(), 100_000)).await?;
        let rules = self.rules.get();
        let mut decisions = Vec::new();
        let mut still = 0;
        for item in &items {
            let charset = item.charset.as_deref().and_then(Charset::from_label);
            let decoded = payload::decode_from(item.kind, &item.body, charset, rules.profiles.get(&item.source));
            let decision = match decoded.parse() {
                Ok(mut parsed) => {
                    let fields: Vec<(&str, String)> =
                        item.fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                    parsed.add_fields(&fields);
                    rules.router.route(&item.source, &parsed)
                }
                Err(_) => Default::default(),
            };
            if decision.is_unrouted() {
                still += 1;
                continue;
            }
            self.bus.emit(EventKind::Routed {
                id: item.id.clone(),
                routes: decision.routes.clone(),
                destinations: decision.destinations.clone(),
            });
            decisions.push(crate::journal::Rerouted {
                seq: item.seq,
                routes: decision.routes,
                destinations: decision.destinations,
            });
        }
        let routed = if decisions.is_empty() { 0 } else { self.journal.reroute(decisions).await? };
        tracing::info!(routed, still_unrouted = still, "unrouted items routed again with the current rules");
        Ok((routed, still))
    }

    /// The orders an item holds, when it is an ORM^O01 or OML^O21 from a source in
    /// `[orders] from` (read before the item goes to the journal, which takes its bytes).
    fn orders_in(&self, arrival: &Arrival) -> Option<crate::orders::hl7::Extracted> {
        let rules = self.rules.get();
        let settings = &rules.orders;
        if arrival.kind != Kind::Hl7v2 || !settings.takes(&arrival.source) {
            return None;
        }
        crate::orders::hl7::extract_bytes(&arrival.body, arrival.charset, &settings.specimen_id)
    }

    /// Caches what an order message changes once the message is stored (or recognised as
    /// stored), before its sender is answered: the EHR's ACK means the order is cached. Lab
    /// links that take downloads are woken. An order without a specimen id is counted and
    /// logged by item id; the item is stored and delivered like any other.
    async fn cache_orders(
        &self,
        source: &str,
        orders: Option<crate::orders::hl7::Extracted>,
        inserted: &Result<Inserted, JournalError>,
    ) {
        let (Some(orders), Ok(Inserted::Stored { id, .. } | Inserted::Duplicate { id, .. })) = (orders, inserted)
        else {
            return;
        };
        if orders.unreadable > 0 {
            self.stats
                .source(source)
                .orders_unreadable
                .fetch_add(orders.unreadable as u64, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(source, item_id = %id, groups = orders.unreadable, "order without a specimen id: not cached (the item is stored); check [orders] specimen_id");
        }
        if orders.changes.is_empty() {
            return;
        }
        let download_to = self.rules.get().orders.download_to.clone();
        let wake = !download_to.is_empty();
        match self.journal.upsert_orders(orders.changes, id.clone(), download_to).await {
            Ok(changed) => {
                tracing::debug!(source, item_id = %id, changed, "orders cached");
                if changed > 0 && wake {
                    self.order_updates.send_modify(|n| *n += 1);
                }
            }
            Err(e) => tracing::error!(source, item_id = %id, error = %e, "cannot cache the orders of a stored item"),
        }
    }

    /// Changes whenever orders were cached that lab links may have to download.
    pub fn order_updates(&self) -> tokio::sync::watch::Receiver<u64> {
        self.order_updates.subscribe()
    }

    /// The journal, for adapters that keep their own records in it (files taken from folders).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// A problem at a source that stops it taking some of its items for now (a file it cannot
    /// read or move): an event for ops each time it happens.
    pub fn source_problem(&self, source: &str, message: String) {
        self.escalate(EscalationCode::SourceProblem, source, message);
    }

    /// Reports an item the adapter could not take whole (too large): nothing is stored, the
    /// sender gets a negative ACK, and ops hear of it.
    pub fn refuse(&self, source: &str, reason: String) {
        inc(&self.stats.source(source).refused);
        self.bus.emit(EventKind::Refused { source: source.to_string(), reason: reason.clone() });
        self.escalate(EscalationCode::Refused, source, format!("{source}: {reason}"));
    }

    /// A per-item escalation (an event each time, not a state that is raised and cleared).
    fn escalate(&self, code: EscalationCode, subject: &str, message: String) {
        self.escalate_with(Severity::Warning, code, subject, message)
    }

    fn escalate_with(&self, severity: Severity, code: EscalationCode, subject: &str, message: String) {
        self.bus.emit(EventKind::Escalation(Escalation {
            code,
            severity,
            subject: subject.to_string(),
            message,
            active: true,
        }));
    }
}

/// What an escalation rule's event says: the rule, the item, its source, the instrument or
/// sending application, the tests that matched. Never a value or a patient.
fn rule_message(
    hit: &crate::escalate::rules::Hit,
    id: &str,
    source: &str,
    summary: &crate::envelope::Summary,
) -> String {
    let sender = summary
        .fields
        .get("instrument")
        .or_else(|| summary.fields.get("sending_app"))
        .filter(|s| !s.is_empty())
        .map(|s| format!(" from {s}"))
        .unwrap_or_default();
    let tests = if hit.tests.is_empty() { String::new() } else { format!(", tests {}", hit.tests.join(", ")) };
    format!(
        "rule {}: item {id} ({}{sender}) at source {source}{tests}; see outpost queue show {id}",
        hit.rule, summary.item_type
    )
}
