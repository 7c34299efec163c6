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

/// Label of the SQLite WAL's rewind and restart counters: how it went.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `done`, or why not (`blocked`, `busy`, `gave_up`).
    pub outcome: String,
}

/// The SQLite WAL's figures: kept by the store's checkpointer and committer, exported with the
/// relay's own (see [`Metrics::register_wal`]). Why: under writes that never pause, the WAL is
/// kept in bounds only by rewinds, and a reader that blocks them lets it grow unnoticed — with
/// these, an operator sees it grow and why.
#[derive(Clone, Debug, Default)]
pub struct Wal {
    /// Bytes written to the WAL since it last started over, as of the last checkpoint pass.
    pub bytes: Gauge,
    /// Rewinds run by the committer between two batches, by outcome: `done`, `blocked` (a
    /// reader on an older snapshot kept the pass short of the end) or `busy` (the checkpointer's
    /// own pass was running; asked again after the next batch).
    pub rewinds: Family<OutcomeLabel, Counter>,
    /// Fallback `RESTART` checkpoints (the WAL past twice its limit), by outcome: `done`, or
    /// `gave_up` (a reader or the writer held on past its short wait).
    pub restarts: Family<OutcomeLabel, Counter>,
    /// Checkpoint passes that failed (the WAL only grows meanwhile; nothing is lost).
    pub failures: Counter,
}

impl Wal {
    /// Counts a rewind by how it went: `done`, `blocked` or `busy`.
    pub fn count_rewind(&self, outcome: &str) {
        Self::counter(&self.rewinds, outcome).inc();
    }

    /// Counts a fallback `RESTART` by how it went: `done` or `gave_up`.
    pub fn count_restart(&self, outcome: &str) {
        Self::counter(&self.restarts, outcome).inc();
    }

    /// Rewinds counted with `outcome` so far.
    pub fn rewind_count(&self, outcome: &str) -> u64 {
        Self::counter(&self.rewinds, outcome).get()
    }

    /// Fallback `RESTART`s counted with `outcome` so far.
    pub fn restart_count(&self, outcome: &str) -> u64 {
        Self::counter(&self.restarts, outcome).get()
    }

    fn counter(family: &Family<OutcomeLabel, Counter>, outcome: &str) -> Counter {
        family
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .clone()
    }
}

/// How well the store's group commit groups, kept by its appending task (both engines have
/// one), exported with the relay's own (see [`Metrics::register_group_commit`]). Why: group
/// commit is what lets a node store thousands of messages a second, and it only works when
/// appends arrive together; with these an operator sees how many do, and a test sees that a
/// burst was stored by group statements at all.
#[derive(Clone, Debug, Default)]
pub struct GroupCommit {
    /// Statements or transactions that stored more than one append.
    pub groups: Counter,
    /// The appends they stored.
    pub appends: Counter,
}

impl GroupCommit {
    /// Counts one group that stored `appends` (more than one: a lone append is no group).
    pub fn count(&self, appends: usize) {
        if appends > 1 {
            self.groups.inc();
            self.appends.inc_by(appends as u64);
        }
    }
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
    /// TCP connections closed at once because the relay or their address was at its connection
    /// cap (`max_connections`, `max_connections_per_ip`): a climbing rate is a flood, or caps
    /// set too low for a proxy in front.
    pub connections_refused: Counter,
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
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "TCP connections closed at a connection cap",
            connections_refused.clone(),
        );
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
            connections_refused,
            append_seconds,
            bus_errors,
            cobrowse_bytes,
            queue_waiting,
            resyncs,
        }
    }
}

impl Metrics {
    /// Exports the SQLite WAL's figures (a store on SQLite has them: [`crate::store::Store::wal`]).
    pub fn register_wal(&self, wal: &Wal) {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.register(
            "sqlite_wal_bytes",
            "Bytes written to the SQLite WAL since it last started over",
            wal.bytes.clone(),
        );
        registry.register(
            "sqlite_wal_rewinds",
            "SQLite WAL rewinds between two group commits, by outcome",
            wal.rewinds.clone(),
        );
        registry.register(
            "sqlite_wal_restarts",
            "Fallback RESTART checkpoints of the SQLite WAL, by outcome",
            wal.restarts.clone(),
        );
        registry.register(
            "sqlite_checkpoint_failures",
            "SQLite WAL checkpoint passes that failed",
            wal.failures.clone(),
        );
    }

    /// Exports the store's group-commit figures ([`crate::store::Store::group_commit`]).
    pub fn register_group_commit(&self, group: &GroupCommit) {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.register(
            "store_group_commits",
            "Statements or transactions that stored more than one append at once",
            group.groups.clone(),
        );
        registry.register(
            "store_grouped_appends",
            "Appends stored by a group commit, together with others",
            group.appends.clone(),
        );
    }

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
        assert!(
            !text.contains("sqlite"),
            "no WAL figures without a WAL: {text}"
        );
    }

    #[test]
    fn renders_the_wal_figures_once_registered() {
        let m = Metrics::default();
        let wal = Wal::default();
        m.register_wal(&wal);
        wal.bytes.set(4096);
        wal.count_rewind("done");
        wal.count_rewind("done");
        wal.count_rewind("blocked");
        wal.count_restart("gave_up");
        let text = m.render(0, 0);
        for line in [
            "parley_sqlite_wal_bytes 4096",
            r#"parley_sqlite_wal_rewinds_total{outcome="done"} 2"#,
            r#"parley_sqlite_wal_rewinds_total{outcome="blocked"} 1"#,
            r#"parley_sqlite_wal_restarts_total{outcome="gave_up"} 1"#,
            "parley_sqlite_checkpoint_failures_total 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
