//! Table tests for each rule of the plan, and property tests over random cluster states.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::{ResourceExt, core::Selector};
use petset_crd::{
    PersistentVolumeClaimRetentionPolicy, PetSet, PetSetOrdinals, PodManagementPolicy, RetentionPolicyType as R,
};
use proptest::prelude::*;

use super::*;
use crate::identity::{controller_ref, new_claims, new_pod};
use crate::testing::{at, petset};

const NOW: i64 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Pending,
    NotReady,
    Ready,
    Failed,
    Terminating,
}

/// The spec's template is at "web-new"; "web-old" holds the same template with image
/// `nginx:old`.
fn rev() -> Revisions {
    let mut current_template = petset("web", 1).spec.template;
    current_template.spec.as_mut().unwrap().containers[0].image = Some("nginx:old".into());
    Revisions { current: "web-old".into(), update: "web-new".into(), current_template }
}

fn image(pod: &Pod) -> &str {
    pod.spec.as_ref().unwrap().containers[0].image.as_deref().unwrap_or_default()
}

/// A member pod of `set` in `state`, at the update revision.
fn pod(set: &PetSet, ordinal: i32, state: State) -> Pod {
    let mut pod = new_pod(set, ordinal, "web-new", &set.spec.template);
    pod.metadata.uid = Some(format!("pod-uid-{ordinal}"));
    let (phase, ready) = match state {
        State::Pending => ("Pending", false),
        State::NotReady => ("Running", false),
        State::Ready | State::Terminating => ("Running", true),
        State::Failed => ("Failed", false),
    };
    if state == State::Terminating {
        pod.metadata.deletion_timestamp = Some(Time(at(NOW - 1)));
    }
    let mut with = crate::testing::pod_with(&pod.name_any(), phase, ready, Some(at(NOW - 100)));
    pod.status = with.status.take();
    pod
}

fn claims_for(set: &PetSet, ordinals: impl IntoIterator<Item = i32>) -> BTreeMap<String, PersistentVolumeClaim> {
    ordinals.into_iter().flat_map(|o| new_claims(set, o)).map(|c| (c.name_any(), c)).collect()
}

fn observed(set: &PetSet, pods: &[(i32, State)]) -> Observed {
    Observed {
        pods: pods.iter().map(|(o, s)| pod(set, *o, *s)).collect(),
        claims: claims_for(set, pods.iter().map(|(o, _)| *o)),
        revisions: Vec::new(),
        formed_at: None,
        now: at(NOW),
    }
}

fn run(set: &PetSet, observed: &Observed) -> Plan {
    let selector = Selector::try_from(set.spec.selector.clone()).unwrap();
    plan(set, &selector, &rev(), observed, None)
}

fn actions(plan: &Plan) -> Vec<&Action> {
    plan.batches.iter().flatten().flatten().collect()
}

/// A compact view of the plan: "claim www-web-0", "create web-0", "delete web-2", ...
fn brief(plan: &Plan) -> Vec<String> {
    actions(plan)
        .iter()
        .map(|a| match a {
            Action::AdoptPod { name, .. } => format!("adopt {name}"),
            Action::ReleasePod { name, .. } => format!("release {name}"),
            Action::CreateClaim { claim, .. } => format!("claim {}", claim.name_any()),
            Action::CreatePod { pod } => format!("create {}", pod.name_any()),
            Action::DeletePod { name, .. } => format!("delete {name}"),
            Action::FixPodIdentity { pod } => format!("fix {}", pod.name_any()),
            Action::SetRole { name, role } => format!("{role} {name}"),
            Action::SetClaimOwners { name, owners, .. } => {
                format!("own {name} by {}", owners.iter().map(|o| o.kind.as_str()).collect::<Vec<_>>().join(","))
            }
        })
        .collect()
}

fn parallel(mut set: PetSet) -> PetSet {
    set.spec.pod_management_policy = Some(PodManagementPolicy::Parallel);
    set
}

