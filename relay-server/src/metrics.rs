//! Prometheus metrics at `GET /metrics` (OpenMetrics text), through the `prometheus-client` crate.
//!
//! Rates (messages/s) are left to Prometheus (`rate(parley_messages_stored_total[1m])`): the
//! relay exports counters, never pre-computed rates that would hide bursts.

use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use protocol::{ErrorCode, Role};

/// Which socket a connection gauge counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Kind {
    /// Visitor sockets.
    Visitor,
    /// Agent sockets.
    Agent,
}

/// Label of the connection gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Socket kind.
    pub kind: Kind,
}

/// Label of the message counter: who wrote it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthorLabel {
    /// `visitor`, `agent`, `bot` or `system`.
    pub author: String,
}

/// Label of the refusal counter: the error code sent.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The protocol error code, e.g. `rate_limited`.
    pub code: String,
}

/// The relay's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    connections: Family<KindLabel, Gauge>,
    /// Events stored, by author role.
    pub events: Family<AuthorLabel, Counter>,
    /// Error frames sent, by code: refused frames are never silent, and this shows how many.
    pub refused: Family<CodeLabel, Counter>,
    /// Time to store one event (the transaction that assigns its seq), in seconds.
    pub append_seconds: Histogram,
    /// Failed operations on the cross-node bus (Redis): while it is down, nodes serve their own
    /// connections only and this counts what did not cross.
    pub bus_errors: Counter,
    /// Co-browse stream bytes forwarded to agents (what sharing costs the relay's links).
    pub cobrowse_bytes: Counter,
    /// Conversations waiting for an agent, as this node last read the queue.
    pub queue_waiting: Gauge,
    /// Connections that fell behind (their signal queue overflowed, or the bus reconnected)
    /// and re-read from the store: each one costs store reads, so a climbing rate means a
    /// client or the relay cannot keep up.
    pub resyncs: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("parley");
        let connections = Family::<KindLabel, Gauge>::default();
        let events = Family::<AuthorLabel, Counter>::default();
        let refused = Family::<CodeLabel, Counter>::default();
        // 50 µs .. ~0.8 s: an append on a quiet SQLite takes ~100 µs.
        let append_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 15));
        let bus_errors = Counter::default();
        let cobrowse_bytes = Counter::default();
        registry.register(
            "cobrowse_bytes",
            "Co-browse stream bytes forwarded to agents",
            cobrowse_bytes.clone(),
        );
        let queue_waiting = Gauge::default();
        registry.register(
            "queue_waiting",
            "Conversations waiting for an agent",
            queue_waiting.clone(),
        );
        registry.register(
            "bus_errors",
            "Failed operations on the cross-node bus",
            bus_errors.clone(),
        );
        let resyncs = Counter::default();
        registry.register(
            "resyncs",
            "Connections that fell behind and re-read from the store",
            resyncs.clone(),
        );
        registry.register("connections", "Open WebSockets", connections.clone());
        registry.register(
            "events_stored",
            "Conversation events stored",
            events.clone(),
        );
        registry.register(
            "frames_refused",
            "Error frames sent to clients",
            refused.clone(),
        );
        registry.register(
            "store_append_seconds",
            "Time to store one event",
            append_seconds.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            connections,
            events,
            refused,
            append_seconds,
            bus_errors,
            cobrowse_bytes,
            queue_waiting,
            resyncs,
        }
    }
}

impl Metrics {
    /// Counts one stored event.
    pub fn stored(&self, role: Role) {
        let author = match role {
            Role::Visitor => "visitor",
            Role::Agent => "agent",
            Role::Bot => "bot",
            Role::System => "system",
        };
        self.events
            .get_or_create(&AuthorLabel {
                author: author.to_owned(),
            })
            .inc();
    }

    /// Counts one error frame.
    pub fn refused(&self, code: ErrorCode) {
        let code = serde_json::to_value(code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());
        self.refused.get_or_create(&CodeLabel { code }).inc();
    }

    /// The text exposition, with the connection gauges set to the given counts.
    pub fn render(&self, visitors: usize, agents: usize) -> String {
        self.connections
            .get_or_create(&KindLabel {
                kind: Kind::Visitor,
            })
            .set(visitors as i64);
        self.connections
            .get_or_create(&KindLabel { kind: Kind::Agent })
            .set(agents as i64);
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let m = Metrics::default();
        m.stored(Role::Visitor);
        m.stored(Role::Visitor);
        m.refused(ErrorCode::RateLimited);
        m.append_seconds.observe(0.0002);
        m.queue_waiting.set(2);
        let text = m.render(3, 1);
        assert!(
            text.contains(r#"parley_events_stored_total{author="visitor"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"parley_frames_refused_total{code="rate_limited"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"parley_connections{kind="Visitor"} 3"#),
            "{text}"
        );
        assert!(
            text.contains("parley_store_append_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("parley_queue_waiting 2"), "{text}");
    }
}
