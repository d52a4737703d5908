//! One sync of one PetSet: observe -> plan -> act -> status.

pub mod act;
mod clustering;
pub mod plan;
pub mod status;

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};

use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    core::Selector,
    runtime::{controller::Action, events::EventType, reflector::ObjectRef},
};
use petset_crd::{PetSet, PetSetStatus};
use serde_json::json;
use tracing::{Instrument, info_span};

use crate::{
    Error, cluster,
    controller::Context,
    identity,
    revision::{self, RevisionAction},
};
use plan::{Observed, Revisions};
use status::Rejection;

/// How often a PetSet is synced when nothing happens, as a safety net.
const RESYNC: Duration = Duration::from_secs(300);
/// The field manager of everything this operator writes with server-side apply.
pub const FIELD_MANAGER: &str = "petset-operator";
/// How soon a sync the API server refused is tried again.
const AFTER_REJECTION: Duration = Duration::from_secs(30);
/// How soon a set whose objects' names are taken looks again: their owner removes them
/// at some point, and petset may not see it (it watches only what it made).
const AFTER_CONFLICT: Duration = Duration::from_secs(10);

pub async fn reconcile(set: Arc<PetSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!(
        "reconcile",
        namespace = set.namespace().unwrap_or_default(),
        petset = set.name_any(),
        generation = set.metadata.generation.unwrap_or_default(),
        result = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    ctx.metrics.reconciles_in_flight.inc();
    let result = contained(sync(&set, &ctx)).instrument(span.clone()).await;
    if result.is_ok() {
        ctx.backoff.succeeded(&set.uid().unwrap_or_default());
    }
    ctx.report_done(&set);
    ctx.metrics.reconciles_in_flight.dec();
    let elapsed = started.elapsed();
    ctx.metrics.reconciles.inc();
    ctx.metrics.reconcile_duration.observe(elapsed.as_secs_f64());
    ctx.metrics.petsets.set(ctx.sets.state().len() as i64);
    span.record("result", if result.is_ok() { "ok" } else { "error" });
    span.record("duration_ms", elapsed.as_millis() as u64);
    span.in_scope(|| tracing::debug!("sync done"));
    result
}

async fn sync(set: &PetSet, ctx: &Context) -> Result<Action, Error> {
    let now = Timestamp::now();
    let selector = match Selector::try_from(set.spec.selector.clone()) {
        Ok(s) => s,
        // Admission refuses such selectors; one stored before the rules existed is
        // reported rather than acted on.
        Err(e) => return refuse_selector(set, &e.to_string(), ctx, now).await,
    };
    let observed = observe(set, ctx, now);
    let members = plan::members(set, &selector, &observed.pods);
    let history = revision::plan_revisions(set, &selector, &observed.revisions, &members);
    if history.collision {
        let mut status = set.status.clone().unwrap_or_default();
        status.collision_count = Some(status.collision_count.unwrap_or(0).saturating_add(1));
        tracing::info!(collision_count = status.collision_count, "revision name taken by another template");
        write_status(set, status, ctx).await?;
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    // The update revision must exist before pods name it; old history goes last.
    let (truncate, record): (Vec<_>, Vec<_>) =
        history.actions.iter().cloned().partition(|a| matches!(a, RevisionAction::Delete { .. }));
    act::revisions(set, &record, ctx).await?;
    let revisions =
        Revisions { current: history.current, update: history.update, current_template: history.current_template };

    let lease = ctx.leases.get(&ObjectRef::new(&set.name_any()).within(&set.namespace().unwrap_or_default()));
    let leadership = cluster::leadership(set, &members, &revisions.update, lease.as_deref(), now);
    let plan = plan::plan(set, &selector, &revisions, &observed, leadership.as_ref());
    if let Some(why) = &plan.waiting {
        tracing::debug!(waiting = why.as_str());
    }
    for warning in &plan.warnings {
        ctx.event(set, None, EventType::Warning, "ClaimOwnedElsewhere", "Sync", warning.clone());
    }

    let mut outcome = act::execute(set, &plan, ctx).await;
    if outcome.is_ok() {
        outcome = act::revisions(set, &truncate, ctx).await;
    }
    // The role labels have landed: the leader decision took effect.
    let acted = outcome.is_ok();
    // A set being deleted leaves its objects to the garbage collector: written now, an
    // object orphaned by `--cascade=orphan` would get the set back as its owner, and go
    // with it.
    let deleting = set.metadata.deletion_timestamp.is_some();
    if let (true, false, Some(clustering)) = (acted, deleting, &set.spec.clustering) {
        let leader = leadership.as_ref().and_then(|l| l.leader.as_deref());
        outcome = clustering::sync(set, clustering, &members, leader, observed.formed_at.as_ref(), ctx).await;
    }
    if let (true, Some((from, to))) = (acted, leadership.as_ref().and_then(|l| l.moved.clone())) {
        let note = format!("leader: {} -> {}", from.as_deref().unwrap_or("none"), to.as_deref().unwrap_or("none"));
        let pod = to.as_deref().or(from.as_deref()).map(|p| ("Pod", p));
        ctx.event(set, pod, EventType::Normal, "LeaderChanged", "Sync", note);
    }
    let rejection = outcome
        .as_ref()
        .err()
        .and_then(|e| e.rejection().map(|_| Rejection { reason: "FailedCreate".into(), message: e.to_string() }));

    let learned = status::SyncOutcome {
        rejection: rejection.as_ref(),
        waiting: plan.waiting.as_deref(),
        leadership: leadership.as_ref().filter(|_| acted),
        conflicts: match &outcome {
            Err(Error::NotOurs(conflicts)) => Some(conflicts),
            _ => None,
        },
        completed: outcome.is_ok(),
        formed_at: observed.formed_at.as_ref(),
    };
    let status = status::compute(set, &members, &revisions, &selector, learned, now);
    let status_due = write_status_paced(set, status, ctx).await?;

    let after = |wait: Duration| Action::requeue(status_due.map_or(wait, |due| due.min(wait)));
    match outcome {
        Err(e) if rejection.is_some() => {
            tracing::warn!(error = %e, "the API server refused what the spec renders");
            Ok(after(AFTER_REJECTION))
        }
        Err(e @ Error::NotOurs(_)) => {
            tracing::warn!(error = %e, "names the set needs are taken");
            Ok(after(AFTER_CONFLICT))
        }
        Err(e) => Err(e),
        Ok(()) => {
            let unseen_lapse = ctx.unseen.lapses_in(&set.namespace().unwrap_or_default());
            Ok(after(next_sync(set, &plan, &members, lease.as_deref(), unseen_lapse, now)))
        }
    }
}

/// Runs a sync so that a panic in it becomes that sync's error: one set's bad luck
/// must not end the controller that serves every other set.
pub async fn contained<T>(sync: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    match std::panic::AssertUnwindSafe(sync).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            tracing::error!(panic = message, "sync panicked");
            Err(Error::Panic(message))
        }
    }
}