fn with_policy(mut set: PetSet, when_deleted: R, when_scaled: R) -> PetSet {
    set.spec.persistent_volume_claim_retention_policy =
        Some(PersistentVolumeClaimRetentionPolicy { when_deleted, when_scaled });
    set
}

#[test]
fn ordered_creates_the_first_member_claims_first() {
    let set = petset("web", 3);
    let plan = run(&set, &observed(&set, &[]));
    assert_eq!(brief(&plan), ["claim www-web-0", "create web-0"]);
    assert!(plan.waiting.is_some());
}

#[test]
fn ordered_creates_the_next_only_after_the_previous_is_ready() {
    let set = petset("web", 3);
    assert_eq!(brief(&run(&set, &observed(&set, &[(0, State::Ready)]))), ["claim www-web-1", "create web-1"]);
    for state in [State::Pending, State::NotReady, State::Terminating] {
        let plan = run(&set, &observed(&set, &[(0, state)]));
        assert!(brief(&plan).is_empty(), "{state:?}: {:?}", brief(&plan));
    }
}

#[test]
fn ordered_waits_for_min_ready_seconds_and_requeues() {
    let mut set = petset("web", 3);
    set.spec.min_ready_seconds = Some(130); // ready for 100s so far
    let plan = run(&set, &observed(&set, &[(0, State::Ready)]));
    assert!(brief(&plan).is_empty());
    assert_eq!(plan.requeue_after, Some(std::time::Duration::from_secs(30)));
}

#[test]
fn parallel_creates_everything_in_slow_start_batches() {
    let set = parallel(petset("web", 7));
    let plan = run(&set, &observed(&set, &[]));
    let sizes: Vec<usize> = plan.batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, [1, 2, 4]);
    assert_eq!(brief(&plan).iter().filter(|a| a.starts_with("create")).count(), 7);
    // Each step creates the claim before its pod.
    for step in plan.batches.iter().flatten() {
        assert!(matches!(step.as_slice(), [Action::CreateClaim { .. }, Action::CreatePod { .. }]));
    }
}

#[test]
fn parallel_does_not_wait_for_unhealthy_pods() {
    let set = parallel(petset("web", 3));
    let plan = run(&set, &observed(&set, &[(0, State::NotReady)]));
    assert_eq!(brief(&plan), ["claim www-web-1", "create web-1", "claim www-web-2", "create web-2"]);
}

#[test]
fn failed_and_succeeded_pods_are_deleted_for_recreation() {
    let set = petset("web", 2);
    let plan = run(&set, &observed(&set, &[(0, State::Failed)]));
    assert_eq!(brief(&plan), ["delete web-0"]);
    assert!(matches!(actions(&plan)[0], Action::DeletePod { reason: DeleteReason::Failed, .. }));
}

#[test]
fn scale_down_removes_the_highest_ordinal_one_at_a_time() {
    let set = petset("web", 1);
    let plan = run(&set, &observed(&set, &[(0, State::Ready), (1, State::Ready), (2, State::Ready)]));
    assert_eq!(brief(&plan), ["delete web-2"]);
    let plan = run(&set, &observed(&set, &[(0, State::Ready), (1, State::Ready), (2, State::Terminating)]));
    assert!(brief(&plan).is_empty(), "waits for web-2 to go");
}

#[test]
fn scale_down_halts_on_unhealthy_pods_except_the_first_unhealthy() {
    let set = petset("web", 0);
    let all_unhealthy = [(0, State::NotReady), (1, State::NotReady), (2, State::NotReady)];
    assert!(brief(&run(&set, &observed(&set, &all_unhealthy))).is_empty());
    // web-2 is the only unhealthy pod, so it is the first unhealthy one: it may go.
    let plan = run(&set, &observed(&set, &[(0, State::Ready), (1, State::Ready), (2, State::NotReady)]));
    assert_eq!(brief(&plan), ["delete web-2"]);
}

