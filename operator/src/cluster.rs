//! What the pods of a clustered PetSet get (`spec.clustering`), as pure functions: the
//! identity environment, the peers file, the Services, the leader choice.
//!
//! The contract a pod can rely on, from its first init container on:
//!
//! | variable | value |
//! |---|---|
//! | `PETSET_NAME` | the PetSet's name |
//! | `PETSET_NAMESPACE` | its namespace |
//! | `PETSET_ORDINAL` | this pod's ordinal |
//! | `PETSET_SERVICE` | the governing Service |
//! | `PETSET_FQDN` | this pod's stable DNS name, `<pod>.<service>.<namespace>.svc.<domain>` |
//! | `PETSET_SEED_FQDN` | the DNS name of the first ordinal's pod |
//! | `PETSET_BOOTSTRAP` | `true` while the set has never had all its replicas Ready (found the cluster), `false` after (join it) |
//! | `PETSET_PEERS_FILE` | `/etc/petset/peers`, the member list the operator keeps current |
//!
//! The peers file has one line per member of the spec, lowest ordinal first:
//! `<ordinal> <fqdn> <ready|notready|absent> <leader|follower|->`.
//!
//! That the cluster was formed is kept twice: in `status.formedAt`, and in the peers
//! ConfigMap's `petset.dev/formed-at` annotation. The status goes with the PetSet (an
//! orphan-delete and re-create, a restore that drops status); the ConfigMap stays
//! beside the members it describes (orphaned with them, restored with the namespace),
//! and a re-created set adopts it, with the proof that its members must join, never
//! found a second cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, EnvVar, Pod, Service, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt, api::ObjectMeta};
use petset_crd::{Clustering, LeaderPolicy, PetSet};

use crate::health::is_healthy;
use crate::identity::{self, PART_OF_LABEL, REVISION_LABEL};

pub const ROLE_LABEL: &str = "petset.dev/role";
pub const LEADER: &str = "leader";
pub const FOLLOWER: &str = "follower";
/// On the peers ConfigMap: when the cluster was formed (see the module's notes).
pub const FORMED_AT_ANNOTATION: &str = "petset.dev/formed-at";
pub const PEERS_DIR: &str = "/etc/petset";
pub const PEERS_KEY: &str = "peers";
const PEERS_VOLUME: &str = "petset-peers";

pub fn peers_config_map_name(set: &str) -> String {
    format!("{set}-peers")
}

pub fn leader_service_name(set: &str) -> String {
    format!("{set}-leader")
}

fn service(set: &PetSet) -> String {
    set.spec.service_name.clone().unwrap_or_default()
}

pub fn fqdn(set: &PetSet, clustering: &Clustering, ordinal: i32) -> String {
    format!(
        "{}.{}.{}.svc.{}",
        identity::pod_name(&set.name_any(), ordinal),
        service(set),
        set.namespace().unwrap_or_default(),
        clustering.cluster_domain
    )
}

