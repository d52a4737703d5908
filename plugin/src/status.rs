//! `kubectl petset status NAME`: the set, each member (ordinal, pod, readiness,
//! revision, role, node, claims with capacity and phase), the leader, the conditions and
//! the last events, on one screen a person reads in five seconds; `-o json|yaml` gives
//! the same [`Snapshot`] to scripts.

use std::collections::BTreeMap;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::{Api, Client, ResourceExt, api::ListParams, core::Selector};
use petset_crd::{PetSet, UpdateStrategyType};
use petset_operator::{cluster::ROLE_LABEL, health, identity};
use serde::Serialize;

use crate::{age, table::table};

/// Members shown; a larger set's listing ends with how many more there are.
const MEMBERS_SHOWN: usize = 50;
/// Events shown, the most recent.
const EVENTS_SHOWN: usize = 5;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub namespace: String,
    pub name: String,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub updated_replicas: i32,
    pub current_revision: Option<String>,
    pub update_revision: Option<String>,
    pub pod_management_policy: String,
    pub update_strategy: String,
    pub leader: Option<String>,
    pub leader_epoch: Option<i64>,
    pub members: Vec<Member>,
    /// Members left out of `members` to keep the listing readable.
    pub more_members: usize,
    pub conditions: Vec<ConditionRow>,
    pub events: Vec<EventRow>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub ordinal: i32,
    /// Absent while the pod does not exist.
    pub pod: Option<String>,
    pub status: String,
    pub ready: bool,
    pub revision: Option<String>,
    pub role: Option<String>,
    pub node: Option<String>,
    pub age: Option<String>,
    pub claims: Vec<ClaimRow>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRow {
    pub name: String,
    /// Absent while the claim does not exist.
    pub phase: Option<String>,
    pub capacity: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ConditionRow {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct EventRow {
    pub age: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
}

/// Reads the set, its pods, claims and events.
pub async fn gather(client: &Client, namespace: &str, name: &str) -> anyhow::Result<Snapshot> {
    let set = Api::<PetSet>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .with_context(|| format!("reading PetSet {namespace}/{name}"))?;
    let selector: Selector = set.spec.selector.clone().try_into().context("the set's selector")?;
    let uid = set.uid();
    let owned = |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        refs.iter().any(|r| r.controller == Some(true) && Some(&r.uid) == uid.as_ref())
    };
    let pods: Vec<Pod> = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels_from(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| owned(p.owner_references()))
        .collect();
    let claims: BTreeMap<String, PersistentVolumeClaim> = if set.spec.volume_claim_templates.is_empty() {
        BTreeMap::new()
    } else {
        let all =
            Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace).list(&ListParams::default()).await?;
        all.items.into_iter().map(|c| (c.name_any(), c)).collect()
    };
    let fields = format!("involvedObject.kind=PetSet,involvedObject.name={name}");
    let events =
        Api::<Event>::namespaced(client.clone(), namespace).list(&ListParams::default().fields(&fields)).await?;
    Ok(snapshot(&set, &pods, &claims, events.items, jiff::Timestamp::now()))
}

