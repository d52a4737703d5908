//! The `PetSet` resource. Every field of apps/v1 `StatefulSetSpec` appears here with the
//! same name, default and meaning, so a StatefulSet manifest becomes a PetSet by changing
//! `apiVersion` and `kind` only. Defaults live in the schema (so `kubectl get -o yaml`
//! shows them, as it does for a StatefulSet) and again in the accessors below, which the
//! controller uses so that an object written before a default existed still works.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A set of pods with stable identities (name, hostname, DNS record and volumes),
/// created, updated and removed in ordinal order.
// Each `printcolumn(...)` repeats the keys `name`, `type_`, ...: clippy reads that as
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "petset.dev",
    version = "v1alpha1",
    kind = "PetSet",
    plural = "petsets",
    shortname = "pets",
    category = "all",
    namespaced,
    status = "PetSetStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A PetSet runs pods with stable ordinal identities and their own volumes, like an apps/v1 StatefulSet.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas", description = "Pods asked for"),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Pods Running and Ready"
    ),
    printcolumn(
        name = "Up-to-date",
        type_ = "integer",
        json_path = ".status.updatedReplicas",
        description = "Pods at the update revision"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas",
        description = "Pods Ready for minReadySeconds"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Leader", type_ = "string", json_path = ".status.leader.pod", priority = 1),
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.serviceName", priority = 1),
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.podManagementPolicy", priority = 1)
)]
#[serde(rename_all = "camelCase")]
pub struct PetSetSpec {
    /// The number of pods wanted. Ordinals run over [ordinals.start, ordinals.start + replicas).
    #[serde(default = "defaults::replicas", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,

    /// A label query over pods that must match the template's labels. Immutable.
    pub selector: LabelSelector,

    /// The pod each ordinal gets. `restartPolicy` must be `Always`. The only versioned
    /// field: a change here rolls through the set.
    #[serde(deserialize_with = "crate::quantities::template")]
    pub template: PodTemplateSpec,

    /// Claims each pod gets, one per template and ordinal, named
    /// `<claim>-<petset>-<ordinal>`. A claim replaces a pod volume of the same name.
    #[serde(default, deserialize_with = "crate::quantities::claim_templates", skip_serializing_if = "Vec::is_empty")]
    pub volume_claim_templates: Vec<PersistentVolumeClaim>,

    /// The governing (headless) Service: pods get `subdomain` = serviceName and the DNS
    /// name `<pod>.<serviceName>.<namespace>.svc.<cluster-domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,

    /// `OrderedReady` (default) creates pods one by one in ordinal order, each waiting
    /// for the previous to be Running and Ready, and removes them in reverse;
    /// `Parallel` creates and removes without waiting.
    #[serde(default = "defaults::pod_management_policy", skip_serializing_if = "Option::is_none")]
    pub pod_management_policy: Option<PodManagementPolicy>,

    /// How a template change reaches the pods.
    #[serde(default = "defaults::update_strategy", skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<PetSetUpdateStrategy>,

    /// How many old revisions of the template to keep for rollback.
    #[serde(default = "defaults::revision_history_limit", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub revision_history_limit: Option<i32>,

    /// Seconds a new pod must be Ready, with no container crashing, to count as Available.
    #[serde(default = "defaults::min_ready_seconds", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_ready_seconds: Option<i32>,

    /// What happens to the claims when the set is deleted or scaled down.
    #[serde(default = "defaults::retention_policy", skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_retention_policy: Option<PersistentVolumeClaimRetentionPolicy>,

    /// Where the ordinals start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordinals: Option<PetSetOrdinals>,

    /// petset extension, off when unset: what the pods need to form a cluster and agree
    /// on a leader (identity environment, the peers file, the governing Service, a
    /// leader).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clustering: Option<Clustering>,

    /// petset extension: seconds a pod the set waits for may stay not Ready before the
    /// `Progressing` condition turns False with reason `ProgressDeadlineExceeded`
    /// (600 when unset, as for Deployments). It only reports; it changes no behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: Option<i32>,
}

