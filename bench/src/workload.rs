//! The sets both controllers run: one spec, written once, sent as a StatefulSet to
//! upstream and as a PetSet (whose spec is a StatefulSet spec) to petset.

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
};
use petset_crd::PetSet;
use serde_json::{Value, json};

use crate::controllers::Controller;

/// Pod labels and annotations the benchmark reads back.
pub const SCENARIO: &str = "bench.petset.dev/scenario";
pub const SET: &str = "bench.petset.dev/set";
pub const REVISION: &str = "bench.petset.dev/revision";

/// The spec of one set: `pods` replicas of a one-container pod with one claim.
pub fn spec(scenario: &str, set: &str, pods: u32, policy: &str) -> Value {
    json!({
        "replicas": pods,
        "podManagementPolicy": policy,
        "serviceName": set,
        "selector": {"matchLabels": {SET: set}},
        "template": {
            "metadata": {
                "labels": {SET: set, SCENARIO: scenario},
                "annotations": {REVISION: "1"},
            },
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "registry.k8s.io/pause:3.10",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }],
            },
        },
        "volumeClaimTemplates": [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }],
    })
}

/// The API of the kind `controller` runs, in `namespace`.
pub fn sets(client: &Client, namespace: &str, controller: Controller) -> (Api<DynamicObject>, ApiResource) {
    let resource = match controller {
        Controller::Upstream => ApiResource::erase::<StatefulSet>(&()),
        Controller::Petset => ApiResource::erase::<PetSet>(&()),
    };
    (Api::namespaced_with(client.clone(), namespace, &resource), resource)
}

pub async fn create(api: &Api<DynamicObject>, resource: &ApiResource, name: &str, spec: Value) -> kube::Result<()> {
    let object = DynamicObject::new(name, resource).data(json!({ "spec": spec }));
    api.create(&PostParams::default(), &object).await.map(drop)
}

/// A merge patch of the spec, the same JSON for both kinds.
pub async fn patch_spec(api: &Api<DynamicObject>, name: &str, spec: Value) -> kube::Result<()> {
    api.patch(name, &PatchParams::default(), &Patch::Merge(json!({ "spec": spec }))).await.map(drop)
}

pub fn new_revision(revision: &str) -> Value {
    json!({"template": {"metadata": {"annotations": {REVISION: revision}}}})
}

pub fn replicas(n: u32) -> Value {
    json!({ "replicas": n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spec_reads_as_both_kinds() {
        let spec = spec("burst", "burst-0", 30, "Parallel");
        let upstream: k8s_openapi::api::apps::v1::StatefulSetSpec = serde_json::from_value(spec.clone()).unwrap();
        let petset: petset_crd::PetSetSpec = serde_json::from_value(spec).unwrap();
        assert_eq!(upstream.replicas, Some(30));
        assert_eq!(petset.replicas(), 30);
        assert_eq!(upstream.pod_management_policy.as_deref(), Some("Parallel"));
    }
}
