//! The PetSet's status, computed purely from its members (upstream's sync step 9). The
//! caller writes it only when it differs from what is stored, so a sync that changes
//! nothing writes nothing and triggers nothing.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    core::Selector,
};
use petset_crd::{LeaderStatus, PetSet, PetSetStatus, UpdateStrategyType};

use super::plan::Revisions;
use crate::Conflict;
use crate::cluster::Leadership;
use crate::health::{is_running_and_available, is_running_and_ready, is_terminating, not_ready_since, phase};
use crate::identity::REVISION_LABEL;
use crate::time;

/// `ReplicaFailure`: the API server refused a pod or claim the spec renders (the same
/// condition type Deployments use). Set with the server's message, which names the field.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The reason of the ReplicaFailure a PetSet that does not decode gets.
pub const UNDECODABLE: &str = "Undecodable";

/// `Available`: every pod the spec asks for is Available (Ready for minReadySeconds).
pub const AVAILABLE: &str = "Available";
/// `Progressing`: True while the set moves toward its spec or once it is there
/// (reason `RolloutComplete`); False with `ProgressDeadlineExceeded` when a pod it
/// waits for has not been Ready for `progressDeadlineSeconds`.
pub const PROGRESSING: &str = "Progressing";
pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
/// `ObjectConflict` (also the reason of its Warning events): an object the set needs (a
/// member pod, the peers ConfigMap, a Service) exists under its name and is someone
/// else's; petset leaves it alone and names its owner. Cleared by the first sync that
/// completes.
pub const OBJECT_CONFLICT: &str = "ObjectConflict";

/// A write the API server refused because of the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

/// What this sync learned beyond the pods, for the conditions and the leader.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncOutcome<'a> {
    /// The API server refused a write the spec renders.
    pub rejection: Option<&'a Rejection>,
    /// Why the sync stopped short (the Progressing message).
    pub waiting: Option<&'a str>,
    /// The leader decision that took effect.
    pub leadership: Option<&'a Leadership>,
    /// Objects found under the names the set needs that are someone else's.
    pub conflicts: Option<&'a [Conflict]>,
    /// The sync did all it planned.
    pub completed: bool,
    /// When the cluster was formed, as kept outside the status too.
    pub formed_at: Option<&'a Time>,
}

pub fn compute(
    set: &PetSet,
    members: &[&Pod],
    revisions: &Revisions,
    selector: &Selector,
    outcome: SyncOutcome<'_>,
    now: Timestamp,
) -> PetSetStatus {
    let SyncOutcome { rejection, waiting, leadership, conflicts, completed, formed_at } = outcome;
    let old = set.status.clone().unwrap_or_default();
    let min_ready = set.spec.min_ready_seconds();
    let mut status = PetSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(revisions.current.clone()),
        update_revision: Some(revisions.update.clone()),
        collision_count: old.collision_count,
        selector: Some(selector.to_string()),
        conditions: old.conditions.clone(),
        ..Default::default()
    };
    for pod in members {
        // Created: the API server gave it a phase.
        if !phase(pod).is_empty() {
            status.replicas += 1;
        }
        if is_running_and_ready(pod) {
            status.ready_replicas += 1;
            if is_running_and_available(pod, min_ready, now) {
                status.available_replicas += 1;
            }
        }
        if !phase(pod).is_empty() && !is_terminating(pod) {
            let revision = pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL));
            if revision == status.current_revision.as_ref() {
                status.current_replicas += 1;
            }
            if revision == status.update_revision.as_ref() {
                status.updated_replicas += 1;
            }
        }
    }
    // A rolling update is complete when every pod is updated and Ready: only then does
    // the current revision move.
    let desired = set.spec.replicas();
    if set.spec.update_strategy_type() == UpdateStrategyType::RollingUpdate
        && status.updated_replicas == status.replicas
        && status.ready_replicas == status.replicas
        && status.replicas == desired
    {
        status.current_revision = status.update_revision.clone();
        status.current_replicas = status.updated_replicas;
    }

    match rejection {
        Some(r) => set_condition(&mut status, REPLICA_FAILURE, "True", &r.reason, &r.message, now),
        None if status.replicas == desired => status.conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        None => {}
    }

    match conflicts {
        Some(c) => {
            let message = c.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            set_condition(&mut status, OBJECT_CONFLICT, "True", "NotControlled", &message, now)
        }
        None if completed => status.conditions.retain(|c| c.type_ != OBJECT_CONFLICT),
        None => {}
    }

    let available = status.available_replicas >= desired;
    let message = format!("{} of {desired} pods available", status.available_replicas);
    let reason = if available { "AllReplicasAvailable" } else { "ReplicasUnavailable" };
    set_condition(&mut status, AVAILABLE, if available { "True" } else { "False" }, reason, &message, now);

    let complete = status.replicas == desired
        && status.ready_replicas == desired
        && status.updated_replicas == desired
        && status.current_revision == status.update_revision;
    let (value, reason, message) = if complete {
        ("True", ROLLOUT_COMPLETE, format!("{desired} pods at revision {} and Ready", revisions.update))
    } else if let Some((pod, since)) = stalled(set, members, now) {
        let deadline = set.spec.progress_deadline_seconds();
        let since = since.strftime("%Y-%m-%dT%H:%M:%SZ");
        (
            "False",
            "ProgressDeadlineExceeded",
            format!("{pod} not Ready since {since}, past progressDeadlineSeconds ({deadline}s)"),
        )
    } else {
        let reason = if revisions.update != revisions.current { "RolloutInProgress" } else { "ScalingInProgress" };
        ("True", reason, waiting.unwrap_or("syncing").to_string())
    };
    set_condition(&mut status, PROGRESSING, value, reason, &message, now);

    if set.spec.clustering.is_some() {
        let formed_now = desired > 0 && status.ready_replicas == desired;
        status.formed_at =
            old.formed_at.clone().or_else(|| formed_at.cloned()).or_else(|| formed_now.then_some(Time(now)));
    }
    let old_leader = old.leader.clone().unwrap_or_default();
    status.leader = match leadership {
        Some(l) => Some(LeaderStatus {
            epoch: old_leader.epoch.saturating_add(i64::from(l.moved.is_some())),
            pod: l.leader.clone(),
        }),
        // Without a decision this sync (no policy, or the labels did not land), keep it.
        None if set.spec.clustering.as_ref().is_some_and(|c| c.leader.is_some()) => old.leader,
        None => None,
    };
    status
}

