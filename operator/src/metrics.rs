//! Prometheus metrics, served on the admin address at /metrics.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub verb: &'static str,
    pub resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// Normal or Warning.
    pub r#type: &'static str,
    /// `published`, `over_budget` (left out by the event budget) or `failed`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

pub struct Metrics {
    pub reconciles: Counter,
    pub reconciles_in_flight: Gauge,
    pub reconcile_failures: Family<FailureLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub retry_delay: Histogram,
    pub pods_created: Counter,
    pub pods_deleted: Counter,
    pub claims_created: Counter,
    pub api_writes: Family<WriteLabels, Counter>,
    pub fenced_writes: Counter,
    pub events: Family<EventLabels, Counter>,
    pub petsets: Gauge,
    pub leader: Gauge,
    pub undecodable_objects: Family<KindLabels, Counter>,
    pub registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("petset");
        let m = Metrics {
            reconciles: Counter::default(),
            reconciles_in_flight: Gauge::default(),
            reconcile_failures: Family::default(),
            reconcile_duration: Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            retry_delay: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
            pods_created: Counter::default(),
            pods_deleted: Counter::default(),
            claims_created: Counter::default(),
            api_writes: Family::default(),
            fenced_writes: Counter::default(),
            events: Family::default(),
            petsets: Gauge::default(),
            leader: Gauge::default(),
            undecodable_objects: Family::default(),
            registry: Registry::default(),
        };
        registry.register("reconciles", "PetSet syncs run", m.reconciles.clone());
        // With `reconciles`, tells when a restarted operator has caught up: every PetSet
        // synced once and nothing running (bench/ waits on it).
        registry.register("reconciles_in_flight", "PetSet syncs running now", m.reconciles_in_flight.clone());
        registry.register("reconcile_failures", "PetSet syncs that failed, by reason", m.reconcile_failures.clone());
        registry.register("reconcile_duration_seconds", "Time one PetSet sync took", m.reconcile_duration.clone());
        registry.register(
            "retry_delay_seconds",
            "How long a PetSet whose sync failed waits before the next try (its backoff)",
            m.retry_delay.clone(),
        );
        registry.register("pods_created", "Pods created", m.pods_created.clone());
        registry.register("pods_deleted", "Pods deleted", m.pods_deleted.clone());
        registry.register("claims_created", "PersistentVolumeClaims created", m.claims_created.clone());
        registry.register("api_write_requests", "API write requests sent, by verb and resource", m.api_writes.clone());
        // Not in `api_write_requests`: these never left the process.
        registry.register(
            "fenced_writes",
            "Write requests the write fence refused: this replica was no longer sure it led",
            m.fenced_writes.clone(),
        );
        registry.register("events", "Events to publish, by type and outcome", m.events.clone());
        registry.register("managed_petsets", "PetSets this operator manages", m.petsets.clone());
        registry.register("leader", "1 while this replica is the elected leader and reconciles", m.leader.clone());
        registry.register(
            "undecodable_objects",
            "Objects listed or changed that did not decode and were left out of the caches, by kind",
            m.undecodable_objects.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn write(&self, verb: &'static str, resource: &'static str) {
        self.api_writes.get_or_create(&WriteLabels { verb, resource }).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}