#[test]
fn parallel_scale_down_removes_all_condemned_at_once() {
    let set = parallel(petset("web", 1));
    let plan = run(&set, &observed(&set, &[(0, State::Ready), (1, State::NotReady), (2, State::Ready)]));
    assert_eq!(brief(&plan), ["delete web-2", "delete web-1"]);
}

#[test]
fn claim_being_deleted_blocks_the_pod() {
    let set = petset("web", 1);
    let mut obs = observed(&set, &[]);
    let mut claim = new_claims(&set, 0).remove(0);
    claim.metadata.deletion_timestamp = Some(Time(at(NOW)));
    obs.claims.insert(claim.name_any(), claim);
    let plan = run(&set, &obs);
    assert!(brief(&plan).is_empty());
    assert!(plan.waiting.unwrap().contains("being deleted"));
}

#[test]
fn claim_owned_by_an_old_pod_blocks_the_new_pod() {
    let set = petset("web", 1);
    let mut obs = observed(&set, &[]);
    let mut claim = new_claims(&set, 0).remove(0);
    claim.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: "web-0".into(),
        uid: "dead-pod".into(),
        ..Default::default()
    }]);
    obs.claims.insert(claim.name_any(), claim);
    assert!(brief(&run(&set, &obs)).is_empty());
}

#[test]
fn missing_claim_under_a_pending_pod_is_recreated() {
    let set = petset("web", 1);
    let mut obs = observed(&set, &[(0, State::Pending)]);
    obs.claims.clear();
    assert_eq!(brief(&run(&set, &obs)), ["claim www-web-0"]);
}

#[test]
fn orphans_are_adopted_and_non_matching_pods_released() {
    let set = petset("web", 2);
    let mut obs = observed(&set, &[(0, State::Ready), (1, State::Ready)]);
    obs.pods[0].metadata.owner_references = None;
    obs.pods[1].metadata.labels.as_mut().unwrap().insert("app".into(), "other".into());
    let plan = run(&set, &obs);
    let b = brief(&plan);
    assert_eq!(&b[..2], ["adopt web-0", "release web-1"]);
    // The released pod is no member any more: its ordinal is created again.
    assert_eq!(&b[2..], ["create web-1"], "claim www-web-1 already exists");
}

#[test]
fn pods_of_other_controllers_and_non_members_are_ignored() {
    let set = petset("web", 1);
    let mut obs = observed(&set, &[(0, State::Ready)]);
    let mut foreign = pod(&set, 1, State::Ready);
    foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "someone-else".into();
    let mut stray = pod(&set, 2, State::Ready);
    stray.metadata.name = Some("web-x".into());
    stray.metadata.owner_references = None;
    obs.pods.extend([foreign, stray]);
    assert!(brief(&run(&set, &obs)).is_empty());
}

#[test]
fn drifted_identity_labels_are_fixed() {
    let set = petset("web", 1);
    let mut obs = observed(&set, &[(0, State::Ready)]);
    obs.pods[0].metadata.labels.as_mut().unwrap().remove(crate::identity::POD_INDEX_LABEL);
    assert_eq!(brief(&run(&set, &obs)), ["fix web-0"]);
}

#[test]
fn retention_owner_references_for_each_policy() {
    let cases = [
        (R::Retain, R::Retain, true, vec![]),
        (R::Retain, R::Retain, false, vec![]),
        (R::Delete, R::Retain, true, vec!["PetSet"]),
        (R::Delete, R::Retain, false, vec!["PetSet"]),
        (R::Retain, R::Delete, true, vec![]),
        (R::Retain, R::Delete, false, vec!["Pod"]),
        (R::Delete, R::Delete, true, vec!["PetSet"]),
        (R::Delete, R::Delete, false, vec!["Pod"]),
    ];
    for (when_deleted, when_scaled, in_range, want) in cases {
        let set = with_policy(petset("web", 1), when_deleted, when_scaled);
        let member = pod(&set, 3, State::Ready);
        let owners = retention_owners(&set, &[], Some(&member), in_range);
        let kinds: Vec<_> = owners.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(kinds, want, "{when_deleted:?}/{when_scaled:?} in range: {in_range}");
    }
}

