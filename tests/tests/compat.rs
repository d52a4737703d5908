//! A StatefulSet's manifest becomes a PetSet's by changing `apiVersion` and `kind`: what
//! apps/v1 accepts, the PetSet API accepts, and the pods and claims come out the same as
//! the plane's own StatefulSet controller makes them.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use petset_tests::{TIMEOUT, TestNs, in_namespace, run_tool, wait_for};

/// Quantities as YAML numbers, as many public charts write them; `{kind}` and `{name}`
/// are filled in.
const NUMERIC_QUANTITIES: &str = r#"
apiVersion: {api}
kind: {kind}
metadata: {name: {name}}
spec:
  replicas: 1
  serviceName: {name}
  selector: {matchLabels: {app: {name}}}
  template:
    metadata: {labels: {app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: registry.k8s.io/pause:3.10
        resources: {requests: {cpu: 0.25, memory: 1e8}, limits: {cpu: 1}}
        env: [{name: CPU_MILLIS, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 0.001}}}]
        volumeMounts: [{name: scratch, mountPath: /scratch}]
      volumes: [{name: scratch, emptyDir: {sizeLimit: 5e8}}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1073741824}}}
"#;

fn manifest(api: &str, kind: &str, name: &str) -> String {
    NUMERIC_QUANTITIES.replace("{api}", api).replace("{kind}", kind).replace("{name}", name)
}

#[tokio::test]
async fn numeric_quantities_apply_and_reach_pods_and_claims_as_for_a_statefulset() -> anyhow::Result<()> {
    in_namespace("numeric-quantities", |ns| async move {
        let _op = ns.start_operator().await;
        let apply = |yaml: String| {
            let ns = ns.name.clone();
            async move { run_tool("kubectl", &["apply", "-n", &ns, "-f", "-"], Some(&yaml)).await }
        };
        apply(manifest("apps/v1", "StatefulSet", "sts")).await?;
        apply(manifest("petset.dev/v1alpha1", "PetSet", "pet")).await?;

        let upstream = pod(&ns, "sts-0").await?;
        let ours = ns.wait_ready("pet", [0]).await?.remove(0);
        let (upstream, ours) = (upstream.spec.unwrap(), ours.spec.unwrap());
        assert_eq!(
            ours.containers[0].resources, upstream.containers[0].resources,
            "the pod's resources differ from the StatefulSet's pod"
        );
        let requests = ours.containers[0].resources.as_ref().and_then(|r| r.requests.clone()).unwrap_or_default();
        assert_eq!(requests.get("cpu").map(|q| q.0.as_str()), Some("250m"), "{requests:?}");
        assert_eq!(ours.containers[0].env, upstream.containers[0].env, "the resourceFieldRef divisor differs");
        let size = |spec: &k8s_openapi::api::core::v1::PodSpec| {
            spec.volumes.iter().flatten().find(|v| v.name == "scratch").and_then(|v| v.empty_dir.clone())
        };
        assert_eq!(size(&ours), size(&upstream), "the emptyDir sizeLimit differs");

        let storage = |claim: PersistentVolumeClaim| claim.spec.and_then(|s| s.resources).and_then(|r| r.requests);
        let claims = ns.api::<PersistentVolumeClaim>();
        let theirs = claims.get("data-sts-0").await?;
        let ours = claims.get("data-pet-0").await?;
        assert_eq!(storage(ours.clone()), storage(theirs), "the claim's request differs");
        assert_eq!(storage(ours).unwrap()["storage"].0, "1073741824");

        // What is no quantity at all is stored (a quantity's schema cannot be typed), and
        // reported on the set with the field named; nothing is made from it.
        apply(manifest("petset.dev/v1alpha1", "PetSet", "bad").replace("cpu: 1}", "cpu: [1]}")).await?;
        let named = "spec.template.spec.containers[0].resources.limits[cpu] must be a quantity";
        ns.wait_event("bad", "Undecodable", named).await?;
        anyhow::ensure!(ns.pods_of("bad").await?.is_empty(), "pods were made from a template petset cannot read");
        Ok(())
    })
    .await
}

/// The pod the plane's StatefulSet controller made, once it exists.
async fn pod(ns: &TestNs, name: &str) -> anyhow::Result<Pod> {
    let found = wait_for(&ns.pods(), name, "created", TIMEOUT, |p| p.is_some()).await?;
    Ok(found.expect("waited for it"))
}