/// Clustering support. Present: every container and init container gets the identity
/// environment (`PETSET_*`) and the peers file at `/etc/petset/peers`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Clustering {
    /// Create the headless governing Service named by `serviceName` when it does not
    /// exist (clusterIP None, publishNotReadyAddresses, the set's selector) and keep it
    /// so. A Service someone else created is never touched.
    #[serde(default)]
    pub manage_service: bool,

    /// Who leads, if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderSpec>,

    /// The cluster's DNS domain, for the pods' fully qualified names.
    #[serde(default = "defaults::cluster_domain")]
    pub cluster_domain: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaderSpec {
    /// `OperatorAssigned`: the operator picks a Ready member and keeps it while it stays
    /// Ready. `AppElected`: the pods elect themselves through the Lease named after the
    /// set, and the operator mirrors its holder.
    pub policy: LeaderPolicy,

    /// Maintain a Service `<set>-leader` that selects the leader pod only.
    #[serde(default)]
    pub service: bool,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum LeaderPolicy {
    #[default]
    OperatorAssigned,
    AppElected,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum PodManagementPolicy {
    #[default]
    OrderedReady,
    Parallel,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PetSetUpdateStrategy {
    /// `RollingUpdate` (default) replaces pods from the highest ordinal down;
    /// `OnDelete` gives a pod the new template only when someone deletes it.
    #[serde(default, rename = "type")]
    pub type_: UpdateStrategyType,

    /// Used when `type` is `RollingUpdate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum UpdateStrategyType {
    #[default]
    RollingUpdate,
    OnDelete,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdate {
    /// Ordinals below `ordinals.start + partition` keep the current revision (canary
    /// and phased roll-outs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub partition: Option<i32>,

    /// How many pods may be unavailable during the update: a number, or a percentage of
    /// `replicas` rounded down, and at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,

    /// petset extension, off when unset. A pod that is not at the update revision and
    /// has not been Ready for this many seconds is replaced by the rollout instead of
    /// blocking it. With OrderedReady, upstream StatefulSet waits forever for such a pod
    /// even after a bad template is fixed or reverted (kubernetes #67250), until
    /// someone deletes it by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replace_unhealthy_after_seconds: Option<i32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimRetentionPolicy {
    /// `Retain` (default) or `Delete` the claims when the PetSet is deleted.
    #[serde(default)]
    pub when_deleted: RetentionPolicyType,
    /// `Retain` (default) or `Delete` the claims of the pods a scale-down removes.
    #[serde(default)]
    pub when_scaled: RetentionPolicyType,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum RetentionPolicyType {
    #[default]
    Retain,
    Delete,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PetSetOrdinals {
    /// The first ordinal. Changing it renames the pods by removing the ones out of range
    /// and creating the new ones.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub start: i32,
}

/// Everything apps/v1 `StatefulSetStatus` reports, plus `selector` for `/scale`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PetSetStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that exist, terminating ones included.
    #[serde(default)]
    pub replicas: i32,
    /// Pods Running and Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods Ready for at least minReadySeconds.
    #[serde(default)]
    pub available_replicas: i32,
    /// Pods at `currentRevision`.
    #[serde(default)]
    pub current_replicas: i32,
    /// Pods at `updateRevision`.
    #[serde(default)]
    pub updated_replicas: i32,
    /// The revision of the pods that the roll-out started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// The revision of the pods that the template now asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// Bumped when a revision name collides; part of the revision hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
    /// The pod selector in string form, for the scale subresource and autoscalers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The latest observations of the set's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// When every replica was first Ready at once: from then on, new pods join the
    /// cluster instead of founding it (`PETSET_BOOTSTRAP=false`). Set with clustering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formed_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,

    /// The current leader, with a leader policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaderStatus {
    /// The leader pod, absent while there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Incremented at every change of leader.
    #[serde(default)]
    pub epoch: i64,
}

/// The defaults of apps/v1 StatefulSet, as serde and the schema see them.
mod defaults {
    use super::*;

    pub fn replicas() -> Option<i32> {
        Some(1)
    }
    pub fn pod_management_policy() -> Option<PodManagementPolicy> {
        Some(PodManagementPolicy::OrderedReady)
    }
    pub fn update_strategy() -> Option<PetSetUpdateStrategy> {
        Some(PetSetUpdateStrategy {
            type_: UpdateStrategyType::RollingUpdate,
            rolling_update: Some(RollingUpdate { partition: Some(0), ..Default::default() }),
        })
    }
    pub fn revision_history_limit() -> Option<i32> {
        Some(10)
    }
    pub fn min_ready_seconds() -> Option<i32> {
        Some(0)
    }
    pub fn cluster_domain() -> String {
        "cluster.local".into()
    }
    pub fn retention_policy() -> Option<PersistentVolumeClaimRetentionPolicy> {
        Some(PersistentVolumeClaimRetentionPolicy::default())
    }
}

impl PetSetSpec {
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(1).max(0)
    }

    pub fn start_ordinal(&self) -> i32 {
        self.ordinals.as_ref().map_or(0, |o| o.start.max(0))
    }

    pub fn pod_management_policy(&self) -> PodManagementPolicy {
        self.pod_management_policy.unwrap_or_default()
    }

    pub fn update_strategy_type(&self) -> UpdateStrategyType {
        self.update_strategy.as_ref().map(|s| s.type_).unwrap_or_default()
    }

    pub fn partition(&self) -> i32 {
        self.rolling_update().and_then(|r| r.partition).unwrap_or(0).max(0)
    }

    pub fn rolling_update(&self) -> Option<&RollingUpdate> {
        self.update_strategy.as_ref().and_then(|s| s.rolling_update.as_ref())
    }

    pub fn revision_history_limit(&self) -> i32 {
        self.revision_history_limit.unwrap_or(10).max(0)
    }

    pub fn min_ready_seconds(&self) -> i32 {
        self.min_ready_seconds.unwrap_or(0).max(0)
    }

    pub fn progress_deadline_seconds(&self) -> i32 {
        self.progress_deadline_seconds.unwrap_or(600).max(1)
    }

    /// Only for RollingUpdate: under OnDelete a person chooses when pods go.
    pub fn replace_unhealthy_after_seconds(&self) -> Option<i32> {
        if self.update_strategy_type() != UpdateStrategyType::RollingUpdate {
            return None;
        }
        self.rolling_update().and_then(|r| r.replace_unhealthy_after_seconds).filter(|s| *s > 0)
    }

    /// `maxUnavailable` resolved against `replicas` (percentages round down), at least
    /// 1; None when unset, which keeps upstream's classic one-at-a-time update.
    pub fn max_unavailable(&self) -> Option<i32> {
        let value = self.rolling_update()?.max_unavailable.as_ref()?;
        let n = match value {
            IntOrString::Int(n) => *n,
            IntOrString::String(s) => {
                // Admission bounds it to 100%; one stored before that rule is clamped.
                let percent: i64 = s.trim_end_matches('%').parse::<i64>().unwrap_or(0).clamp(0, 100);
                (percent * i64::from(self.replicas()) / 100) as i32
            }
        };
        Some(n.max(1))
    }

    pub fn retention_policy(&self) -> PersistentVolumeClaimRetentionPolicy {
        self.persistent_volume_claim_retention_policy.clone().unwrap_or_default()
    }
}