#[test]
fn condemned_claims_get_their_pod_owner_before_the_pod_goes() {
    let set = with_policy(petset("web", 1), R::Retain, R::Delete);
    let plan = run(&set, &observed(&set, &[(0, State::Ready), (1, State::Ready)]));
    assert_eq!(brief(&plan), ["own www-web-1 by Pod", "delete web-1"]);
    assert_eq!(plan.batches.len(), 2, "owner update and deletion are separate batches");
}

#[test]
fn claims_created_under_when_deleted_delete_are_owned_by_the_set() {
    let set = with_policy(petset("web", 1), R::Delete, R::Retain);
    let plan = run(&set, &observed(&set, &[]));
    let Action::CreateClaim { claim, .. } = actions(&plan)[0] else { panic!("{:?}", brief(&plan)) };
    assert_eq!(claim.owner_references(), [controller_ref(&set)]);
}

#[test]
fn start_ordinal_renames_by_creating_then_condemning() {
    let mut set = petset("web", 2);
    set.spec.ordinals = Some(PetSetOrdinals { start: 1 });
    let plan = run(&set, &observed(&set, &[(0, State::Ready), (1, State::Ready)]));
    assert_eq!(brief(&plan), ["claim www-web-2", "create web-2"]);
    let plan = run(&set, &observed(&set, &[(0, State::Ready), (1, State::Ready), (2, State::Ready)]));
    assert_eq!(brief(&plan), ["delete web-0"]);
}

#[test]
fn rolling_update_replaces_the_highest_outdated_pod_above_the_partition() {
    let mut set = petset("web", 3);
    let mut obs = observed(&set, &[(0, State::Ready), (1, State::Ready), (2, State::Ready)]);
    for p in &mut obs.pods {
        p.metadata.labels.as_mut().unwrap().insert(crate::identity::REVISION_LABEL.into(), "web-old".into());
    }
    assert_eq!(brief(&run(&set, &obs)), ["delete web-2"]);
    set.spec.update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().partition = Some(3);
    assert!(brief(&run(&set, &obs)).is_empty(), "everything is below the partition");
    // A missing pod below the partition comes back at the current revision.
    obs.pods.remove(0);
    let plan = run(&set, &obs);
    let Some(Action::CreatePod { pod }) = actions(&plan).into_iter().find(|a| matches!(a, Action::CreatePod { .. }))
    else {
        panic!("{:?}", brief(&plan))
    };
    assert_eq!(pod.labels()[crate::identity::REVISION_LABEL], "web-old");
    assert_eq!(image(pod), "nginx:old", "built from the current revision's template, not the spec's");
}

#[test]
fn a_set_being_deleted_only_claims_pods() {
    let mut set = petset("web", 3);
    set.metadata.deletion_timestamp = Some(Time(at(NOW)));
    assert!(brief(&run(&set, &observed(&set, &[(0, State::Ready)]))).is_empty());
}

fn state() -> impl Strategy<Value = Option<State>> {
    prop_oneof![
        Just(None),
        Just(Some(State::Pending)),
        Just(Some(State::NotReady)),
        Just(Some(State::Ready)),
        Just(Some(State::Ready)),
        Just(Some(State::Failed)),
        Just(Some(State::Terminating)),
    ]
}

fn policy() -> impl Strategy<Value = R> {
    prop_oneof![Just(R::Retain), Just(R::Delete)]
}

