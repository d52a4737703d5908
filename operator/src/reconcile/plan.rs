//! The heart of petset: from what the PetSet asks for and what the cluster holds, the
//! next actions. Pure and deterministic: no clock but `Observed::now`, no I/O. It holds
//! the rules of upstream's StatefulSet sync (claiming pods, creating missing members
//! with their claims, replacing finished pods, ordered or parallel scaling, the claim
//! retention policy, the rolling update), so they can be tested without a server.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{ResourceExt, core::Selector, core::SelectorExt};
use petset_crd::{PetSet, PodManagementPolicy, RetentionPolicyType, UpdateStrategyType};

use crate::cluster::{self, FOLLOWER, LEADER, Leadership};
use crate::health::{
    is_finished, is_healthy, is_pending, is_running_and_available, is_running_and_ready, is_terminating,
    not_ready_since, until_available,
};
use crate::identity::{self, REVISION_LABEL};
use crate::time;

/// What the cluster holds for one PetSet.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Pods of the namespace that this set owns or could adopt.
    pub pods: Vec<Pod>,
    /// Claims of the namespace, by name.
    pub claims: BTreeMap<String, PersistentVolumeClaim>,
    /// ControllerRevisions of the namespace.
    pub revisions: Vec<ControllerRevision>,
    /// When a clustered set's cluster was formed: its new members join it.
    pub formed_at: Option<Time>,
    pub now: Timestamp,
}

/// The revision pods start from and the one the template now asks for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Revisions {
    pub current: String,
    pub update: String,
    /// The template `current` holds (the update revision holds the spec's).
    pub current_template: PodTemplateSpec,
}

/// One API write. Each carries what `act` needs, and nothing it must look up.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Take an orphan pod that matches the selector and has a member's name.
    AdoptPod {
        name: String,
        uid: String,
    },
    /// Let go of an owned pod whose labels no longer match the selector.
    ReleasePod {
        name: String,
        uid: String,
    },
    CreateClaim {
        claim: PersistentVolumeClaim,
    },
    CreatePod {
        pod: Pod,
    },
    DeletePod {
        name: String,
        uid: String,
        reason: DeleteReason,
    },
    /// Rewrite drifted identity labels.
    FixPodIdentity {
        pod: Pod,
    },
    /// Set a claim's owner references as the retention policy wants them.
    SetClaimOwners {
        name: String,
        pod: String,
        owners: Vec<OwnerReference>,
    },
    /// Label a pod `petset.dev/role: leader` or `follower`.
    SetRole {
        name: String,
        role: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// Phase Failed: upstream's RecreatingFailedPod.
    Failed,
    /// Phase Succeeded: a pod of a PetSet must not stop.
    Succeeded,
    /// Out of range after a scale-down or a change of ordinals.start.
    ScaleDown,
    /// At an old revision during a rolling update.
    Update,
    /// At an old revision and not Ready for `replaceUnhealthyAfterSeconds`.
    Stuck,
}

/// The most pods one Parallel sync creates. Slow start (batches of 1, 2, 4, ...) still
/// applies inside it; the next sync creates the next ones.
pub const MAX_CREATES_PER_SYNC: usize = 512;

/// Actions for one member, run in order (its claims before its pod).
pub type Step = Vec<Action>;

/// What one sync should do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Run one batch after the other; the steps of a batch run concurrently; a batch
    /// with a failure stops the ones after it.
    pub batches: Vec<Vec<Step>>,
    /// Why the sync stopped short, when it did (shown in logs and events).
    pub waiting: Option<String>,
    /// Things a person should know that stop nothing (Warning events).
    pub warnings: Vec<String>,
    /// Sync again after this long even if nothing changes (minReadySeconds).
    pub requeue_after: Option<Duration>,
}

/// The set's member pods after claiming: owned (or being adopted) pods with a member's
/// name. Status is computed from these.
pub fn members<'a>(set: &PetSet, selector: &Selector, pods: &'a [Pod]) -> Vec<&'a Pod> {
    pods.iter().filter(|p| matches!(claim(set, selector, p), Claim::Owned | Claim::Adopt)).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claim {
    Owned,
    Adopt,
    Release,
    Ignore,
}

