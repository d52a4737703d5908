//! Wiring: the watches, the shared Context, and the error policy.
//!
//! PetSets are watched, and so are Pods carrying the `statefulset.kubernetes.io/pod-name`
//! label and all PersistentVolumeClaims, each into a cache the syncs read from. A pod or
//! claim event wakes the PetSet that owns it, or, for an orphan, every PetSet of its
//! namespace whose selector matches it (it may be adopted).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{FutureExt, StreamExt, channel::mpsc::UnboundedReceiver, future, future::BoxFuture, stream};
use governor::DefaultKeyedRateLimiter;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, PersistentVolumeClaim, Pod, Service};
use kube::{
    Client, Resource, ResourceExt,
    core::{Selector, SelectorExt},
    runtime::{
        Controller,
        controller::{self, Action},
        events::{Event, EventType, Recorder, Reporter},
        reflector::{ObjectRef, Store, store::WriterDropped},
        watcher,
    },
};
use petset_crd::PetSet;
use tokio::sync::watch;

use crate::{
    Error, cache,
    events::{Done, EventBudget, summarize},
    identity,
    metrics::{EventLabels, KindLabels, Metrics},
    reconcile,
    retry::Backoff,
    throttle,
    unseen::Unseen,
};

/// What every sync shares.
pub struct Context {
    pub client: Client,
    pub sets: Store<PetSet>,
    pub pods: Store<Pod>,
    pub claims: Store<PersistentVolumeClaim>,
    pub revisions: Store<ControllerRevision>,
    /// The objects petset made for clustered sets (label `petset.dev/part-of`).
    pub config_maps: Store<ConfigMap>,
    pub services: Store<Service>,
    pub leases: Store<Lease>,
    pub recorder: Recorder,
    /// The events each PetSet may still publish.
    pub event_budget: EventBudget,
    /// When each PetSet may write its status next, by uid.
    pub status_pace: DefaultKeyedRateLimiter<String>,
    /// How long each failing PetSet waits before its next sync.
    pub backoff: Backoff,
    /// Pods and claims created and not yet seen in the caches.
    pub unseen: Unseen,
    /// What the running syncs have done, by PetSet uid, reported when each ends.
    pub done: Mutex<HashMap<String, Vec<Done>>>,
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// A context whose caches stay empty, for running the steps of a sync directly
    /// against an API server (the tests of what a step does when it loses a race).
    pub fn uncached(client: Client, metrics: Arc<Metrics>) -> Context {
        fn empty<K: Resource<DynamicType = ()> + Clone + 'static>() -> Store<K> {
            kube::runtime::reflector::store().0
        }
        let reporter = Reporter { controller: "petset-operator".into(), instance: None };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            sets: empty(),
            pods: empty(),
            claims: empty(),
            revisions: empty(),
            config_maps: empty(),
            services: empty(),
            leases: empty(),
            event_budget: EventBudget::default(),
            status_pace: reconcile::status_pace(),
            backoff: Backoff::default(),
            unseen: Unseen::default(),
            done: Mutex::default(),
            metrics,
        }
    }

    pub fn done(&self, set: &PetSet, done: Done) {
        let mut all = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        all.entry(set.uid().unwrap_or_default()).or_default().push(done);
    }

    /// Reports what the sync of `set` did: one event per reason and kind, so a sync
    /// that creates thirty pods publishes one event naming them, not thirty.
    pub fn report_done(&self, set: &PetSet) {
        let done = self.done.lock().unwrap_or_else(PoisonError::into_inner).remove(&set.uid().unwrap_or_default());
        for (related, reason, verb, note) in summarize(done.unwrap_or_default(), &set.name_any()) {
            let related = related.as_ref().map(|(kind, name)| (kind.as_str(), name.as_str()));
            self.event(set, related, EventType::Normal, reason, verb, note);
        }
    }

    /// Publishes an event on the PetSet about the pod or claim `related` (events with
    /// the same reason about different objects stay separate, rather than being folded
    /// into one series); a failure to publish is logged, never fatal.
    pub fn event(
        &self,
        set: &PetSet,
        related: Option<(&str, &str)>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let secondary = related.map(|(kind, name)| ObjectReference {
            api_version: Some(
                match kind {
                    "ControllerRevision" => "apps/v1",
                    "Lease" => "coordination.k8s.io/v1",
                    _ => "v1",
                }
                .into(),
            ),
            kind: Some(kind.into()),
            name: Some(name.into()),
            namespace: set.namespace(),
            ..Default::default()
        });
        if !self.event_budget.allows(&set.uid().unwrap_or_default(), type_, reason) {
            tracing::debug!(reason, "event budget spent; not published");
            self.metrics.events.get_or_create(&EventLabels { r#type: type_name(type_), outcome: "over_budget" }).inc();
            return;
        }
        let event = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary };
        publish(&self.recorder, &self.metrics, event, set.object_ref(&()));
    }

    /// Drops what the budgets and the backoff keep about sets not heard from lately.
    fn prune(&self) {
        self.event_budget.prune();
        throttle::prune(&self.status_pace);
        self.backoff.prune();
    }
}

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// PetSets synced at once.
    pub concurrency: u16,
    /// Name under which events are reported.
    pub instance: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { namespaces: Vec::new(), concurrency: 8, instance: None }
    }
}