/// Status writes per PetSet: one a second. A set in a rollout or a scale changes its
/// counts with nearly every pod, and writing each change took more requests than the
/// pods themselves (4.5 status patches per pod replaced in a rolling update at 400 QPS);
/// the changes in between are folded into the next write.
pub fn status_pace() -> DefaultKeyedRateLimiter<String> {
    const ONE: NonZeroU32 = NonZeroU32::new(1).unwrap();
    RateLimiter::keyed(Quota::per_second(ONE))
}

/// Writes the status if it changed and the set's pace allows; otherwise returns how soon
/// it may be written, for the sync to come back then. Rollout events go out with the
/// write, so a status held back is not reported twice.
async fn write_status_paced(set: &PetSet, status: PetSetStatus, ctx: &Context) -> Result<Option<Duration>, Error> {
    if set.status.as_ref() == Some(&status) {
        return Ok(None);
    }
    if let Err(not_until) = ctx.status_pace.check_key(&set.uid().unwrap_or_default()) {
        return Ok(Some(not_until.wait_time_from(DefaultClock::default().now())));
    }
    report_transitions(set, &status, ctx);
    write_status(set, status, ctx).await?;
    Ok(None)
}

/// When to sync again with nothing changing: the earliest of a pod becoming Available,
/// a pod crossing the progress deadline, the leader Lease expiring, a create mark
/// lapsing, and the resync.
fn next_sync(
    set: &PetSet,
    plan: &plan::Plan,
    members: &[&Pod],
    lease: Option<&Lease>,
    unseen_lapse: Option<Duration>,
    now: Timestamp,
) -> Duration {
    let lease_expiry = cluster::lease_expiry(lease).filter(|t| *t > now).map(|t| crate::time::until(t, now));
    [plan.requeue_after, status::until_deadline(set, members, now), lease_expiry, unseen_lapse]
        .into_iter()
        .flatten()
        .min()
        .map_or(RESYNC, |d| d.min(RESYNC))
}

async fn refuse_selector(set: &PetSet, error: &str, ctx: &Context, now: Timestamp) -> Result<Action, Error> {
    let message = format!("spec.selector: {error}");
    ctx.event(set, None, EventType::Warning, "InvalidSelector", "Sync", message.clone());
    let mut status = set.status.clone().unwrap_or_default();
    status.observed_generation = set.metadata.generation;
    status::set_condition(&mut status, status::REPLICA_FAILURE, "True", "InvalidSelector", &message, now);
    write_status(set, status, ctx).await?;
    Ok(Action::await_change())
}