/// Gives every container and init container of a new pod the identity environment and
/// the peers file; `formed`: the cluster was formed, so the pod joins it.
pub fn inject(set: &PetSet, clustering: &Clustering, pod: &mut Pod, ordinal: i32, formed: bool) {
    let bootstrap = !formed;
    let start = set.spec.start_ordinal();
    let env = [
        ("PETSET_NAME", set.name_any()),
        ("PETSET_NAMESPACE", set.namespace().unwrap_or_default()),
        ("PETSET_ORDINAL", ordinal.to_string()),
        ("PETSET_SERVICE", service(set)),
        ("PETSET_FQDN", fqdn(set, clustering, ordinal)),
        ("PETSET_SEED_FQDN", fqdn(set, clustering, start)),
        ("PETSET_BOOTSTRAP", bootstrap.to_string()),
        ("PETSET_PEERS_FILE", format!("{PEERS_DIR}/{PEERS_KEY}")),
    ];
    let Some(spec) = pod.spec.as_mut() else { return };
    let containers = spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut());
    for container in containers {
        let vars = container.env.get_or_insert_with(Vec::new);
        vars.retain(|v| !env.iter().any(|(name, _)| v.name == *name));
        vars.extend(env.iter().map(|(name, value)| EnvVar {
            name: name.to_string(),
            value: Some(value.clone()),
            value_from: None,
        }));
        let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
        mounts.retain(|m| m.name != PEERS_VOLUME);
        mounts.push(VolumeMount {
            name: PEERS_VOLUME.into(),
            mount_path: PEERS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.retain(|v| v.name != PEERS_VOLUME);
    volumes.push(Volume {
        name: PEERS_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: peers_config_map_name(&set.name_any()),
            // The pod starts even before the operator has written the file.
            optional: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    });
    if set.spec.clustering.as_ref().is_some_and(|c| c.leader.is_some()) {
        pod.metadata.labels.get_or_insert_with(Default::default).insert(ROLE_LABEL.into(), FOLLOWER.into());
    }
}

/// When the cluster was formed, as far as anything kept says: the status, else the
/// peers ConfigMap this set has or may adopt.
pub fn formed_at(set: &PetSet, peers: Option<&ConfigMap>) -> Option<Time> {
    let recorded = set.status.as_ref().and_then(|s| s.formed_at.clone());
    recorded.or_else(|| {
        let peers = peers.filter(|cm| ours_or_adoptable(*cm, set))?;
        let value = peers.annotations().get(FORMED_AT_ANNOTATION)?;
        value.parse().ok().map(Time)
    })
}

/// Whether petset may write `obj` for `set`: the set controls it, or it has no
/// controller and is labelled as made for this set (left by a set of this name that
/// was deleted with `--cascade=orphan`). Anything else is someone else's.
pub fn ours_or_adoptable(obj: &impl Resource, set: &PetSet) -> bool {
    match identity::controller_of(obj) {
        Some(_) => identity::controlled_by(obj, set),
        None => obj.meta().labels.as_ref().and_then(|l| l.get(PART_OF_LABEL)) == set.metadata.name.as_ref(),
    }
}

fn owned_meta(set: &PetSet, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: set.namespace(),
        labels: Some([(PART_OF_LABEL.to_string(), set.name_any())].into()),
        owner_references: Some(vec![identity::controller_ref(set)]),
        ..Default::default()
    }
}

/// The peers file's text.
pub fn peers_text(set: &PetSet, clustering: &Clustering, members: &[&Pod], leader: Option<&str>) -> String {
    let name = set.name_any();
    let by_ordinal: BTreeMap<i32, &&Pod> =
        members.iter().filter_map(|p| identity::ordinal_of(&name, &p.name_any()).map(|o| (o, p))).collect();
    let start = set.spec.start_ordinal();
    let mut text = String::new();
    for ordinal in start..start.saturating_add(set.spec.replicas()) {
        let pod_name = identity::pod_name(&name, ordinal);
        let state = match by_ordinal.get(&ordinal) {
            Some(p) if is_healthy(p) => "ready",
            Some(_) => "notready",
            None => "absent",
        };
        let role = match (clustering.leader.is_some(), leader) {
            (false, _) => "-",
            (true, Some(l)) if l == pod_name => LEADER,
            (true, _) => FOLLOWER,
        };
        text.push_str(&format!("{ordinal} {} {state} {role}\n", fqdn(set, clustering, ordinal)));
    }
    text
}

pub fn peers_config_map(set: &PetSet, text: String, formed_at: Option<&Time>) -> ConfigMap {
    let mut metadata = owned_meta(set, peers_config_map_name(&set.name_any()));
    metadata.annotations = formed_at.map(|t| [(FORMED_AT_ANNOTATION.to_string(), t.0.to_string())].into());
    ConfigMap { metadata, data: Some([(PEERS_KEY.to_string(), text)].into()), ..Default::default() }
}

/// The headless governing Service: peers find each other before they are Ready.
pub fn governing_service(set: &PetSet) -> Service {
    Service {
        metadata: owned_meta(set, service(set)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            // A selector of only `matchExpressions` has no equality form: the pods'
            // set label stands in.
            selector: set.spec.selector.match_labels.clone().filter(|l| !l.is_empty()).or_else(|| Some(set_label(set))),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The label every pod of `set` carries, as a selector.
fn set_label(set: &PetSet) -> BTreeMap<String, String> {
    [(PART_OF_LABEL.to_string(), set.name_any())].into()
}

/// `<set>-leader`: selects the leader pod only; ports follow the template's. By the set
/// label, not the set's selector: other sets' leaders may match that one.
pub fn leader_service(set: &PetSet) -> Service {
    let mut selector = set_label(set);
    selector.insert(ROLE_LABEL.into(), LEADER.into());
    let ports: Vec<_> = set
        .spec
        .template
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| k8s_openapi::api::core::v1::ServicePort {
            name: p.name.clone(),
            port: p.container_port,
            protocol: p.protocol.clone(),
            target_port: Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p.container_port)),
            ..Default::default()
        })
        .collect();
    Service {
        metadata: owned_meta(set, leader_service_name(&set.name_any())),
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: (!ports.is_empty()).then_some(ports),
            cluster_ip: ports_or_headless(set),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A Service without ports must be headless.
fn ports_or_headless(set: &PetSet) -> Option<String> {
    let has_ports = set
        .spec
        .template
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .any(|c| c.ports.as_ref().is_some_and(|p| !p.is_empty()));
    (!has_ports).then(|| "None".to_string())
}

/// The Lease the pods of an AppElected set compete for, named after the set.
pub fn election_lease(set: &PetSet) -> Lease {
    Lease { metadata: owned_meta(set, set.name_any()), spec: None }
}

/// Who leads after this sync, and the label changes that get there.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Leadership {
    pub leader: Option<String>,
    /// Pods whose role label must change, demotions first: never two leaders at once.
    pub demote: Vec<String>,
    pub promote: Option<String>,
    /// The leader changed: (from, to), for an event.
    pub moved: Option<(Option<String>, Option<String>)>,
}

/// Chooses the leader (upstream has no such thing; this is petset's).
///
/// OperatorAssigned: the recorded leader stays while it is a healthy member (sticky),
/// except when a rolling update is about to replace it and an updated healthy follower
/// can take over (leader last, switchover first). Otherwise the lowest healthy member
/// at the update revision, else the lowest healthy member.
///
/// AppElected: the Lease holder, while the Lease is unexpired and held by a member.
pub fn leadership(
    set: &PetSet,
    members: &[&Pod],
    update_revision: &str,
    lease: Option<&Lease>,
    now: Timestamp,
) -> Option<Leadership> {
    let policy = set.spec.clustering.as_ref()?.leader.as_ref()?.policy;
    let name = set.name_any();
    let start = set.spec.start_ordinal();
    let end = start.saturating_add(set.spec.replicas());
    // Lowest ordinal first: among equals, the lowest leads.
    let mut in_range: Vec<(i32, &Pod)> = members
        .iter()
        .filter_map(|p| {
            identity::ordinal_of(&name, &p.name_any()).filter(|o| (start..end).contains(o)).map(|o| (o, *p))
        })
        .collect();
    in_range.sort_by_key(|(o, _)| *o);
    let in_range: Vec<&Pod> = in_range.into_iter().map(|(_, p)| p).collect();
    let healthy = |p: &&Pod| is_healthy(p);
    let updated = |p: &&Pod| p.labels().get(REVISION_LABEL).map(String::as_str) == Some(update_revision);
    let recorded = set.status.as_ref().and_then(|s| s.leader.as_ref()).and_then(|l| l.pod.clone());

    let leader = match policy {
        LeaderPolicy::AppElected => lease_holder(lease, now).filter(|h| in_range.iter().any(|p| p.name_any() == *h)),
        LeaderPolicy::OperatorAssigned => {
            let current =
                recorded.as_ref().and_then(|r| in_range.iter().copied().find(|p| p.name_any() == *r)).filter(healthy);
            let successor = in_range
                .iter()
                .copied()
                .filter(healthy)
                .filter(|p| updated(p))
                .find(|p| Some(p.name_any()) != recorded);
            match current {
                Some(c) if !updated(&c) && only_outdated(set, &in_range, c, update_revision) && successor.is_some() => {
                    successor.map(|p| p.name_any())
                }
                Some(c) => Some(c.name_any()),
                None => in_range
                    .iter()
                    .copied()
                    .filter(healthy)
                    .find(updated)
                    .or_else(|| in_range.iter().copied().find(healthy))
                    .map(|p| p.name_any()),
            }
        }
    };

    let mut plan = Leadership { leader: leader.clone(), ..Default::default() };
    for pod in members {
        let role = pod.labels().get(ROLE_LABEL).map(String::as_str);
        let is_leader = leader.as_deref() == Some(pod.name_any().as_str());
        if role == Some(LEADER) && !is_leader {
            plan.demote.push(pod.name_any());
        }
        if is_leader && role != Some(LEADER) {
            plan.promote = Some(pod.name_any());
        }
    }
    if recorded != leader {
        plan.moved = Some((recorded, leader));
    }
    Some(plan)
}

/// The leader is the one pod a RollingUpdate still has to replace.
fn only_outdated(set: &PetSet, in_range: &[&Pod], leader: &Pod, update_revision: &str) -> bool {
    if set.spec.update_strategy_type() != petset_crd::UpdateStrategyType::RollingUpdate {
        return false;
    }
    let floor = set.spec.start_ordinal().saturating_add(set.spec.partition());
    let name = set.name_any();
    let leader_ordinal = identity::ordinal_of(&name, &leader.name_any()).unwrap_or(i32::MIN);
    leader_ordinal >= floor
        && in_range.iter().all(|p| {
            p.name_any() == leader.name_any()
                || identity::ordinal_of(&name, &p.name_any()).is_some_and(|o| o < floor)
                || p.labels().get(REVISION_LABEL).map(String::as_str) == Some(update_revision)
        })
}

/// The holder of an unexpired Lease.
pub fn lease_holder(lease: Option<&Lease>, now: Timestamp) -> Option<String> {
    let spec = lease?.spec.as_ref()?;
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    (lease_expiry(lease)? > now).then_some(holder)
}

/// When the Lease's hold runs out, to come back and take the label away on time.
pub fn lease_expiry(lease: Option<&Lease>) -> Option<Timestamp> {
    let spec = lease?.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    Some(crate::time::after(renewed, crate::time::seconds(spec.lease_duration_seconds.unwrap_or(0))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, petset, pod_with};
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use petset_crd::{LeaderSpec, LeaderStatus, PetSetStatus};

    fn clustered(policy: LeaderPolicy) -> PetSet {
        let mut set = petset("web", 3);
        set.spec.clustering = Some(Clustering {
            manage_service: true,
            leader: Some(LeaderSpec { policy, service: true }),
            cluster_domain: "cluster.local".into(),
        });
        set
    }

    fn member(name: &str, ready: bool, revision: &str, role: Option<&str>) -> Pod {
        let mut pod = pod_with(name, "Running", ready, Some(at(0)));
        let mut labels = BTreeMap::from([(REVISION_LABEL.to_string(), revision.to_string())]);
        if let Some(r) = role {
            labels.insert(ROLE_LABEL.into(), r.into());
        }
        pod.metadata.labels = Some(labels);
        pod
    }

    fn led_by(mut set: PetSet, pod: &str) -> PetSet {
        set.status =
            Some(PetSetStatus { leader: Some(LeaderStatus { pod: Some(pod.into()), epoch: 1 }), ..Default::default() });
        set
    }

    #[test]
    fn env_and_peers_file_are_injected_into_every_container() {
        let mut set = clustered(LeaderPolicy::OperatorAssigned);
        set.spec.ordinals = Some(petset_crd::PetSetOrdinals { start: 5 });
        set.spec.template.spec.as_mut().unwrap().init_containers =
            Some(vec![k8s_openapi::api::core::v1::Container { name: "init".into(), ..Default::default() }]);
        let mut pod = identity::new_pod(&set, 6, "r", &set.spec.template);
        inject(&set, set.spec.clustering.as_ref().unwrap(), &mut pod, 6, false);
        let spec = pod.spec.unwrap();
        for c in spec.init_containers.iter().flatten().chain(spec.containers.iter()) {
            let env: BTreeMap<_, _> =
                c.env.iter().flatten().map(|e| (e.name.as_str(), e.value.clone().unwrap())).collect();
            assert_eq!(env["PETSET_ORDINAL"], "6");
            assert_eq!(env["PETSET_FQDN"], "web-6.web.ns.svc.cluster.local");
            assert_eq!(env["PETSET_SEED_FQDN"], "web-5.web.ns.svc.cluster.local");
            assert_eq!(env["PETSET_BOOTSTRAP"], "true");
            assert!(c.volume_mounts.iter().flatten().any(|m| m.mount_path == PEERS_DIR));
        }
        assert_eq!(pod.metadata.labels.unwrap()[ROLE_LABEL], FOLLOWER);
    }

    #[test]
    fn operator_assigned_leadership_is_sticky_and_moves_when_unhealthy() {
        let set = led_by(clustered(LeaderPolicy::OperatorAssigned), "web-1");
        let pods = [
            member("web-0", true, "r", None),
            member("web-1", true, "r", Some(LEADER)),
            member("web-2", true, "r", None),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let l = leadership(&set, &refs, "r", None, at(10)).unwrap();
        assert_eq!(
            (l.leader.as_deref(), l.demote.len(), l.promote.as_deref(), &l.moved),
            (Some("web-1"), 0, None, &None)
        );

        // Members come in any order; the lowest healthy ordinal takes over.
        let pods = [
            member("web-2", true, "r", None),
            member("web-1", false, "r", Some(LEADER)),
            member("web-0", true, "r", None),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let l = leadership(&set, &refs, "r", None, at(10)).unwrap();
        assert_eq!(l.leader.as_deref(), Some("web-0"));
        assert_eq!(l.demote, ["web-1"]);
        assert_eq!(l.promote.as_deref(), Some("web-0"));
    }

    #[test]
    fn leadership_moves_to_an_updated_follower_before_the_leader_is_replaced() {
        let set = led_by(clustered(LeaderPolicy::OperatorAssigned), "web-0");
        let pods = [
            member("web-0", true, "old", Some(LEADER)),
            member("web-1", true, "new", None),
            member("web-2", true, "new", None),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let l = leadership(&set, &refs, "new", None, at(10)).unwrap();
        assert_eq!(l.leader.as_deref(), Some("web-1"));
        // While other pods still wait for the update, the leader stays.
        let pods = [
            member("web-0", true, "old", Some(LEADER)),
            member("web-1", true, "old", None),
            member("web-2", true, "new", None),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(leadership(&set, &refs, "new", None, at(10)).unwrap().leader.as_deref(), Some("web-0"));
    }

    #[test]
    fn app_elected_mirrors_a_valid_lease_holder_only() {
        let set = clustered(LeaderPolicy::AppElected);
        let pods = [member("web-0", true, "r", None), member("web-1", true, "r", None)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let lease = |holder: &str, renewed: i64| Lease {
            metadata: Default::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(at(renewed))),
                lease_duration_seconds: Some(10),
                ..Default::default()
            }),
        };
        let valid = lease("web-1", 100);
        assert_eq!(leadership(&set, &refs, "r", Some(&valid), at(105)).unwrap().leader.as_deref(), Some("web-1"));
        assert_eq!(leadership(&set, &refs, "r", Some(&valid), at(111)).unwrap().leader, None, "expired");
        let stranger = lease("someone-else", 100);
        assert_eq!(leadership(&set, &refs, "r", Some(&stranger), at(105)).unwrap().leader, None, "not a member");
    }

    #[test]
    fn a_lease_renewed_at_the_end_of_time_does_not_panic() {
        let set = clustered(LeaderPolicy::AppElected);
        let pods = [member("web-0", true, "r", None)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let lease = Lease {
            metadata: Default::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some("web-0".into()),
                renew_time: Some(MicroTime("9999-12-30T21:00:00Z".parse().unwrap())),
                lease_duration_seconds: Some(2_000_000_000),
                ..Default::default()
            }),
        };
        assert_eq!(leadership(&set, &refs, "r", Some(&lease), at(10)).unwrap().leader.as_deref(), Some("web-0"));
        assert_eq!(lease_expiry(Some(&lease)), Some(Timestamp::MAX));
    }

    #[test]
    fn the_leader_service_selects_by_the_set_label_whatever_the_selector() {
        let mut set = clustered(LeaderPolicy::OperatorAssigned);
        set.spec.selector = serde_json::from_value(
            serde_json::json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}),
        )
        .unwrap();
        let selector = |svc: Service| svc.spec.unwrap().selector.unwrap();
        assert_eq!(
            selector(leader_service(&set)),
            BTreeMap::from([(PART_OF_LABEL.into(), "web".into()), (ROLE_LABEL.into(), LEADER.into())])
        );
        assert_eq!(selector(governing_service(&set)), BTreeMap::from([(PART_OF_LABEL.into(), "web".into())]));
        let pod = identity::new_pod(&set, 0, "r", &set.spec.template);
        assert_eq!(pod.labels()[PART_OF_LABEL], "web", "every pod carries what the Services select");
    }

    #[test]
    fn formation_is_read_back_from_a_peers_config_map_the_set_may_have() {
        let set = clustered(LeaderPolicy::OperatorAssigned);
        let formed = Time("2026-01-02T03:04:05Z".parse().unwrap());
        let mut peers = peers_config_map(&set, String::new(), Some(&formed));
        assert_eq!(formed_at(&set, Some(&peers)), Some(formed.clone()), "controlled by the set");
        peers.metadata.owner_references = None;
        assert_eq!(formed_at(&set, Some(&peers)), Some(formed.clone()), "orphaned by a delete --cascade=orphan");
        peers.metadata.labels = None;
        assert_eq!(formed_at(&set, None), None);
        assert_eq!(formed_at(&set, Some(&peers)), None, "someone else's ConfigMap proves nothing");
        let mut recreated = set.clone();
        recreated.metadata.uid = Some("another-uid".into());
        let theirs = peers_config_map(&set, String::new(), Some(&formed));
        assert!(!ours_or_adoptable(&theirs, &recreated), "controlled by another set");
    }

    #[test]
    fn peers_file_lists_every_member_with_health_and_role() {
        let set = clustered(LeaderPolicy::OperatorAssigned);
        let pods = [member("web-0", true, "r", None), member("web-1", false, "r", None)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let text = peers_text(&set, set.spec.clustering.as_ref().unwrap(), &refs, Some("web-0"));
        assert_eq!(
            text,
            "0 web-0.web.ns.svc.cluster.local ready leader\n1 web-1.web.ns.svc.cluster.local notready follower\n2 web-2.web.ns.svc.cluster.local absent follower\n"
        );
    }
}
