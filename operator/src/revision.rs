//! Template revisions, as apps/v1 keeps them: one ControllerRevision per distinct pod
//! template, named `<set>-<hash>`, owned by the set and numbered in the order the
//! templates were applied. The name is the pod label `controller-revision-hash`.
//!
//! The hash depends on nothing but the template and the collision count, so a
//! restarted or upgraded operator never rolls pods whose template did not change.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::{ResourceExt, api::ObjectMeta, core::Selector, core::SelectorExt};
use petset_crd::PetSet;
use serde_json::json;

use crate::identity::{self, REVISION_LABEL};

/// Names the revision a set without a recorded `status.currentRevision` started its
/// rollout from. `kubectl petset migrate` sets it, so a StatefulSet taken over in the
/// middle of a partitioned rollout keeps the pods below the partition where they are.
pub const CURRENT_REVISION_ANNOTATION: &str = "petset.dev/current-revision";

/// Upstream's alphabet for hashes in names: no vowels (no words), no look-alikes.
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The label upstream puts on ControllerRevisions with their hash.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// `<set>-<hash>`, the way apps/v1 names ControllerRevisions.
pub fn revision_name(set: &str, template: &PodTemplateSpec, collision_count: i32) -> String {
    format!("{set}-{}", template_hash(template, collision_count))
}

/// FNV-1a (32 bits) over the template's JSON and the collision count, written as the
/// decimal digits of the hash mapped onto the safe alphabet (upstream's encoding).
pub fn template_hash(template: &PodTemplateSpec, collision_count: i32) -> String {
    // Serialization of a typed template is deterministic: fields in declaration order,
    // maps sorted, absent optionals left out (so new, unset API fields change nothing).
    let mut bytes = serde_json::to_vec(template).expect("a pod template serializes");
    if collision_count > 0 {
        bytes.extend_from_slice(&collision_count.to_le_bytes());
    }
    let hash = fnv1a32(&bytes);
    hash.to_string().bytes().map(|d| SAFE[d as usize % SAFE.len()] as char).collect()
}

/// FNV-1a, 32 bits: small, stable across versions and platforms.
pub(crate) fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| (h ^ *b as u32).wrapping_mul(0x0100_0193))
}

/// The template a revision holds.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let data = revision.data.as_ref()?;
    serde_json::from_value(data.0.get("spec")?.get("template")?.clone()).ok()
}

/// A new revision of the set's current template.
pub fn new_revision(set: &PetSet, name: String, number: i64) -> ControllerRevision {
    let mut labels = set.spec.selector.match_labels.clone().unwrap_or_default();
    labels.insert(HASH_LABEL.into(), name.rsplit('-').next().unwrap_or_default().to_string());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace(),
            labels: Some(labels),
            owner_references: Some(vec![identity::controller_ref(set)]),
            ..Default::default()
        },
        data: Some(RawExtension(json!({ "spec": { "template": set.spec.template } }))),
        revision: number,
    }
}

/// What the revisions need, and which ones the pods start from and go to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RevisionPlan {
    /// The revision the rollout started from.
    pub current: String,
    /// The revision the template asks for.
    pub update: String,
    /// The template `current` holds: pods that stay at the current revision (below a
    /// partition) are built from it, never from the spec's newer template.
    pub current_template: PodTemplateSpec,
    /// The name for the template is taken by another template: bump the set's
    /// `collisionCount` and plan again.
    pub collision: bool,
    pub actions: Vec<RevisionAction>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RevisionAction {
    Adopt {
        name: String,
        uid: String,
    },
    Create(Box<ControllerRevision>),
    /// A rollback to an older template: it becomes the newest revision again.
    Renumber {
        name: String,
        revision: i64,
    },
    /// History beyond revisionHistoryLimit.
    Delete {
        name: String,
        uid: String,
    },
}