/// The snapshot of what was read: pure, so it is tested without a server.
pub fn snapshot(
    set: &PetSet,
    pods: &[Pod],
    claims: &BTreeMap<String, PersistentVolumeClaim>,
    mut events: Vec<Event>,
    now: jiff::Timestamp,
) -> Snapshot {
    let name = set.name_any();
    let status = set.status.clone().unwrap_or_default();
    let by_ordinal: BTreeMap<i32, &Pod> =
        pods.iter().filter_map(|p| Some((identity::ordinal_of(&name, &p.name_any())?, p))).collect();
    let start = set.spec.start_ordinal();
    let wanted = start..start.saturating_add(set.spec.replicas());
    // Every ordinal wanted, and every pod that exists outside that range (scaling down).
    let mut ordinals: Vec<i32> = by_ordinal.keys().copied().filter(|o| !wanted.contains(o)).collect();
    ordinals.extend(wanted.clone().take(MEMBERS_SHOWN + 1));
    ordinals.sort_unstable();
    let total = wanted.len() + ordinals.iter().filter(|o| !wanted.contains(o)).count();
    let members: Vec<Member> = ordinals
        .iter()
        .take(MEMBERS_SHOWN)
        .map(|&o| member(set, o, by_ordinal.get(&o).copied(), claims, now))
        .collect();
    events.sort_by_key(|e| std::cmp::Reverse(event_time(e).map(|t| t.as_second())));
    let update_strategy = match set.spec.update_strategy_type() {
        UpdateStrategyType::RollingUpdate => format!("RollingUpdate, partition {}", set.spec.partition()),
        other => format!("{other:?}"),
    };
    Snapshot {
        namespace: set.namespace().unwrap_or_default(),
        replicas: set.spec.replicas(),
        ready_replicas: status.ready_replicas,
        updated_replicas: status.updated_replicas,
        current_revision: status.current_revision,
        update_revision: status.update_revision,
        pod_management_policy: format!("{:?}", set.spec.pod_management_policy()),
        update_strategy,
        leader: status.leader.as_ref().and_then(|l| l.pod.clone()),
        leader_epoch: status.leader.as_ref().map(|l| l.epoch),
        more_members: total.saturating_sub(members.len()),
        members,
        conditions: status
            .conditions
            .iter()
            .map(|c| ConditionRow {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
            .collect(),
        events: events
            .iter()
            .take(EVENTS_SHOWN)
            .map(|e| EventRow {
                age: event_time(e).map(|t| age(t, now)).unwrap_or_default(),
                type_: e.type_.clone().unwrap_or_default(),
                reason: e.reason.clone().unwrap_or_default(),
                message: e.message.clone().unwrap_or_default(),
            })
            .collect(),
        name,
    }
}

fn member(
    set: &PetSet,
    ordinal: i32,
    pod: Option<&Pod>,
    claims: &BTreeMap<String, PersistentVolumeClaim>,
    now: jiff::Timestamp,
) -> Member {
    let name = set.name_any();
    let claims = set
        .spec
        .volume_claim_templates
        .iter()
        .map(|t| {
            let claim_name = identity::claim_name(&t.name_any(), &name, ordinal);
            let claim = claims.get(&claim_name);
            let status = claim.and_then(|c| c.status.as_ref());
            ClaimRow {
                phase: claim.map(|_| status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into())),
                capacity: status.and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage")).map(|q| q.0.clone()),
                name: claim_name,
            }
        })
        .collect();
    let Some(pod) = pod else {
        return Member {
            ordinal,
            pod: None,
            status: "Missing".into(),
            ready: false,
            revision: None,
            role: None,
            node: None,
            age: None,
            claims,
        };
    };
    let label = |key: &str| pod.labels().get(key).cloned();
    let status = if health::is_terminating(pod) { "Terminating" } else { health::phase(pod) };
    Member {
        ordinal,
        pod: Some(pod.name_any()),
        status: if status.is_empty() { "Pending".into() } else { status.into() },
        ready: health::is_running_and_ready(pod),
        revision: label(identity::REVISION_LABEL),
        role: label(ROLE_LABEL),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        age: pod.creation_timestamp().map(|t| age(t.0, now)),
        claims,
    }
}

fn event_time(event: &Event) -> Option<jiff::Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The snapshot as text `width` columns wide.
pub fn render(s: &Snapshot, width: usize) -> String {
    let dash = || "-".to_string();
    let mut out = format!(
        "PetSet {}/{}: {}/{} ready, {} updated\n",
        s.namespace, s.name, s.ready_replicas, s.replicas, s.updated_replicas
    );
    let revision = match (&s.current_revision, &s.update_revision) {
        (Some(c), Some(u)) if c != u => format!("{c} -> {u}"),
        (_, Some(u)) => u.clone(),
        (Some(c), None) => c.clone(),
        (None, None) => dash(),
    };
    out.push_str(&format!(
        "Revision: {revision}   Pods: {}   Update: {}\n",
        s.pod_management_policy, s.update_strategy
    ));
    if let Some(leader) = &s.leader {
        out.push_str(&format!("Leader: {leader} (epoch {})\n", s.leader_epoch.unwrap_or_default()));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = s
        .members
        .iter()
        .map(|m| {
            let claims = m
                .claims
                .iter()
                .map(|c| match &c.phase {
                    Some(phase) => format!("{} {} {}", c.name, c.capacity.as_deref().unwrap_or("-"), phase),
                    None => format!("{} (missing)", c.name),
                })
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                m.ordinal.to_string(),
                m.pod.clone().unwrap_or_else(dash),
                m.status.clone(),
                if m.ready { "true".into() } else { "false".into() },
                m.revision.clone().unwrap_or_else(dash),
                m.role.clone().unwrap_or_else(dash),
                m.node.clone().unwrap_or_else(dash),
                m.age.clone().unwrap_or_else(dash),
                if claims.is_empty() { dash() } else { claims },
            ]
        })
        .collect();
    out.push_str(&table(
        &["ORDINAL", "POD", "STATUS", "READY", "REVISION", "ROLE", "NODE", "AGE", "CLAIMS"],
        &rows,
        width,
    ));
    if s.more_members > 0 {
        out.push_str(&format!("... and {} more members\n", s.more_members));
    }
    if !s.conditions.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = s
            .conditions
            .iter()
            .map(|c| vec![c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone()])
            .collect();
        out.push_str(&table(&["CONDITION", "STATUS", "REASON", "MESSAGE"], &rows, width));
    }
    out.push('\n');
    if s.events.is_empty() {
        out.push_str("No events.\n");
    } else {
        let rows: Vec<Vec<String>> = s
            .events
            .iter()
            .map(|e| vec![e.age.clone(), e.type_.clone(), e.reason.clone(), e.message.clone()])
            .collect();
        out.push_str(&table(&["AGE", "TYPE", "REASON", "MESSAGE"], &rows, width));
    }
    out
}