prop_compose! {
    fn world()(
        replicas in 0..8i32,
        start in 0..3i32,
        ordered in any::<bool>(),
        when_deleted in policy(),
        when_scaled in policy(),
        partition in proptest::option::of(0..10i32),
        on_delete in any::<bool>(),
        states in proptest::collection::vec(state(), 10),
        claims_present in proptest::collection::vec(any::<bool>(), 10),
    ) -> (PetSet, Observed) {
        let mut set = with_policy(petset("web", replicas), when_deleted, when_scaled);
        set.spec.ordinals = Some(PetSetOrdinals { start });
        if !ordered {
            set = parallel(set);
        }
        rolling(&mut set).partition = partition;
        if on_delete {
            set.spec.update_strategy.as_mut().unwrap().type_ = petset_crd::UpdateStrategyType::OnDelete;
        }
        let pods: Vec<(i32, State)> = states.iter().enumerate().filter_map(|(o, s)| s.map(|s| (o as i32, s))).collect();
        let mut obs = observed(&set, &pods);
        obs.claims = claims_for(&set, (0..10).filter(|o| claims_present[*o as usize]));
        (set, obs)
    }
}

proptest! {
    #[test]
    fn never_two_pods_for_one_ordinal((set, obs) in world()) {
        let plan = run(&set, &obs);
        let existing: Vec<String> = obs.pods.iter().map(|p| p.name_any()).collect();
        let mut created = Vec::new();
        for a in actions(&plan) {
            if let Action::CreatePod { pod } = a {
                prop_assert!(!existing.contains(&pod.name_any()), "created {} which exists", pod.name_any());
                prop_assert!(!created.contains(&pod.name_any()), "created {} twice", pod.name_any());
                created.push(pod.name_any());
            }
        }
    }

    #[test]
    fn ordered_never_starts_a_pod_before_its_predecessors_are_ready((set, obs) in world()) {
        prop_assume!(set.spec.pod_management_policy() == PodManagementPolicy::OrderedReady);
        let plan = run(&set, &obs);
        let start = set.spec.start_ordinal();
        let by_ordinal: BTreeMap<i32, &Pod> =
            obs.pods.iter().map(|p| (crate::identity::ordinal_of("web", &p.name_any()).unwrap(), p)).collect();
        let creates: Vec<i32> = actions(&plan).iter().filter_map(|a| match a {
            Action::CreatePod { pod } => crate::identity::ordinal_of("web", &pod.name_any()),
            _ => None,
        }).collect();
        prop_assert!(creates.len() <= 1, "OrderedReady created {creates:?} at once");
        for ordinal in creates {
            for before in start..ordinal {
                let ok = by_ordinal.get(&before).is_some_and(|p| crate::health::is_running_and_ready(p) && !crate::health::is_terminating(p));
                prop_assert!(ok, "created web-{ordinal} while web-{before} is not Ready");
            }
        }
    }

    #[test]
    fn scale_down_takes_the_highest_ordinal_first((set, obs) in world()) {
        let plan = run(&set, &obs);
        let end = set.spec.start_ordinal() + set.spec.replicas();
        let start = set.spec.start_ordinal();
        let deleted: Vec<i32> = actions(&plan).iter().filter_map(|a| match a {
            Action::DeletePod { name, reason: DeleteReason::ScaleDown, .. } => crate::identity::ordinal_of("web", name),
            _ => None,
        }).collect();
        let live_condemned: Vec<i32> = obs.pods.iter()
            .filter(|p| !crate::health::is_terminating(p))
            .filter_map(|p| crate::identity::ordinal_of("web", &p.name_any()))
            .filter(|o| !(start..end).contains(o))
            .collect();
        for o in &deleted {
            prop_assert!(!(start..end).contains(o), "deleted in-range web-{o}");
        }
        if set.spec.pod_management_policy() == PodManagementPolicy::OrderedReady {
            prop_assert!(deleted.len() <= 1);
            if let Some(o) = deleted.first() {
                prop_assert_eq!(Some(o), live_condemned.iter().max(), "not the highest condemned");
            }
        }
    }

    #[test]
    fn retain_never_gives_a_claim_an_owner_that_deletes_it((set, obs) in world()) {
        let policy = set.spec.retention_policy();
        let plan = run(&set, &obs);
        for a in actions(&plan) {
            match a {
                Action::SetClaimOwners { owners, name, .. } => {
                    if policy.when_deleted == R::Retain {
                        prop_assert!(owners.iter().all(|o| o.kind != "PetSet"), "{name} owned by the set under whenDeleted: Retain");
                    }
                    if policy.when_scaled == R::Retain {
                        prop_assert!(owners.iter().all(|o| o.kind != "Pod"), "{name} owned by a pod under whenScaled: Retain");
                    }
                }
                Action::CreateClaim { claim, .. } if policy.when_deleted == R::Retain => {
                    prop_assert!(claim.owner_references().is_empty());
                }
                _ => {}
            }
        }
    }

    /// A pod is its revision: whatever it is labelled with, it runs that revision's
    /// template (upstream builds pods from the set as each revision holds it).
    #[test]
    fn every_pod_runs_the_template_of_its_revision((set, obs) in world()) {
        let revisions = rev();
        let plan = run(&set, &obs);
        for a in actions(&plan) {
            if let Action::CreatePod { pod } = a {
                let label = &pod.labels()[crate::identity::REVISION_LABEL];
                let template = if *label == revisions.current { &revisions.current_template } else { &set.spec.template };
                prop_assert_eq!(label == &revisions.current || label == &revisions.update, true);
                let (want, got) = (template.spec.as_ref().unwrap(), pod.spec.as_ref().unwrap());
                prop_assert_eq!(&want.containers, &got.containers, "{} at {}", pod.name_any(), label);
                prop_assert_eq!(&want.init_containers, &got.init_containers);
                for (k, v) in template.metadata.as_ref().and_then(|m| m.labels.as_ref()).into_iter().flatten() {
                    prop_assert_eq!(pod.labels().get(k), Some(v));
                }
            }
        }
    }

    #[test]
    fn only_owned_members_are_deleted((set, obs) in world()) {
        let plan = run(&set, &obs);
        let uids: Vec<String> = obs.pods.iter().filter_map(|p| p.uid()).collect();
        for a in actions(&plan) {
            if let Action::DeletePod { uid, .. } = a {
                prop_assert!(uids.contains(uid));
            }
        }
    }
}

