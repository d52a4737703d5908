//! A member's stable identity, as apps/v1 StatefulSet defines it: names, the identity
//! labels, hostname and subdomain, the claims and the pod volumes that mount them.
//! Pure functions; nothing here talks to the API server.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt, api::ObjectMeta};
use petset_crd::PetSet;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The PetSet an object was made for, by name: on every member pod, so Services can
/// select one set's pods whatever its selector (a Service selector is equality-only, a
/// PetSet's may be only `matchExpressions`), and on the cluster objects (peers
/// ConfigMap, Services, Lease), which are watched by it.
pub const PART_OF_LABEL: &str = "petset.dev/part-of";

pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The ordinal of a member pod, or None when the name is not `<set>-<non-negative int>`
/// (such a pod is not a member, whatever its labels say).
pub fn ordinal_of(set: &str, pod_name: &str) -> Option<i32> {
    let digits = pod_name.strip_prefix(set)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// The ordinal of a claim of one of the set's templates, or None when the name is not
/// `<template>-<set>-<ordinal>`.
pub fn claim_ordinal(set: &PetSet, claim: &str) -> Option<i32> {
    let set_name = set.metadata.name.as_deref()?;
    set.spec.volume_claim_templates.iter().find_map(|t| {
        let rest = claim.strip_prefix(t.metadata.name.as_deref()?)?.strip_prefix('-')?;
        ordinal_of(set_name, rest)
    })
}

/// A controller reference to the set, as on every pod it owns.
pub fn controller_ref(set: &PetSet) -> OwnerReference {
    set.controller_owner_ref(&()).expect("a PetSet read from the API server has a name and uid")
}

/// The pod for `ordinal` at `revision`, built from the template that revision holds
/// (not necessarily the spec's: a pod below a partition stays at the current one),
/// plus the identity.
pub fn new_pod(set: &PetSet, ordinal: i32, revision: &str, template: &PodTemplateSpec) -> Pod {
    let name = pod_name(&set.name_any(), ordinal);
    let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), revision.into());
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: template.metadata.as_ref().and_then(|m| m.annotations.clone()),
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    };
    set_identity_labels(set, &mut pod, ordinal);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = pod.metadata.name.clone();
    spec.subdomain = set.spec.service_name.clone().filter(|s| !s.is_empty());
    set_storage(set, &mut pod, ordinal);
    pod
}

/// The labels `set_identity_labels` writes.
pub const IDENTITY_LABELS: [&str; 3] = [POD_NAME_LABEL, POD_INDEX_LABEL, PART_OF_LABEL];

/// Writes the identity labels. Upstream fixes these on a live pod when they drift;
/// hostname and subdomain are immutable pod fields, set once by `new_pod`.
pub fn set_identity_labels(set: &PetSet, pod: &mut Pod, ordinal: i32) {
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.into(), pod_name(&set.name_any(), ordinal));
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(PART_OF_LABEL.into(), set.name_any());
}

/// Whether the pod carries the identity labels of `ordinal`.
pub fn identity_matches(set: &PetSet, pod: &Pod, ordinal: i32) -> bool {
    let name = pod_name(&set.name_any(), ordinal);
    let labels = pod.labels();
    pod.metadata.name.as_deref() == Some(name.as_str())
        && pod.metadata.namespace == set.namespace()
        && labels.get(POD_NAME_LABEL) == Some(&name)
        && labels.get(POD_INDEX_LABEL) == Some(&ordinal.to_string())
        && labels.get(PART_OF_LABEL) == set.metadata.name.as_ref()
}

/// Whether `obj` is controlled by `set`.
pub fn controlled_by(obj: &impl Resource, set: &PetSet) -> bool {
    controller_of(obj).is_some_and(|r| Some(&r.uid) == set.metadata.uid.as_ref())
}

/// The controller reference of `obj`, if it has one.
pub fn controller_of(obj: &impl Resource) -> Option<&OwnerReference> {
    obj.meta().owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// Replaces each pod volume named like a claim template with the member's claim, and
/// adds the ones missing.
fn set_storage(set: &PetSet, pod: &mut Pod, ordinal: i32) {
    let set_name = set.name_any();
    let spec = pod.spec.get_or_insert_with(Default::default);
    let mut volumes: Vec<Volume> = spec.volumes.take().unwrap_or_default();
    for template in &set.spec.volume_claim_templates {
        let template_name = template.name_any();
        volumes.retain(|v| v.name != template_name);
        volumes.push(Volume {
            name: template_name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&template_name, &set_name, ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
}

/// The claims the member `ordinal` needs, as they are created: the template's metadata
/// and spec, its name, and the template and selector labels.
pub fn new_claims(set: &PetSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let set_name = set.name_any();
    let selector_labels = set.spec.selector.match_labels.clone().unwrap_or_default();
    set.spec
        .volume_claim_templates
        .iter()
        .map(|template| {
            let mut labels: BTreeMap<String, String> = template.labels().clone();
            labels.extend(selector_labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&template.name_any(), &set_name, ordinal)),
                    namespace: set.namespace(),
                    labels: Some(labels),
                    annotations: template.metadata.annotations.clone(),
                    finalizers: None,
                    ..Default::default()
                },
                spec: template.spec.clone(),
                status: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::petset;

    #[test]
    fn ordinals_parse_only_from_member_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "web-1-2"), None);
        assert_eq!(ordinal_of("web", "webx-1"), None);
        assert_eq!(ordinal_of("web-1", "web-1-3"), Some(3));
        assert_eq!(ordinal_of("web", "web-99999999999"), None, "beyond i32");
    }

    #[test]
    fn pod_gets_the_identity_of_its_ordinal() {
        let set = petset("web", 3);
        let pod = new_pod(&set, 2, "web-abc", &set.spec.template);
        assert_eq!(pod.name_any(), "web-2");
        let labels = pod.labels();
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[REVISION_LABEL], "web-abc");
        assert_eq!(labels[PART_OF_LABEL], "web");
        assert_eq!(labels["app"], "web");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        let owner = &pod.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("PetSet", Some(true)));
        assert!(identity_matches(&set, &pod, 2));
        assert!(!identity_matches(&set, &pod, 1));
    }

    #[test]
    fn claims_replace_same_named_pod_volumes() {
        let set = petset("web", 3);
        let pod = new_pod(&set, 1, "r", &set.spec.template);
        let volumes = pod.spec.unwrap().volumes.unwrap();
        let www: Vec<_> = volumes.iter().filter(|v| v.name == "www").collect();
        assert_eq!(www.len(), 1);
        assert_eq!(www[0].persistent_volume_claim.as_ref().unwrap().claim_name, "www-web-1");
        let claims = new_claims(&set, 1);
        assert_eq!(claims[0].name_any(), "www-web-1");
        assert_eq!(claims[0].labels()["app"], "web");
    }
}
