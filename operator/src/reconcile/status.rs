//! The PetSet's status, computed purely from its members (upstream's sync step 9). The
//! caller writes it only when it differs from what is stored, so a sync that changes
//! nothing writes nothing and triggers nothing.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::core::Selector;
use petset_crd::{PetSet, PetSetStatus, UpdateStrategyType};

use super::plan::Revisions;
use crate::health::{is_running_and_available, is_running_and_ready, is_terminating, phase};
use crate::identity::REVISION_LABEL;

/// `ReplicaFailure`: the API server refused a pod or claim the spec renders (the same
/// condition type Deployments use). Set with the server's message, which names the field.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// A write the API server refused because of the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

pub fn compute(
    set: &PetSet,
    members: &[&Pod],
    revisions: &Revisions,
    selector: &Selector,
    rejection: Option<&Rejection>,
    now: Timestamp,
) -> PetSetStatus {
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
    status
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