fn outdated(obs: &mut Observed) {
    for p in &mut obs.pods {
        p.metadata.labels.as_mut().unwrap().insert(crate::identity::REVISION_LABEL.into(), "web-old".into());
    }
}

fn rolling(set: &mut PetSet) -> &mut petset_crd::RollingUpdate {
    set.spec.update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap()
}

#[test]
fn max_unavailable_replaces_that_many_from_the_top() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let mut set = petset("web", 5);
    rolling(&mut set).max_unavailable = Some(IntOrString::Int(2));
    let mut obs = observed(
        &set,
        &[(0, State::Ready), (1, State::Ready), (2, State::Ready), (3, State::Ready), (4, State::Ready)],
    );
    outdated(&mut obs);
    assert_eq!(brief(&run(&set, &obs)), ["delete web-4", "delete web-3"]);
    // 40% of 5 is 2; one pod already unavailable leaves room for one more.
    rolling(&mut set).max_unavailable = Some(IntOrString::String("40%".into()));
    obs.pods[4] = pod(&set, 4, State::NotReady);
    assert_eq!(brief(&run(&parallel(set.clone()), &obs)), ["delete web-3"]);
}

#[test]
fn stuck_pods_at_an_old_revision_are_replaced_only_when_asked_and_after_the_bound() {
    let mut set = petset("web", 3);
    let mut obs = observed(&set, &[(0, State::Ready), (1, State::Ready), (2, State::NotReady)]);
    outdated(&mut obs);
    // The pod has not been Ready for 100 s (pod() puts the transition at NOW - 100).
    assert!(brief(&run(&set, &obs)).is_empty(), "off by default: upstream waits forever");
    rolling(&mut set).replace_unhealthy_after_seconds = Some(300);
    let plan = run(&set, &obs);
    assert!(brief(&plan).is_empty(), "before the bound");
    assert_eq!(plan.requeue_after, Some(std::time::Duration::from_secs(200)), "comes back at the bound");
    rolling(&mut set).replace_unhealthy_after_seconds = Some(60);
    let plan = run(&set, &obs);
    assert_eq!(brief(&plan), ["delete web-2"]);
    assert!(matches!(actions(&plan)[0], Action::DeletePod { reason: DeleteReason::Stuck, .. }));
    // A pod already at the update revision is waited for, never replaced.
    let obs = observed(&set, &[(0, State::Ready), (1, State::Ready), (2, State::NotReady)]);
    assert!(brief(&run(&set, &obs)).is_empty());
}

