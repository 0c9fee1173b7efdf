//! `outpost rules test FILE`: what the daemon would do with an item, offline. The source (the
//! first one, or `--source`) says the item's kind: an HL7 message for MLLP and folder sources,
//! an ASTM capture or records for a lab link (each H…L message in it tested in turn). For each:
//! its summary, every route checked with why it does or does not match, the escalation rules it
//! would raise, and what each destination would receive.

use std::path::Path;

use crate::cli::{EX_DATAERR, split_messages};
use crate::config::Config;
use crate::envelope::Kind;
use crate::escalate::rules::{Hit, evaluate};
use crate::hl7;
use crate::router::Router;

pub fn run(config: &Config, file: &Path, bytes: &[u8], source: Option<&str>, json: bool) -> anyhow::Result<u8> {
    let source = match source {
        Some(s) if config.source(s).is_some() => s.to_string(),
        Some(s) => anyhow::bail!(
            "no source `{s}` in the config; sources are: {}",
            config.sources.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
        None => config.sources.first().map(|s| s.name.clone()).unwrap_or_default(),
    };
    let kind = config.source(&source).and_then(|s| s.kind.payloads().first().copied()).unwrap_or(Kind::Hl7v2);
    let items: Vec<Vec<u8>> = match kind {
        Kind::Hl7v2 => split_messages(bytes).into_iter().take(1).collect(),
        Kind::Astm => match astm_messages(bytes) {
            Ok(m) => m,
            Err(why) => {
                eprintln!("{}: {why}. A lab link would not store it.", file.display());
                return Ok(EX_DATAERR);
            }
        },
        // A fax is its whole file (a TIFF, as stored or as HylaFAX spools it).
        Kind::Fax => vec![bytes.to_vec()],
    };
    let mut reports = Vec::new();
    for body in &items {
        match one(config, &source, kind, body) {
            Ok(r) => {
                reports.push(r);
                // A lab link that turns results into HL7 journals those too, routed as HL7.
                for converted in derived(config, &source, body) {
                    match converted {
                        crate::ingress::astm::Converted::Hl7 { body, .. } => {
                            let mut r = one(config, &source, Kind::Hl7v2, &body).map_err(anyhow::Error::msg)?;
                            r.derived = true;
                            reports.push(r);
                        }
                        crate::ingress::astm::Converted::Qc { results } => println!(
                            "note     {results} QC result(s): kept as the instrument sent them, never converted to HL7"
                        ),
                        crate::ingress::astm::Converted::Failed(e) => {
                            println!("note     results not converted to HL7: {e}")
                        }
                    }
                }
            }
            Err(why) => {
                eprintln!(
                    "{}: not a readable {} item: {why}. The daemon would keep it as rejected{}.",
                    file.display(),
                    kind.label(),
                    if kind == Kind::Hl7v2 { " and answer AE" } else { "" }
                );
                return Ok(EX_DATAERR);
            }
        }
    }
    if json {
        let v: Vec<serde_json::Value> = reports.iter().map(|r| r.json(&source)).collect();
        // One item (HL7, or an ASTM capture of one message) reads as one object, as before.
        let out = if v.len() == 1 { v.into_iter().next().unwrap_or_default() } else { serde_json::Value::Array(v) };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    for (i, r) in reports.iter().enumerate() {
        if i > 0 {
            println!();
        }
        r.print(&source);
    }
    Ok(0)
}

/// What the source makes of a lab message's results (`hl7 = { ... }`), if it is a lab link.
fn derived(config: &Config, source: &str, body: &[u8]) -> Vec<crate::ingress::astm::Converted> {
    match config.source(source).map(|s| &s.kind) {
        Some(crate::config::SourceKind::Astm(a)) => {
            crate::ingress::astm::convert_results(a, body, &std::collections::HashMap::new())
        }
        _ => Vec::new(),
    }
}

/// The H…L messages of an ASTM capture (frames, as on the wire) or of records at rest.
fn astm_messages(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let text = match crate::astm::classify(bytes).map_err(|e| e.to_string())? {
        crate::astm::Shape::Framed { .. } => crate::astm::decode::walk(bytes).text,
        crate::astm::Shape::Records => bytes.to_vec(),
    };
    let messages: Vec<Vec<u8>> =
        crate::astm::split_messages(&text).into_iter().map(|s| text[s.range].to_vec()).collect();
    if messages.is_empty() {
        return Err("no ASTM message (H … L) in it".into());
    }
    Ok(messages)
}

struct Report {
    kind: Kind,
    summary: crate::envelope::Summary,
    charset: Option<&'static str>,
    mode: crate::config::RoutingMode,
    traces: Vec<crate::router::RouteTrace>,
    decision: crate::router::Decision,
    hits: Vec<Hit>,
    /// Per destination: the bytes it would receive (as text), or why it would fail.
    outputs: Vec<(String, usize, Result<String, String>)>,
    /// Made from the lab message before it (its results as HL7), not received.
    derived: bool,
}

fn one(config: &Config, source: &str, kind: Kind, body: &[u8]) -> Result<Report, String> {
    let charset = config.source(source).and_then(|s| s.kind.charset());
    let profile = config.source(source).and_then(|s| s.kind.profile());
    let decoded = crate::payload::decode_from(kind, body, charset, profile);
    let parsed = decoded.parse().map_err(|e| e.to_string())?;
    let router = Router::new(config);
    let (decision, traces) = router.route_traced(source, &parsed);
    let hits = evaluate(&config.escalation.rules, source, &parsed);
    let summary = parsed.summary();
    let mut outputs = Vec::new();
    for name in &decision.destinations {
        let Some(dest) = config.destination(name) else { continue };
        let out = match (kind, decoded.charset()) {
            (Kind::Hl7v2, Some(cs)) => hl7::apply_transforms(body, cs, &dest.transforms)
                .map(|bytes| hl7::decode(&bytes, Some(cs)).text.into_owned())
                .map_err(|e| e.to_string()),
            _ => Ok(String::from_utf8_lossy(body).into_owned()),
        };
        outputs.push((name.clone(), dest.transforms.len(), out));
    }
    Ok(Report {
        kind,
        summary,
        charset: decoded.charset().map(|c| c.name()),
        mode: router.mode(),
        traces,
        decision,
        hits,
        outputs,
        derived: false,
    })
}

impl Report {
    fn json(&self, source: &str) -> serde_json::Value {
        serde_json::json!({
            "source": source,
            "kind": self.kind.as_str(),
            "item_type": self.summary.item_type,
            "item_ref": self.summary.item_ref,
            "derived": self.derived,
            "summary": self.summary,
            "charset": self.charset,
            "routing_mode": format!("{:?}", self.mode),
            "routes": self.traces,
            "destinations": self.decision.destinations,
            "unrouted": self.decision.is_unrouted(),
            "escalations": self.hits.iter().map(|h| serde_json::json!({
                "rule": h.rule, "severity": h.severity.as_str(), "tests": h.tests,
            })).collect::<Vec<_>>(),
            "outputs": self.outputs.iter().map(|(n, _, o)| match o {
                Ok(body) => serde_json::json!({"destination": n, "body": body}),
                Err(e) => serde_json::json!({"destination": n, "error": e}),
            }).collect::<Vec<_>>(),
        })
    }

    fn print(&self, source: &str) {
        let s = &self.summary;
        match self.kind {
            Kind::Hl7v2 if self.derived => println!(
                "message  {} control id {} (HL7 {}): the lab message's results as HL7, made by source {source}",
                s.item_type,
                s.item_ref,
                s.fields.get("version").map(String::as_str).unwrap_or(""),
            ),
            Kind::Hl7v2 => println!(
                "message  {} control id {} (HL7 {}, {}) from source {source}",
                s.item_type,
                s.item_ref,
                s.fields.get("version").map(String::as_str).unwrap_or(""),
                self.charset.unwrap_or("")
            ),
            Kind::Fax => println!(
                "message  fax of {} page(s), {} resolution, from station {:?} ({} damaged line(s)) at source {source}",
                s.fields.get("pages").map(String::as_str).unwrap_or("?"),
                s.fields.get("resolution").map(String::as_str).unwrap_or("?"),
                s.fields.get("tsi").map(String::as_str).unwrap_or(""),
                s.fields.get("bad_lines").map(String::as_str).unwrap_or("0"),
            ),
            Kind::Astm => println!(
                "message  ASTM {} from instrument {} (samples {}; tests {}; {} result(s)) from source {source}",
                s.item_type,
                s.fields.get("instrument").map(String::as_str).unwrap_or("?"),
                s.fields.get("sample_ids").map(String::as_str).unwrap_or(""),
                s.fields.get("tests").map(String::as_str).unwrap_or(""),
                s.fields.get("results").map(String::as_str).unwrap_or("0"),
            ),
        }
        println!("routing  {:?}", self.mode);
        for t in &self.traces {
            if t.matched {
                println!("  ✓ route {}", t.route);
            } else {
                println!("  ✗ route {}: {}", t.route, t.reason);
            }
        }
        for h in &self.hits {
            let tests = if h.tests.is_empty() { String::new() } else { format!(" (tests {})", h.tests.join(", ")) };
            println!("  ! escalation rule {} would raise a {} escalation{tests}", h.rule, h.severity.as_str());
        }
        if self.decision.is_unrouted() {
            println!(
                "result   UNROUTED: no route takes this message; the daemon would keep it as unrouted and raise an escalation"
            );
            return;
        }
        println!("result   delivered to {}", self.decision.destinations.join(", "));
        for (name, n, out) in &self.outputs {
            match out {
                Ok(text) => {
                    println!();
                    println!(
                        "--- {name} receives ({}) ---",
                        if *n == 0 { "unchanged".to_string() } else { format!("{n} transform(s) applied") }
                    );
                    println!("{}", text.replace('\r', "\n").trim_end());
                }
                Err(e) => println!("--- {name}: transform fails: {e} (the daemon would mark this delivery failed)"),
            }
        }
    }
}