/// Events for the rollout's story: a step newly blocked (and why), a rollout complete.
fn report_transitions(set: &PetSet, status: &PetSetStatus, ctx: &Context) {
    let progressing = |s: Option<&PetSetStatus>| {
        s.and_then(|s| s.conditions.iter().find(|c| c.type_ == status::PROGRESSING))
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let (before, after) = (progressing(set.status.as_ref()), progressing(Some(status)));
    let Some((value, reason, message)) = after.clone() else { return };
    if before == after {
        return;
    }
    let reason_changed = before.as_ref().map(|b| &b.1) != Some(&reason);
    // Events about the pod a step waits on stay apart from those about other pods.
    let set_name = set.name_any();
    let pod = message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|t| identity::ordinal_of(&set_name, t).is_some())
        .map(|p| ("Pod", p));
    match (value.as_str(), reason.as_str()) {
        ("False", _) if reason_changed => ctx.event(set, pod, EventType::Warning, &reason, "Sync", message.clone()),
        // About the revision rolled out, so each rollout keeps its own event.
        ("True", status::ROLLOUT_COMPLETE) if reason_changed => {
            let revision = status.update_revision.as_deref().map(|r| ("ControllerRevision", r));
            ctx.event(set, revision, EventType::Normal, "RolloutComplete", "Sync", message)
        }
        ("True", _) => ctx.event(set, pod, EventType::Normal, "Waiting", "Sync", message.clone()),
        _ => {}
    }
}

/// Reads what the set needs from the caches: the pods and revisions of its namespace
/// that it owns or that are orphans, and its members' claims.
fn observe(set: &PetSet, ctx: &Context, now: Timestamp) -> Observed {
    let ns = set.namespace().unwrap_or_default();
    let set_name = set.name_any();
    let set_uid = set.uid();
    let pods: Vec<_> = ctx
        .pods
        .state()
        .iter()
        .filter(|p| ours_or_orphan(&p.metadata, &ns, set_uid.as_deref()))
        .map(|p| p.as_ref().clone())
        .collect();
    ctx.unseen.seen("Pod", &ns, pods.iter().map(|p| p.name_any()));
    // Every claim of the set's templates, whether or not its member exists: claims of
    // members scaled away follow the retention policy too. Found by name, not by
    // walking the ordinals, so the cost does not grow with `replicas`.
    let claims: std::collections::BTreeMap<_, _> = if set.spec.volume_claim_templates.is_empty() {
        Default::default()
    } else {
        ctx.claims
            .state()
            .iter()
            .filter(|c| c.metadata.namespace.as_deref() == Some(ns.as_str()))
            .filter(|c| c.metadata.name.as_deref().is_some_and(|n| identity::claim_ordinal(set, n).is_some()))
            .map(|c| (c.name_any(), c.as_ref().clone()))
            .collect()
    };
    // Only the revisions the set may own, adopt, or collide with by name are copied:
    // each holds a whole pod template.
    let name_prefix = format!("{set_name}-");
    let revisions = ctx
        .revisions
        .state()
        .iter()
        .filter(|r| {
            ours_or_orphan(&r.metadata, &ns, set_uid.as_deref())
                || (r.metadata.namespace.as_deref() == Some(ns.as_str())
                    && r.metadata.name.as_deref().is_some_and(|n| n.starts_with(&name_prefix)))
        })
        .map(|r| r.as_ref().clone())
        .collect();
    ctx.unseen.seen("PersistentVolumeClaim", &ns, claims.keys().cloned());
    let formed_at = set.spec.clustering.as_ref().and_then(|_| {
        let peers = ctx.config_maps.get(&ObjectRef::new(&cluster::peers_config_map_name(&set_name)).within(&ns));
        cluster::formed_at(set, peers.as_deref())
    });
    Observed { pods, claims, revisions, formed_at, now }
}

/// Whether an object is in `ns` and has no controller or the set `uid` as controller.
/// Read in place, without copies: it runs over every cached object on every sync.
fn ours_or_orphan(meta: &ObjectMeta, ns: &str, uid: Option<&str>) -> bool {
    let controller = meta.owner_references.iter().flatten().find(|r| r.controller == Some(true));
    meta.namespace.as_deref() == Some(ns) && controller.is_none_or(|r| Some(r.uid.as_str()) == uid)
}

async fn write_status(set: &PetSet, status: PetSetStatus, ctx: &Context) -> Result<(), Error> {
    if set.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let name = set.name_any();
    let api: Api<PetSet> = Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    // Server-side apply: a field this operator set and no longer sets (a cleared
    // condition, say) is removed, which a merge patch cannot express.
    let patch = json!({ "apiVersion": "petset.dev/v1alpha1", "kind": "PetSet", "status": status });
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::status(name, source))?;
    ctx.metrics.write("patch", "petsets/status");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_sync_is_that_sync_failing() {
        let failed = contained(async { panic!("index out of bounds") as Result<(), Error> }).await;
        assert!(matches!(&failed, Err(Error::Panic(m)) if m.contains("index out of bounds")), "{failed:?}");
        assert_eq!(failed.unwrap_err().metric_label(), "panic");
        assert!(contained(async { Ok::<_, Error>(7) }).await.is_ok_and(|v| v == 7));
    }
}