/// How long until a live member that is not Ready crosses the progress deadline, so
/// the sync comes back to report it on time.
pub fn until_deadline(set: &PetSet, members: &[&Pod], now: Timestamp) -> Option<std::time::Duration> {
    let deadline = time::seconds(set.spec.progress_deadline_seconds());
    members
        .iter()
        .filter(|p| !is_terminating(p))
        .filter_map(|p| not_ready_since(p))
        .map(|since| time::after(since, deadline))
        .filter(|due| *due > now)
        .min()
        .map(|due| time::until(due, now))
}

/// The longest-unready live member, when it has been so past the progress deadline.
fn stalled(set: &PetSet, members: &[&Pod], now: Timestamp) -> Option<(String, Timestamp)> {
    let deadline = time::seconds(set.spec.progress_deadline_seconds());
    members
        .iter()
        .filter(|p| !is_terminating(p))
        .filter_map(|p| not_ready_since(p).map(|since| (p.metadata.name.clone().unwrap_or_default(), since)))
        .filter(|(_, since)| time::after(*since, deadline) <= now)
        .min_by_key(|(_, since)| *since)
}

/// Sets a condition, keeping its transition time when its status does not change.
pub fn set_condition(status: &mut PetSetStatus, type_: &str, value: &str, reason: &str, message: &str, now: Timestamp) {
    let generation = status.observed_generation;
    let previous = status.conditions.iter().find(|c| c.type_ == type_);
    let last_transition_time = match previous {
        Some(c) if c.status == value => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: type_.into(),
        status: value.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time,
        observed_generation: generation,
    };
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => *c = condition,
        None => status.conditions.push(condition),
    }
}

/// Marks a PetSet that does not decode with a ReplicaFailure condition that says why,
/// so what users wait on (`kubectl wait`, Argo CD) tells them, not only an event. As
/// JSON, since it cannot be read as a PetSet; and only when the mark is not there yet,
/// since the write is itself a change the cache reports again. Returns whether it wrote.
pub async fn mark_undecodable(client: Client, namespace: &str, name: &str, message: &str) -> Result<bool, kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &ApiResource::erase::<PetSet>(&()));
    let current = api.get_status(name).await?;
    let conditions = current.data["status"]["conditions"].as_array();
    if conditions.is_some_and(|cs| cs.iter().any(|c| c["reason"] == UNDECODABLE && c["message"] == message)) {
        return Ok(false);
    }
    let condition = Condition {
        type_: REPLICA_FAILURE.into(),
        status: "True".into(),
        reason: UNDECODABLE.into(),
        message: message.into(),
        last_transition_time: Time(Timestamp::now()),
        observed_generation: None,
    };
    // The other conditions go: they describe a spec petset can no longer read.
    let patch = serde_json::json!({"status": {"conditions": [condition]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, petset, pod_with};

    fn conditions(status: &PetSetStatus) -> Vec<(String, String, String)> {
        status.conditions.iter().map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone())).collect()
    }

    fn member(name: &str, revision: &str, ready: bool, since: i64) -> Pod {
        let mut pod = pod_with(name, "Running", ready, Some(at(since)));
        pod.metadata.labels = Some([(REVISION_LABEL.to_string(), revision.to_string())].into());
        pod
    }

    #[test]
    fn counts_and_conditions_follow_the_pods() {
        let set = petset("web", 2);
        let selector = Selector::try_from(set.spec.selector.clone()).unwrap();
        let revisions = Revisions { current: "web-a".into(), update: "web-b".into(), ..Default::default() };
        let pods = [member("web-0", "web-a", true, 0), member("web-1", "web-b", false, 900)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let status = compute(
            &set,
            &refs,
            &revisions,
            &selector,
            SyncOutcome { waiting: Some("waiting for web-1"), ..Default::default() },
            at(1000),
        );
        assert_eq!(
            (status.replicas, status.ready_replicas, status.current_replicas, status.updated_replicas),
            (2, 1, 1, 1)
        );
        assert_eq!(status.current_revision.as_deref(), Some("web-a"), "moves only when the rollout completes");
        assert_eq!(
            conditions(&status),
            [
                ("Available".into(), "False".into(), "ReplicasUnavailable".into()),
                ("Progressing".into(), "True".into(), "RolloutInProgress".into())
            ]
        );
        // Past the progress deadline (600 s by default).
        let status = compute(&set, &refs, &revisions, &selector, SyncOutcome::default(), at(1600));
        assert_eq!(conditions(&status)[1].2, "ProgressDeadlineExceeded");

        let pods = [member("web-0", "web-b", true, 0), member("web-1", "web-b", true, 0)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let status = compute(&set, &refs, &revisions, &selector, SyncOutcome::default(), at(2000));
        assert_eq!(status.current_revision.as_deref(), Some("web-b"));
        assert_eq!(
            conditions(&status),
            [
                ("Available".into(), "True".into(), "AllReplicasAvailable".into()),
                ("Progressing".into(), "True".into(), ROLLOUT_COMPLETE.into())
            ]
        );
    }
}