/// Upstream's sync steps 2 and 8 (find or create the update revision, truncate
/// history) for the revisions of the set's namespace and its member pods.
pub fn plan_revisions(set: &PetSet, selector: &Selector, all: &[ControllerRevision], pods: &[&Pod]) -> RevisionPlan {
    let set_uid = set.uid();
    // A set being deleted adopts nothing: with `--cascade=orphan` the garbage collector
    // has just released its revisions, and one adopted again would be deleted with it.
    let adopting = set.metadata.deletion_timestamp.is_none();
    let mut plan = RevisionPlan::default();
    let mut owned: Vec<&ControllerRevision> = Vec::new();
    for revision in all {
        let controller = revision.owner_references().iter().find(|r| r.controller == Some(true));
        match controller {
            Some(r) if Some(&r.uid) == set_uid.as_ref() => owned.push(revision),
            None if adopting
                && selector.matches(revision.labels())
                && revision.metadata.deletion_timestamp.is_none() =>
            {
                plan.actions
                    .push(RevisionAction::Adopt { name: revision.name_any(), uid: revision.uid().unwrap_or_default() });
                owned.push(revision);
            }
            _ => {}
        }
    }
    owned.sort_by_key(|r| (r.revision, r.name_any()));
    let newest = owned.last().map_or(0, |r| r.revision);

    let collisions = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let template = &set.spec.template;
    let wanted = revision_name(&set.name_any(), template, collisions);
    let equal: Option<&ControllerRevision> =
        owned.iter().rev().find(|r| template_of(r).as_ref() == Some(template)).copied();
    plan.update = match equal {
        Some(r) => {
            if r.revision != newest {
                plan.actions.push(RevisionAction::Renumber { name: r.name_any(), revision: newest.saturating_add(1) });
            }
            r.name_any()
        }
        None if all.iter().any(|r| r.name_any() == wanted) => {
            // The name is taken by a different template (a hash collision, or someone
            // else's object): upstream's answer is a new collision count.
            plan.collision = true;
            return plan;
        }
        None => {
            plan.actions.push(RevisionAction::Create(Box::new(new_revision(
                set,
                wanted.clone(),
                newest.saturating_add(1),
            ))));
            wanted
        }
    };
    // The recorded current revision counts only while its template can be read back:
    // a pod labelled with it must run exactly what it holds.
    let recorded = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.as_deref())
        .or_else(|| set.annotations().get(CURRENT_REVISION_ANNOTATION).map(String::as_str));
    let current = recorded
        .and_then(|c| owned.iter().find(|r| r.metadata.name.as_deref() == Some(c)))
        .and_then(|r| Some((r.name_any(), template_of(r)?)));
    (plan.current, plan.current_template) = current.unwrap_or_else(|| (plan.update.clone(), template.clone()));

    // History: keep the live revisions (current, update, any a pod runs) and the
    // newest revisionHistoryLimit others.
    let mut live: BTreeSet<String> = pods.iter().filter_map(|p| p.labels().get(REVISION_LABEL).cloned()).collect();
    live.insert(plan.current.clone());
    live.insert(plan.update.clone());
    let history: Vec<&&ControllerRevision> = owned.iter().filter(|r| !live.contains(&r.name_any())).collect();
    let excess = history.len().saturating_sub(set.spec.revision_history_limit() as usize);
    for r in history.into_iter().take(excess) {
        plan.actions.push(RevisionAction::Delete { name: r.name_any(), uid: r.uid().unwrap_or_default() });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::petset;

    fn selector(set: &PetSet) -> Selector {
        Selector::try_from(set.spec.selector.clone()).unwrap()
    }

    /// Revisions as the API server would hold them after each template in turn.
    fn stored(set: &PetSet, images: &[&str]) -> Vec<ControllerRevision> {
        images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                let mut s = set.clone();
                s.spec.template.spec.as_mut().unwrap().containers[0].image = Some(image.to_string());
                let mut r = new_revision(&s, revision_name("web", &s.spec.template, 0), i as i64 + 1);
                r.metadata.uid = Some(format!("rev-{i}"));
                r
            })
            .collect()
    }

    fn with_image(image: &str) -> PetSet {
        let mut set = petset("web", 3);
        set.spec.template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
        set
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn hash_is_stable_across_operator_versions() {
        // Pinned: a change here would make every running pod look outdated after an
        // operator upgrade and roll every PetSet in the cluster.
        let set = petset("web", 3);
        assert_eq!(revision_name("web", &set.spec.template, 0), "web-6c8ffc4f57");
    }

    #[test]
    fn collisions_and_template_changes_give_new_names() {
        let set = petset("web", 3);
        let base = template_hash(&set.spec.template, 0);
        assert_ne!(base, template_hash(&set.spec.template, 1));
        let mut changed = set.spec.template.clone();
        changed.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        assert_ne!(base, template_hash(&changed, 0));
    }

    #[test]
    fn first_revision_is_created() {
        let set = with_image("a");
        let plan = plan_revisions(&set, &selector(&set), &[], &[]);
        assert!(matches!(&plan.actions[..], [RevisionAction::Create(r)] if r.revision == 1));
        assert_eq!(plan.current, plan.update);
    }

    #[test]
    fn an_unchanged_template_reuses_its_revision() {
        let set = with_image("b");
        let revs = stored(&set, &["a", "b"]);
        let plan = plan_revisions(&set, &selector(&set), &revs, &[]);
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert_eq!(plan.update, revs[1].name_any());
    }

    #[test]
    fn rollback_reuses_the_older_revision_with_the_newest_number() {
        let set = with_image("a");
        let revs = stored(&set, &["a", "b"]);
        let plan = plan_revisions(&set, &selector(&set), &revs, &[]);
        assert_eq!(plan.update, revs[0].name_any());
        assert_eq!(plan.actions, [RevisionAction::Renumber { name: revs[0].name_any(), revision: 3 }]);
    }

    #[test]
    fn a_taken_name_with_another_template_is_a_collision() {
        let set = with_image("c");
        let mut revs = stored(&set, &["a"]);
        revs[0].metadata.name = Some(revision_name("web", &set.spec.template, 0));
        let plan = plan_revisions(&set, &selector(&set), &revs, &[]);
        assert!(plan.collision);
    }

    #[test]
    fn history_keeps_live_revisions_and_the_limit() {
        let mut set = with_image("e");
        set.spec.revision_history_limit = Some(1);
        let revs = stored(&set, &["a", "b", "c", "d", "e"]);
        // A pod still runs "b"; status says the rollout started from "d".
        let mut pod = crate::identity::new_pod(&set, 0, &revs[1].name_any(), &set.spec.template);
        pod.metadata.uid = Some("p".into());
        set.status =
            Some(petset_crd::PetSetStatus { current_revision: Some(revs[3].name_any()), ..Default::default() });
        let plan = plan_revisions(&set, &selector(&set), &revs, &[&pod]);
        let deleted: Vec<_> = plan
            .actions
            .iter()
            .filter_map(|a| if let RevisionAction::Delete { name, .. } = a { Some(name.clone()) } else { None })
            .collect();
        // Live: b (pod), d (current), e (update). History a, c: keep the newest one.
        assert_eq!(deleted, [revs[0].name_any()]);
    }

    #[test]
    fn matching_orphans_are_adopted() {
        let set = with_image("a");
        let mut revs = stored(&set, &["a"]);
        revs[0].metadata.owner_references = None;
        let plan = plan_revisions(&set, &selector(&set), &revs, &[]);
        assert_eq!(plan.actions, [RevisionAction::Adopt { name: revs[0].name_any(), uid: "rev-0".into() }]);
        assert_eq!(plan.update, revs[0].name_any());
    }

    #[test]
    fn a_set_without_status_starts_from_the_revision_its_annotation_names() {
        let mut set = with_image("b");
        let revs = stored(&set, &["a", "b"]);
        set.metadata.annotations = Some([(CURRENT_REVISION_ANNOTATION.to_string(), revs[0].name_any())].into());
        let plan = plan_revisions(&set, &selector(&set), &revs, &[]);
        assert_eq!(
            (plan.current.as_str(), plan.update.as_str()),
            (revs[0].name_any().as_str(), revs[1].name_any().as_str())
        );
        assert_eq!(plan.current_template, template_of(&revs[0]).unwrap());
        // Once status records a current revision, the annotation no longer counts.
        set.status =
            Some(petset_crd::PetSetStatus { current_revision: Some(revs[1].name_any()), ..Default::default() });
        assert_eq!(plan_revisions(&set, &selector(&set), &revs, &[]).current, revs[1].name_any());
    }

    #[test]
    fn a_set_being_deleted_adopts_no_revision() {
        let mut set = with_image("a");
        set.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let mut revs = stored(&set, &["a"]);
        revs[0].metadata.owner_references = None;
        let plan = plan_revisions(&set, &selector(&set), &revs, &[]);
        assert!(!plan.actions.iter().any(|a| matches!(a, RevisionAction::Adopt { .. })), "{:?}", plan.actions);
    }
}
