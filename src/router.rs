//! Local routing rules. Pure: an item's source and parsed payload in, a decision out. No IO,
//! so routing works offline and `outpost rules test` shows exactly what the daemon would do.

use serde::Serialize;

use crate::config::{Config, Route, RoutingMode};
use crate::payload::Parsed;

#[derive(Debug, Clone)]
pub struct Router {
    mode: RoutingMode,
    routes: Vec<Route>,
}

/// Which routes took an item and where it goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Names of the routes whose conditions held, in file order.
    pub routes: Vec<String>,
    /// Destination names, without repeats, in the order routes name them.
    pub destinations: Vec<String>,
}

impl Decision {
    pub fn is_unrouted(&self) -> bool {
        self.destinations.is_empty()
    }
}

/// Why one route did or did not match (for `rules test`).
#[derive(Debug, Clone, Serialize)]
pub struct RouteTrace {
    pub route: String,
    pub matched: bool,
    /// Empty when matched; otherwise the first reason it did not.
    pub reason: String,
}

impl Router {
    pub fn new(config: &Config) -> Router {
        Router { mode: config.routing.mode, routes: config.routes.clone() }
    }

    pub fn mode(&self) -> RoutingMode {
        self.mode
    }

    /// Routes a parsed item from `source`.
    pub fn route(&self, source: &str, item: &Parsed<'_>) -> Decision {
        self.route_traced(source, item).0
    }

    /// Routes and explains every route's verdict.
    pub fn route_traced(&self, source: &str, item: &Parsed<'_>) -> (Decision, Vec<RouteTrace>) {
        let mut decision = Decision::default();
        let mut traces = Vec::with_capacity(self.routes.len());
        for route in &self.routes {
            let taken = !decision.routes.is_empty() && self.mode == RoutingMode::FirstMatch;
            let verdict = if taken {
                Err("an earlier route matched (routing.mode = \"first-match\")".to_string())
            } else {
                check(route, source, item)
            };
            match verdict {
                Ok(()) => {
                    decision.routes.push(route.name.clone());
                    for dest in &route.to {
                        if !decision.destinations.contains(dest) {
                            decision.destinations.push(dest.clone());
                        }
                    }
                    traces.push(RouteTrace { route: route.name.clone(), matched: true, reason: String::new() });
                }
                Err(reason) => traces.push(RouteTrace { route: route.name.clone(), matched: false, reason }),
            }
        }
        (decision, traces)
    }
}

fn check(route: &Route, source: &str, item: &Parsed<'_>) -> Result<(), String> {
    if !route.from.iter().any(|f| f == "*" || f == source) {
        return Err(format!("source `{source}` is not in `from`"));
    }
    for cond in &route.when {
        let values = item.values(&cond.field);
        if !values.iter().any(|v| cond.matcher.is_match(v)) {
            return Err(if values.is_empty() {
                format!("{} is absent", cond.field)
            } else {
                format!("{} does not match", cond.field)
            });
        }
    }
    Ok(())
}