/// Runs the controller until `shutdown` fires. `ready` is set once every cache has
/// its first full list, and syncs start then.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: watch::Sender<bool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    // Every cache is fed by a task of its own that ends at shutdown, not by the
    // Controller polling its stream: the Controller holds its runner until the PetSet
    // cache is ready, and a first list that failed could then wait on the runner it holds.
    let shutdown = shutdown.shared();
    let ns = &settings.namespaces;
    let reporter = Reporter { controller: "petset-operator".into(), instance: settings.instance.clone() };
    let recorder = Recorder::new(client.clone(), reporter);
    let undecodable =
        &UndecodableReport { client: client.clone(), recorder: recorder.clone(), metrics: metrics.clone() };
    let part_of = || watcher::Config::default().labels(identity::PART_OF_LABEL);
    let set_config = watcher::Config::default().any_semantic();
    let (sets, set_wakes) =
        cached(&client, ns, set_config, &shutdown, undecodable, |s: &PetSet| vec![ObjectRef::from_obj(s)]);
    let pod_config = watcher::Config::default().labels(identity::POD_NAME_LABEL);
    let (pods, pod_wakes) = cached(&client, ns, pod_config, &shutdown, undecodable, owners_of::<Pod>(sets.clone()));
    let (claims, claim_wakes) = cached(
        &client,
        ns,
        watcher::Config::default(),
        &shutdown,
        undecodable,
        owners_of::<PersistentVolumeClaim>(sets.clone()),
    );
    let (config_maps, config_map_wakes) =
        cached(&client, ns, part_of(), &shutdown, undecodable, owners_of::<ConfigMap>(sets.clone()));
    let (services, service_wakes) =
        cached(&client, ns, part_of(), &shutdown, undecodable, owners_of::<Service>(sets.clone()));
    let (leases, lease_wakes) =
        cached(&client, ns, part_of(), &shutdown, undecodable, owners_of::<Lease>(sets.clone()));
    // Revisions change only when the operator changes them: cached, never a wake-up (so
    // nothing is ever sent to the receiver dropped here).
    let (revisions, _) =
        cached(&client, ns, watcher::Config::default(), &shutdown, undecodable, |_: &ControllerRevision| Vec::new());

    let ctx = Arc::new(Context {
        sets: sets.clone(),
        pods: pods.clone(),
        claims: claims.clone(),
        revisions: revisions.clone(),
        config_maps: config_maps.clone(),
        services: services.clone(),
        leases: leases.clone(),
        recorder,
        ..Context::uncached(client.clone(), metrics)
    });

    let synced: Vec<BoxFuture<'static, Result<(), WriterDropped>>> = vec![
        synced_once(pods),
        synced_once(claims),
        synced_once(sets.clone()),
        synced_once(revisions),
        synced_once(config_maps),
        synced_once(services),
        synced_once(leases),
    ];
    // No sync before every cache has its first list, as upstream waits for its informers:
    // planned from a partial cache, a sync would recreate what exists (a write refused
    // per object) and publish counts that drop and come back.
    tokio::select! {
        synced = future::try_join_all(synced) => if synced.is_err() { return },
        () = shutdown.clone() => return,
    }
    let _ = ready.send(true);
    tokio::spawn(prune_every(PRUNE_EVERY, Arc::downgrade(&ctx)));

    let wakes = stream::select_all([set_wakes, pod_wakes, claim_wakes, config_map_wakes, service_wakes, lease_wakes]);
    let config = controller::Config::default().concurrency(settings.concurrency);
    // Every wake-up arrives through `reconcile_on`, so the Controller's own trigger is empty.
    Controller::for_stream(stream::empty(), sets)
        .with_config(config)
        .reconcile_on(wakes)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// How often the per-set budgets are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Prunes the context's budgets every `period`, until the controller has let it go.
async fn prune_every(period: Duration, ctx: std::sync::Weak<Context>) {
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        match ctx.upgrade() {
            Some(ctx) => ctx.prune(),
            None => return,
        }
    }
}

/// Resolves once the store has its first full list.
fn synced_once<K>(store: Store<K>) -> BoxFuture<'static, Result<(), WriterDropped>>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    Box::pin(async move { store.wait_until_ready().await })
}