#[test]
fn a_huge_parallel_set_builds_only_what_one_sync_creates() {
    let set = parallel(petset("web", 2_000_000));
    let plan = run(&set, &observed(&set, &[(0, State::Ready), (5, State::Pending)]));
    let creates = brief(&plan).iter().filter(|a| a.starts_with("create ")).count();
    assert_eq!(creates, MAX_CREATES_PER_SYNC);
    assert!(brief(&plan).contains(&"create web-1".to_string()), "the lowest missing ordinals first");
    assert!(plan.waiting.is_some(), "says it is not done");
    // OrderedReady creates one; a rolling update with maxUnavailable walks what exists.
    let mut ordered = petset("web", 2_000_000);
    rolling(&mut ordered).max_unavailable = Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(3));
    let mut obs = observed(&ordered, &[(0, State::Ready), (1, State::Ready)]);
    outdated(&mut obs);
    assert_eq!(brief(&run(&ordered, &obs)), ["claim www-web-2", "create web-2"]);
}

#[test]
fn claims_of_members_scaled_away_follow_a_changed_policy() {
    // Scaled 3 -> 1 under whenDeleted: Delete; claims 1 and 2 kept, owned by the set.
    let set = with_policy(petset("web", 1), R::Delete, R::Retain);
    let mut obs = observed(&set, &[(0, State::Ready)]);
    obs.claims = claims_for(&set, 0..3);
    for claim in obs.claims.values_mut() {
        claim.metadata.owner_references = Some(vec![controller_ref(&set)]);
    }
    assert!(brief(&run(&set, &obs)).is_empty(), "the policy in force keeps them with the set");
    // The policy becomes Retain/Retain: every claim the set owns loses the reference.
    let retain = with_policy(set.clone(), R::Retain, R::Retain);
    let mut fixed = brief(&run(&retain, &obs));
    fixed.sort();
    assert_eq!(fixed, ["own www-web-0 by ", "own www-web-1 by ", "own www-web-2 by "]);
    // Under whenScaled: Delete the scaled-away claims are meant to go: left as they are.
    let scaled_delete = with_policy(set, R::Delete, R::Delete);
    assert!(brief(&run(&scaled_delete, &obs)).is_empty());
}

#[test]
fn on_delete_never_replaces_stuck_pods() {
    let mut set = petset("web", 3);
    rolling(&mut set).replace_unhealthy_after_seconds = Some(1);
    set.spec.update_strategy.as_mut().unwrap().type_ = petset_crd::UpdateStrategyType::OnDelete;
    let mut obs = observed(&set, &[(0, State::Ready), (1, State::Ready), (2, State::NotReady)]);
    outdated(&mut obs);
    assert!(brief(&run(&set, &obs)).is_empty(), "under OnDelete a person chooses when pods go");
}
