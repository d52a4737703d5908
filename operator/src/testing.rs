//! Builders for the pure tests.

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use petset_crd::PetSet;

/// The classic `web` example: nginx, one claim `www`, governed by Service `web`.
pub fn petset(name: &str, replicas: i32) -> PetSet {
    let yaml = format!(
        r#"
apiVersion: petset.dev/v1alpha1
kind: PetSet
metadata: {{name: {name}, namespace: ns, uid: set-uid, generation: 1}}
spec:
  replicas: {replicas}
  serviceName: web
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: nginx, image: nginx}}]
  volumeClaimTemplates:
  - metadata: {{name: www}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Gi}}}}
"#
    );
    serde_saphyr::from_str(&yaml).expect("valid test PetSet")
}

/// Seconds after the epoch, as a timestamp.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

/// A pod with a phase and a Ready condition (True since `ready_since` when given).
pub fn pod_with(name: &str, phase: &str, ready: bool, ready_since: Option<Timestamp>) -> Pod {
    Pod {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some("ns".into()), ..Default::default() },
        spec: None,
        status: Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: ready_since.map(Time),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}