/// A cache of `K` in the watched namespaces, fed by a task that runs until `shutdown`,
/// and the PetSets its changes wake, as `wakes` maps them. Only those references wait
/// for the Controller: a restart's first lists of thousands of pods and claims are in
/// the caches once, not also queued whole in a channel until the syncs start.
fn cached<K, W>(
    client: &Client,
    namespaces: &[String],
    config: watcher::Config,
    shutdown: &(impl Future<Output = ()> + Clone + Send + 'static),
    undecodable: &UndecodableReport,
    wakes: W,
) -> (Store<K>, UnboundedReceiver<ObjectRef<PetSet>>)
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + Default
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
    W: Fn(&K) -> Vec<ObjectRef<PetSet>> + Send + 'static,
{
    let undecodable = undecodable.clone();
    let report = move |object: &ObjectReference, error: &str| undecodable.report(object, error);
    let (store, changes) = cache::reflect(client, namespaces, config, report);
    // Errors stay here, where this watch retries with its own backoff. Passed on, they
    // would engage the Controller's trigger backoff, which holds back every watch at
    // once (for up to a minute) whenever any one of them fails.
    let changes = changes.filter_map(|change| {
        if let Err(error) = &change {
            tracing::debug!(%error, "watch failed; retrying");
        }
        future::ready(change.ok())
    });
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let woken = changes.flat_map(move |object| stream::iter(wakes(&object))).map(Ok);
    tokio::spawn(woken.take_until(shutdown.clone()).forward(tx));
    (store, rx)
}

/// Where the caches report an object they cannot decode and leave out: the log, the
/// metric, and a Warning event on the object (and a condition on a PetSet), for
/// whoever can fix it.
#[derive(Clone)]
struct UndecodableReport {
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
}

impl UndecodableReport {
    fn report(&self, object: &ObjectReference, error: &str) {
        let kind = object.kind.clone().unwrap_or_default();
        tracing::warn!(
            kind,
            namespace = object.namespace.as_deref().unwrap_or_default(),
            name = object.name.as_deref().unwrap_or_default(),
            error,
            "ignoring an object that does not decode"
        );
        self.metrics.undecodable_objects.get_or_create(&KindLabels { kind: kind.clone() }).inc();
        // A reference without them would file the event elsewhere, or nowhere.
        if object.name.is_none() || object.namespace.is_none() {
            return;
        }
        let note = format!("petset cannot decode this {kind} and ignores it until it is fixed: {error}");
        if kind == "PetSet" {
            let (client, metrics, object, message) =
                (self.client.clone(), self.metrics.clone(), object.clone(), note.clone());
            tokio::spawn(async move {
                let (ns, name) = (object.namespace.unwrap_or_default(), object.name.unwrap_or_default());
                match reconcile::status::mark_undecodable(client, &ns, &name, &message).await {
                    Ok(true) => metrics.write("patch", "petsets/status"),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, name, "could not mark an undecodable PetSet"),
                }
            });
        }
        let event = Event {
            type_: EventType::Warning,
            reason: "Undecodable".into(),
            note: Some(note),
            action: "Decode".into(),
            secondary: None,
        };
        publish(&self.recorder, &self.metrics, event, object.clone());
    }
}

/// Publishes `event` beside the caller, as client-go's broadcaster does: a sync waits on
/// the writes that change the set, not on its report of them. A failure is logged.
fn publish(recorder: &Recorder, metrics: &Arc<Metrics>, mut event: Event, regarding: ObjectReference) {
    // The API server refuses notes over 1 kB.
    event.note = event.note.map(|note| {
        if note.len() > 1024 { format!("{}...", note.chars().take(1000).collect::<String>()) } else { note }
    });
    let (recorder, metrics) = (recorder.clone(), metrics.clone());
    tokio::spawn(async move {
        let result = recorder.publish(&event, &regarding).await;
        let outcome = if result.is_ok() { "published" } else { "failed" };
        metrics.events.get_or_create(&EventLabels { r#type: type_name(event.type_), outcome }).inc();
        if let Err(e) = result {
            tracing::warn!(error = %e, reason = event.reason, "could not publish an event");
        }
    });
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// Maps a pod or claim to the PetSets it concerns: its controller if that is a PetSet,
/// else (an orphan) every PetSet of its namespace whose selector matches its labels.
fn owners_of<K: Resource>(sets: Store<PetSet>) -> impl Fn(&K) -> Vec<ObjectRef<PetSet>> {
    move |obj: &K| {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        if let Some(owner) = obj.owner_references().iter().find(|r| r.controller == Some(true)) {
            return if owner.kind == "PetSet" && owner.api_version.starts_with("petset.dev/") {
                vec![ObjectRef::new(&owner.name).within(&ns)]
            } else {
                Vec::new()
            };
        }
        sets.state()
            .iter()
            .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
            .filter(|s| Selector::try_from(s.spec.selector.clone()).is_ok_and(|sel| sel.matches(obj.labels())))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect()
    }
}

fn error_policy(set: Arc<PetSet>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failures.get_or_create(&crate::metrics::FailureLabels { reason: error.metric_label() }).inc();
    let wait = ctx.backoff.failed(&set.uid().unwrap_or_default());
    ctx.metrics.retry_delay.observe(wait.as_secs_f64());
    tracing::warn!(petset = %set.name_any(), namespace = ?set.namespace(), %error, retry_in = ?wait, "sync failed; retrying");
    Action::requeue(wait)
}