fn claim(set: &PetSet, selector: &Selector, pod: &Pod) -> Claim {
    let set_uid = set.uid();
    let controller = pod.owner_references().iter().find(|r| r.controller == Some(true));
    let member = identity::ordinal_of(&set.name_any(), &pod.name_any()).is_some();
    let matches = selector.matches(pod.labels());
    match controller {
        Some(r) if Some(&r.uid) == set_uid.as_ref() => {
            if matches && member {
                Claim::Owned
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if matches && member && !is_terminating(pod) && set.metadata.deletion_timestamp.is_none() => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// Plans one sync of `set`; `leadership` is the leader decision for sets with a leader.
pub fn plan(
    set: &PetSet,
    selector: &Selector,
    revisions: &Revisions,
    observed: &Observed,
    leadership: Option<&Leadership>,
) -> Plan {
    let mut planner = Planner::new(set, revisions, observed);
    planner.leader = leadership.and_then(|l| l.leader.clone());

    let mut claiming = Vec::new();
    for pod in &observed.pods {
        let (name, uid) = (pod.name_any(), pod.uid().unwrap_or_default());
        match claim(set, selector, pod) {
            Claim::Adopt => claiming.push(vec![Action::AdoptPod { name, uid }]),
            Claim::Release => claiming.push(vec![Action::ReleasePod { name, uid }]),
            Claim::Owned | Claim::Ignore => {}
        }
    }
    planner.push_batch(claiming);

    // A set being deleted only has its status updated; the garbage collector removes
    // the pods.
    if set.metadata.deletion_timestamp.is_some() {
        return planner.finish();
    }

    // Never two leaders: the old label goes in one batch, the new one in the next.
    if let Some(l) = leadership {
        let demote = l.demote.iter().map(|name| vec![Action::SetRole { name: name.clone(), role: FOLLOWER }]).collect();
        planner.push_batch(demote);
        if let Some(name) = &l.promote {
            planner.push_batch(vec![vec![Action::SetRole { name: name.clone(), role: LEADER }]]);
        }
    }

    let members = members(set, selector, &observed.pods);
    planner.index(&members);
    let fixes = planner.memberless_claim_fixes();
    planner.push_batch(fixes);
    if planner.scale().is_continue() {
        planner.update();
    }
    planner.finish()
}

enum Flow {
    Continue,
    Stop,
}

impl Flow {
    fn is_continue(&self) -> bool {
        matches!(self, Flow::Continue)
    }
}

struct Planner<'a> {
    set: &'a PetSet,
    set_name: String,
    revisions: &'a Revisions,
    observed: &'a Observed,
    ordered: bool,
    start: i32,
    end: i32,
    min_ready: i32,
    in_range: BTreeMap<i32, &'a Pod>,
    /// Out-of-range members, highest ordinal first.
    condemned: Vec<(i32, &'a Pod)>,
    /// The leader after this sync's leadership changes: rolling updates replace it last.
    leader: Option<String>,
    plan: Plan,
}

impl<'a> Planner<'a> {
    fn new(set: &'a PetSet, revisions: &'a Revisions, observed: &'a Observed) -> Self {
        let start = set.spec.start_ordinal();
        Planner {
            set,
            set_name: set.name_any(),
            revisions,
            observed,
            ordered: set.spec.pod_management_policy() == PodManagementPolicy::OrderedReady,
            start,
            end: start.saturating_add(set.spec.replicas()),
            min_ready: set.spec.min_ready_seconds(),
            in_range: BTreeMap::new(),
            condemned: Vec::new(),
            leader: None,
            plan: Plan::default(),
        }
    }

    fn index(&mut self, members: &[&'a Pod]) {
        for pod in members {
            let Some(ordinal) = identity::ordinal_of(&self.set_name, &pod.name_any()) else { continue };
            if (self.start..self.end).contains(&ordinal) {
                self.in_range.insert(ordinal, pod);
            } else {
                self.condemned.push((ordinal, pod));
            }
        }
        self.condemned.sort_by_key(|(ordinal, _)| std::cmp::Reverse(*ordinal));
    }

    fn push_batch(&mut self, steps: Vec<Step>) {
        let steps: Vec<Step> = steps.into_iter().filter(|s| !s.is_empty()).collect();
        if !steps.is_empty() {
            self.plan.batches.push(steps);
        }
    }

    /// Steps that may run concurrently, in slow-start batches of 1, 2, 4, ... so a
    /// systematic failure (quota, admission) costs a few requests, not hundreds.
    fn push_slow_start(&mut self, steps: Vec<Step>) {
        let mut steps = steps.into_iter().filter(|s| !s.is_empty()).peekable();
        let mut size = 1;
        while steps.peek().is_some() {
            self.push_batch(steps.by_ref().take(size).collect());
            size *= 2;
        }
    }

    fn wait(&mut self, why: String) -> Flow {
        self.plan.waiting.get_or_insert(why);
        Flow::Stop
    }

    fn requeue(&mut self, after: Duration) {
        let next = self.plan.requeue_after.map_or(after, |d| d.min(after));
        self.plan.requeue_after = Some(next);
    }

    fn finish(mut self) -> Plan {
        // Availability changes with time alone: come back when the next pod becomes
        // Available so availableReplicas is written on time.
        let now = self.observed.now;
        let pending: Vec<Duration> = self
            .in_range
            .values()
            .chain(self.condemned.iter().map(|(_, p)| p))
            .filter_map(|p| until_available(p, self.min_ready, now))
            .filter(|d| !d.is_zero())
            .collect();
        if let Some(d) = pending.into_iter().min() {
            self.requeue(d);
        }
        self.plan
    }

    /// The revision a new pod for `ordinal` gets, and the template it is built from:
    /// ordinals under the partition keep the current revision.
    fn revision_for(&self, ordinal: i32) -> (&str, &PodTemplateSpec) {
        let rolling = self.set.spec.update_strategy_type() == UpdateStrategyType::RollingUpdate;
        if rolling && ordinal < self.start.saturating_add(self.set.spec.partition()) {
            (&self.revisions.current, &self.revisions.current_template)
        } else {
            (&self.revisions.update, &self.set.spec.template)
        }
    }

    /// In-range ordinals without a member.
    fn missing(&self) -> usize {
        (i64::from(self.end) - i64::from(self.start)).max(0) as usize - self.in_range.len()
    }

    /// The lowest unhealthy in-range ordinal (a missing pod counts), else the lowest
    /// unhealthy condemned one: the one pod OrderedReady may delete while unhealthy.
    fn first_unhealthy(&self) -> Option<i32> {
        (self.start..self.end)
            .find(|o| self.in_range.get(o).is_none_or(|p| !is_healthy(p)))
            .or_else(|| self.condemned.iter().rev().find(|(_, p)| !is_healthy(p)).map(|(o, _)| *o))
    }

    /// In-range ordinals this sync looks at, lowest first: every member's, and the
    /// first `missing` ordinals that have none. Bounded by what exists and what one sync
    /// may create, never by `replicas` (a set of two million members must not build two
    /// million pods before its first batch).
    fn ordinals_to_visit(&self, missing: usize) -> Vec<i32> {
        let mut out = Vec::with_capacity(self.in_range.len() + missing.min(self.in_range.len() + 1));
        let mut left = missing;
        let mut next = self.start;
        while next < self.end {
            if self.in_range.contains_key(&next) || left > 0 {
                if !self.in_range.contains_key(&next) {
                    left -= 1;
                }
                out.push(next);
                next += 1;
                continue;
            }
            match self.in_range.range(next..).next() {
                Some((&ordinal, _)) => next = ordinal,
                None => break,
            }
        }
        out
    }

    /// Creates, repairs and removes members until the set has the right pods
    /// (upstream's sync steps 3 to 6).
    fn scale(&mut self) -> Flow {
        let first_unhealthy = self.first_unhealthy();
        let visit = self.ordinals_to_visit(if self.ordered { 1 } else { MAX_CREATES_PER_SYNC });
        if !self.ordered && visit.len() < self.in_range.len().saturating_add(self.missing()) {
            // The watch events of this sync's creations bring the set back for more.
            self.plan.waiting.get_or_insert(format!("creating pods, {MAX_CREATES_PER_SYNC} per sync"));
        }
        let mut steps = Vec::new();
        for ordinal in visit {
            let mut step = Vec::new();
            let flow = self.member(ordinal, &mut step);
            steps.push(step);
            if self.ordered && !flow.is_continue() {
                self.push_each(steps);
                return Flow::Stop;
            }
        }
        self.push_members(steps);

        // Claims of condemned pods get their retention owners before the pods go, so
        // the garbage collector follows the policy once they do.
        let owners: Vec<Step> =
            self.condemned.clone().into_iter().map(|(ordinal, pod)| self.claim_owner_fixes(ordinal, pod)).collect();
        self.push_batch(owners);

        let mut deletions = Vec::new();
        for (ordinal, pod) in self.condemned.clone() {
            let flow = self.condemn(ordinal, pod, first_unhealthy, &mut deletions);
            if self.ordered && !flow.is_continue() {
                self.push_batch(deletions);
                return Flow::Stop;
            }
        }
        if self.ordered {
            self.push_batch(deletions);
        } else {
            self.push_slow_start(deletions);
        }
        Flow::Continue
    }

    fn push_members(&mut self, steps: Vec<Step>) {
        if self.ordered { self.push_each(steps) } else { self.push_slow_start(steps) }
    }

    /// OrderedReady: each member's step alone, in ordinal order.
    fn push_each(&mut self, steps: Vec<Step>) {
        for step in steps {
            self.push_batch(vec![step]);
        }
    }

    /// What member `ordinal` needs (upstream's processReplica).
    fn member(&mut self, ordinal: i32, step: &mut Step) -> Flow {
        let pod_name = identity::pod_name(&self.set_name, ordinal);
        let Some(pod) = self.in_range.get(&ordinal).copied() else {
            return self.create(ordinal, step);
        };
        if is_finished(pod) {
            if !is_terminating(pod) {
                let reason =
                    if crate::health::phase(pod) == "Failed" { DeleteReason::Failed } else { DeleteReason::Succeeded };
                step.push(Action::DeletePod { name: pod_name.clone(), uid: pod.uid().unwrap_or_default(), reason });
            }
            // Recreated once it is gone (its deletion triggers the next sync).
            return if self.ordered {
                self.wait(format!("waiting for {pod_name} to be replaced"))
            } else {
                Flow::Continue
            };
        }
        if is_pending(pod) {
            self.create_missing_claims(ordinal, step);
        }
        if self.ordered {
            if is_terminating(pod) {
                return self.wait(format!("waiting for {pod_name} to terminate"));
            }
            if !is_running_and_ready(pod) {
                if self.replace_if_stuck(pod, step) {
                    return self.wait(format!("replacing {pod_name}, stuck at an old revision"));
                }
                return self.wait(format!("waiting for {pod_name} to be Running and Ready"));
            }
            if let Some(left) = until_available(pod, self.min_ready, self.observed.now).filter(|d| !d.is_zero()) {
                self.requeue(left);
                return self.wait(format!(
                    "waiting for {pod_name} to be Available ({}s of minReadySeconds left)",
                    left.as_secs().max(1)
                ));
            }
        }
        if !is_terminating(pod) {
            if !identity::identity_matches(self.set, pod, ordinal) {
                let mut fixed = pod.clone();
                identity::set_identity_labels(self.set, &mut fixed, ordinal);
                step.push(Action::FixPodIdentity { pod: fixed });
            }
            step.extend(self.claim_owner_fixes(ordinal, pod));
        }
        Flow::Continue
    }

    /// The heal for kubernetes #67250 (`replaceUnhealthyAfterSeconds`): a pod at an old
    /// revision that has not been Ready for that long is replaced rather than waited for.
    /// Before then, the sync comes back when the bound is reached.
    fn replace_if_stuck(&mut self, pod: &Pod, step: &mut Step) -> bool {
        let Some(bound) = self.set.spec.replace_unhealthy_after_seconds() else { return false };
        let outdated = pod.labels().get(REVISION_LABEL) != Some(&self.revisions.update);
        let Some(since) = not_ready_since(pod) else { return false };
        if !outdated || is_terminating(pod) {
            return false;
        }
        let due = time::after(since, time::seconds(bound));
        if self.observed.now < due {
            self.requeue(time::until(due, self.observed.now));
            return false;
        }
        step.push(Action::DeletePod {
            name: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
            reason: DeleteReason::Stuck,
        });
        true
    }

    /// A missing member: its claims first, then the pod.
    fn create(&mut self, ordinal: i32, step: &mut Step) -> Flow {
        let pod_name = identity::pod_name(&self.set_name, ordinal);
        for claim in identity::new_claims(self.set, ordinal) {
            if let Some(existing) = self.observed.claims.get(&claim.name_any()) {
                if existing.metadata.deletion_timestamp.is_some() {
                    step.clear();
                    return self.blocked(format!(
                        "claim {} is being deleted; {pod_name} waits for it to go",
                        existing.name_any()
                    ));
                }
                // An owner reference to a pod of this name is to an old pod (the pod does
                // not exist): the garbage collector is about to delete the claim.
                if existing.owner_references().iter().any(|r| r.kind == "Pod" && r.name == pod_name) {
                    step.clear();
                    return self.blocked(format!(
                        "claim {} belongs to a deleted {pod_name}; waiting for it to be removed",
                        existing.name_any()
                    ));
                }
            }
        }
        self.create_missing_claims(ordinal, step);
        let (revision, template) = self.revision_for(ordinal);
        let mut pod = identity::new_pod(self.set, ordinal, revision, template);
        if let Some(clustering) = &self.set.spec.clustering {
            cluster::inject(self.set, clustering, &mut pod, ordinal, self.observed.formed_at.is_some());
        }
        step.push(Action::CreatePod { pod });
        if self.ordered { self.wait(format!("waiting for {pod_name} to be Running and Ready")) } else { Flow::Continue }
    }

    /// In OrderedReady the set waits; in Parallel only this member does.
    fn blocked(&mut self, why: String) -> Flow {
        self.plan.waiting.get_or_insert(why);
        if self.ordered { Flow::Stop } else { Flow::Continue }
    }

    fn create_missing_claims(&mut self, ordinal: i32, step: &mut Step) {
        for mut claim in identity::new_claims(self.set, ordinal) {
            if self.observed.claims.contains_key(&claim.name_any()) {
                continue;
            }
            let owners = retention_owners(self.set, &[], None, true);
            claim.metadata.owner_references = (!owners.is_empty()).then_some(owners);
            step.push(Action::CreateClaim { claim });
        }
    }

    /// Owner-reference changes that the retention policy asks of the member's claims.
    fn claim_owner_fixes(&mut self, ordinal: i32, pod: &Pod) -> Step {
        let in_range = (self.start..self.end).contains(&ordinal);
        let pod_name = pod.name_any();
        let mut step = Vec::new();
        for template in &self.set.spec.volume_claim_templates {
            let name = identity::claim_name(&template.name_any(), &self.set_name, ordinal);
            let Some(claim) = self.observed.claims.get(&name) else { continue };
            if claim.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let set_uid = self.set.uid().unwrap_or_default();
            if claim.owner_references().iter().any(|r| r.controller == Some(true) && r.uid != set_uid) {
                self.plan.warnings.push(format!(
                    "claim {name} of {pod_name} is controlled by another object; its owner references are left alone"
                ));
                continue;
            }
            let owners = retention_owners(self.set, claim.owner_references(), Some(pod), in_range);
            if owners != claim.owner_references() {
                step.push(Action::SetClaimOwners { name, pod: pod_name.clone(), owners });
            }
        }
        step
    }

    /// Claims the set owns whose member does not exist (scaled away, or not created
    /// yet) follow the policy in force too: a policy changed to Retain after a
    /// scale-down must not leave them to the garbage collector with the set.
    fn memberless_claim_fixes(&self) -> Vec<Step> {
        let set_uid = self.set.uid().unwrap_or_default();
        let scaled_delete = self.set.spec.retention_policy().when_scaled == RetentionPolicyType::Delete;
        let members: std::collections::BTreeSet<i32> =
            self.in_range.keys().copied().chain(self.condemned.iter().map(|(o, _)| *o)).collect();
        let mut steps = Vec::new();
        for (name, claim) in &self.observed.claims {
            let Some(ordinal) = identity::claim_ordinal(self.set, name) else { continue };
            let refs = claim.owner_references();
            let set_owned = refs.iter().any(|r| r.uid == set_uid);
            let other_controller = refs.iter().any(|r| r.controller == Some(true) && r.uid != set_uid);
            if members.contains(&ordinal)
                || claim.metadata.deletion_timestamp.is_some()
                || !set_owned
                || other_controller
            {
                continue;
            }
            let in_range = (self.start..self.end).contains(&ordinal);
            // Out of range under whenScaled: Delete, the policy wants it gone anyway.
            if !in_range && scaled_delete {
                continue;
            }
            let owners = retention_owners(self.set, refs, None, in_range);
            if owners != refs {
                let pod = identity::pod_name(&self.set_name, ordinal);
                steps.push(vec![Action::SetClaimOwners { name: name.clone(), pod, owners }]);
            }
        }
        steps
    }

    /// A condemned member (upstream's processCondemned).
    fn condemn(&mut self, ordinal: i32, pod: &Pod, first_unhealthy: Option<i32>, out: &mut Vec<Step>) -> Flow {
        let name = pod.name_any();
        if is_terminating(pod) {
            return if self.ordered { self.wait(format!("waiting for {name} to terminate")) } else { Flow::Continue };
        }
        if self.ordered && first_unhealthy != Some(ordinal) {
            if !is_running_and_ready(pod) {
                return self.wait(format!("scale-down waits for unhealthy {name} to be Running and Ready"));
            }
            if let Some(left) = until_available(pod, self.min_ready, self.observed.now).filter(|d| !d.is_zero()) {
                self.requeue(left);
                return self.wait(format!("scale-down waits for {name} to be Available"));
            }
        }
        out.push(vec![Action::DeletePod {
            name: name.clone(),
            uid: pod.uid().unwrap_or_default(),
            reason: DeleteReason::ScaleDown,
        }]);
        if self.ordered { self.wait(format!("waiting for {name} to terminate")) } else { Flow::Continue }
    }

    /// RollingUpdate (upstream's sync step 7): replace pods at an old revision from the
    /// highest ordinal down to start + partition.
    fn update(&mut self) {
        if self.set.spec.update_strategy_type() == UpdateStrategyType::OnDelete {
            return;
        }
        let floor = self.start.saturating_add(self.set.spec.partition());
        match self.set.spec.max_unavailable() {
            None => self.update_one_at_a_time(floor),
            Some(max) => self.update_with_max_unavailable(floor, max),
        }
    }

    fn outdated(&self, pod: &Pod) -> bool {
        pod.labels().get(REVISION_LABEL) != Some(&self.revisions.update)
    }

    fn replace(&mut self, pod: &Pod) -> Step {
        let (name, uid) = (pod.name_any(), pod.uid().unwrap_or_default());
        let from = pod.labels().get(REVISION_LABEL).cloned().unwrap_or_default();
        self.plan.waiting.get_or_insert(format!("replacing {name} ({from} -> {})", self.revisions.update));
        vec![Action::DeletePod { name, uid, reason: DeleteReason::Update }]
    }

    /// `ordinals` (the top of [floor, end) down) with the leader's moved to the end: a
    /// rolling update replaces followers first. Lazy, so a walk that stops early costs
    /// only its steps.
    fn leader_last(&self, floor: i32, ordinals: impl Iterator<Item = i32>) -> impl Iterator<Item = i32> {
        let leader = self.leader.as_deref().and_then(|l| identity::ordinal_of(&self.set_name, l));
        let leader_in_range = leader.filter(|l| (floor..self.end).contains(l));
        ordinals.filter(move |o| Some(*o) != leader).chain(leader_in_range)
    }

    /// The classic update: the first outdated pod from the top is replaced; an unhealthy
    /// pod on the way waits.
    fn update_one_at_a_time(&mut self, floor: i32) {
        let order: Vec<i32> = self.leader_last(floor, (floor..self.end).rev()).take(self.in_range.len() + 1).collect();
        for ordinal in order {
            let Some(pod) = self.in_range.get(&ordinal).copied() else {
                self.wait(format!(
                    "rolling update waits for {} to be created",
                    identity::pod_name(&self.set_name, ordinal)
                ));
                return;
            };
            if self.outdated(pod) && !is_terminating(pod) {
                let step = self.replace(pod);
                self.push_batch(vec![step]);
                return;
            }
            if !is_healthy(pod) {
                self.wait(format!("rolling update waits for {} to be healthy", pod.name_any()));
                return;
            }
        }
    }

    /// With maxUnavailable: as many outdated pods from the top as keeps the unavailable
    /// pods of the set (in range, missing ones included) within the limit.
    fn update_with_max_unavailable(&mut self, floor: i32, max: i32) {
        let now = self.observed.now;
        let unavailable = self
            .in_range
            .values()
            .filter(|p| is_terminating(p) || !is_running_and_available(p, self.min_ready, now))
            .count()
            .saturating_add(self.missing());
        let unavailable = i32::try_from(unavailable).unwrap_or(i32::MAX);
        if unavailable >= max {
            self.wait(format!("rolling update waits: {unavailable} pods unavailable, maxUnavailable is {max}"));
            return;
        }
        let present = self.in_range.range(floor..self.end).rev().map(|(o, _)| *o);
        let targets: Vec<&Pod> = self
            .leader_last(floor, present)
            .filter_map(|o| self.in_range.get(&o).copied())
            .filter(|p| self.outdated(p) && !is_terminating(p))
            .take((max - unavailable) as usize)
            .collect();
        let steps: Vec<Step> = targets.into_iter().map(|p| self.replace(p)).collect();
        self.push_batch(steps);
    }
}

/// The owner references the retention policy wants on a member's claim (upstream's
/// updateClaimOwnerRefForSetAndPod): the set as controller when `whenDeleted: Delete`
/// (while the member is in range, for Delete/Delete), the pod when `whenScaled: Delete`
/// and the member is out of range. Other owners are kept as they are.
pub fn retention_owners(
    set: &PetSet,
    current: &[OwnerReference],
    pod: Option<&Pod>,
    in_range: bool,
) -> Vec<OwnerReference> {
    let policy = set.spec.retention_policy();
    let delete = RetentionPolicyType::Delete;
    let set_uid = set.uid().unwrap_or_default();
    let pod_uid = pod.and_then(|p| p.uid());
    let want_set = policy.when_deleted == delete && (in_range || policy.when_scaled != delete);
    let want_pod = policy.when_scaled == delete && !in_range;

    let mut owners: Vec<OwnerReference> =
        current.iter().filter(|r| r.uid != set_uid && Some(&r.uid) != pod_uid.as_ref()).cloned().collect();
    if want_set {
        owners.push(identity::controller_ref(set));
    }
    if let (true, Some(pod)) = (want_pod, pod) {
        owners.push(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
            controller: None,
            block_owner_deletion: None,
        });
    }
    // Keep the order the claim already has, so an unchanged claim compares equal.
    owners.sort_by_key(|r| current.iter().position(|c| c.uid == r.uid).unwrap_or(usize::MAX));
    owners
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
