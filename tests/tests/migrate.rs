//! `kubectl petset migrate`, both ways, against the plane's own StatefulSet controller
//! (kube-controller-manager): no pod deleted or restarted, claims and revisions kept.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::{ControllerRevision, StatefulSet},
    core::v1::{PersistentVolumeClaim, Pod},
};
use kube::{ResourceExt, api::ListParams};
use petset_tests::{TIMEOUT, TestNs, in_namespace, process::kubectl_petset as petset, run_tool, wait_for};
use serde_json::json;

const OLD: &str = "registry.k8s.io/nginx-slim:0.27";
const NEW: &str = "registry.k8s.io/nginx-slim:0.28";

/// A StatefulSet as a database team writes one: ordinals from 2, claims deleted with
/// the set, and `extra` YAML lines in its spec.
fn statefulset(policy: &str, replicas: i32, extra: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  replicas: {replicas}
  serviceName: db
  podManagementPolicy: {policy}
  ordinals: {{start: 2}}
  selector: {{matchLabels: {{app: db}}}}
  persistentVolumeClaimRetentionPolicy: {{whenDeleted: Delete, whenScaled: Retain}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: db, image: {OLD}}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}
{extra}"#
    )
}

async fn kubectl(ns: &TestNs, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let mut all = vec!["-n", ns.name.as_str()];
    all.extend_from_slice(args);
    run_tool("kubectl", &all, stdin).await
}

/// What must not change across a migration: pod name -> (uid, revision label, image),
/// claim name -> uid, revision name -> uid.
#[derive(Debug, PartialEq)]
struct Kept {
    pods: BTreeMap<String, (String, String, String)>,
    claims: BTreeMap<String, String>,
    revisions: BTreeMap<String, String>,
}

async fn kept(ns: &TestNs) -> anyhow::Result<Kept> {
    let pods = ns.pods().list(&ListParams::default().labels("app=db")).await?.items;
    let image = |p: &Pod| p.spec.as_ref().and_then(|s| s.containers[0].image.clone()).unwrap_or_default();
    let revisions = ns.api::<ControllerRevision>().list(&ListParams::default()).await?.items;
    Ok(Kept {
        pods: pods
            .iter()
            .map(|p| {
                let revision = p.labels().get("controller-revision-hash").cloned().unwrap_or_default();
                (p.name_any(), (p.uid().unwrap_or_default(), revision, image(p)))
            })
            .collect(),
        claims: ns.claim_uids().await?,
        revisions: revisions.iter().map(|r| (r.name_any(), r.uid().unwrap_or_default())).collect(),
    })
}

fn controller_kind<K: ResourceExt>(object: &K) -> Option<String> {
    object.owner_references().iter().find(|o| o.controller == Some(true)).map(|o| o.kind.clone())
}

async fn wait_statefulset(ns: &TestNs, what: &str, cond: impl Fn(&StatefulSet) -> bool) -> anyhow::Result<StatefulSet> {
    let found = wait_for(&ns.api::<StatefulSet>(), "db", what, TIMEOUT, |s| {
        s.is_some_and(|s| s.status.as_ref().and_then(|st| st.observed_generation) == s.metadata.generation && cond(s))
    })
    .await?;
    Ok(found.expect("waited for it"))
}

#[tokio::test]
async fn a_statefulset_in_a_partitioned_rollout_becomes_a_petset_and_back_without_a_restart() -> anyhow::Result<()> {
    in_namespace("migrate-ordered", |ns| async move {
        let _op = ns.start_operator().await;
        // A canary: partition 2 of ordinals 2..5 updates only db-4.
        let partitioned = "  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 2}}\n";
        kubectl(&ns, &["apply", "-f", "-"], Some(&statefulset("OrderedReady", 3, partitioned))).await?;
        wait_statefulset(&ns, "3 Ready", |s| s.status.as_ref().is_some_and(|st| st.ready_replicas == Some(3))).await?;
        let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "db", "image": NEW}]}}}}).to_string();
        kubectl(&ns, &["patch", "statefulset", "db", "--type", "merge", "-p", &image], None).await?;
        let sts = wait_statefulset(&ns, "db-4 updated, all Ready", |s| {
            s.status.as_ref().is_some_and(|st| st.updated_replicas == Some(1) && st.ready_replicas == Some(3))
        })
        .await?;
        let upstream = sts.status.clone().unwrap_or_default();
        let before = kept(&ns).await?;
        assert_eq!(before.pods["db-4"].2, NEW);
        assert_eq!(before.pods["db-2"].2, OLD);

        let plan = petset(&ns, &["migrate", "statefulset/db", "--dry-run"]).await?;
        assert!(plan.contains("Pods (3): db-2, db-3, db-4") && plan.contains("Claims (3)"), "{plan}");
        assert!(ns.api::<StatefulSet>().get_opt("db").await?.is_some(), "--dry-run changed something");

        let done = petset(&ns, &["migrate", "statefulset/db"]).await?;
        assert!(done.contains("migrated to petset.petset.dev/db"), "{done}");
        assert_eq!(kept(&ns).await?, before, "a pod, claim or revision changed");
        // Right from the first sync: the rollout is where the StatefulSet left it.
        let set = ns.petsets().get("db").await?;
        let status = set.status.clone().unwrap_or_default();
        assert_eq!(status.current_revision, upstream.current_revision);
        assert_eq!(status.update_revision, upstream.update_revision);
        assert_eq!((status.current_replicas, status.updated_replicas, status.ready_replicas), (2, 1, 3));
        for claim in ns.api::<PersistentVolumeClaim>().list(&ListParams::default()).await? {
            assert!(
                claim.owner_references().iter().any(|o| o.kind == "PetSet"),
                "{} does not follow whenDeleted",
                claim.name_any()
            );
        }
        // The partition holds: a pod below it comes back at the revision it ran.
        ns.pods().delete("db-2", &Default::default()).await?;
        let back = wait_for(&ns.pods(), "db-2", "re-created and Ready", TIMEOUT, |p| {
            p.is_some_and(|p| {
                Some(p.uid()) != Some(before.pods.get("db-2").map(|k| k.0.clone())) && petset_tests::pod_ready(p)
            })
        })
        .await?
        .expect("waited for it");
        assert_eq!(back.spec.and_then(|s| s.containers[0].image.clone()).as_deref(), Some(OLD));

        // The way back refuses a rollout in the middle, and takes a finished one.
        let refused = petset(&ns, &["migrate", "petset/db", "--to", "statefulset"]).await.expect_err("mid-rollout");
        assert!(refused.to_string().contains("in the middle of a rollout"), "{refused}");
        ns.patch_spec("db", json!({"updateStrategy": {"rollingUpdate": {"partition": 0}}})).await?;
        ns.wait_rolled_out("db", 3).await?;
        let before = kept(&ns).await?;
        petset(&ns, &["migrate", "petset/db", "--to", "statefulset"]).await?;
        let after = kept(&ns).await?;
        assert_eq!(after.pods, before.pods, "a pod changed on the way back");
        assert_eq!(after.claims, before.claims);
        assert!(
            before.revisions.iter().all(|(n, u)| after.revisions.get(n) == Some(u)),
            "revisions lost: {before:?} -> {after:?}"
        );
        let sts = ns.api::<StatefulSet>().get("db").await?;
        assert_eq!(sts.status.and_then(|s| s.updated_replicas), Some(3));
        for pod in ns.pods().list(&ListParams::default().labels("app=db")).await? {
            assert_eq!(controller_kind(&pod).as_deref(), Some("StatefulSet"), "{}", pod.name_any());
        }
        assert!(ns.petsets().get_opt("db").await?.is_none());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_parallel_petset_becomes_a_statefulset_and_back_without_a_restart() -> anyhow::Result<()> {
    in_namespace("migrate-parallel", |ns| async move {
        let _op = ns.start_operator().await;
        let manifest = statefulset("Parallel", 4, "")
            .replace("apiVersion: apps/v1\nkind: StatefulSet", "apiVersion: petset.dev/v1alpha1\nkind: PetSet");
        kubectl(&ns, &["apply", "-f", "-"], Some(&manifest)).await?;
        ns.wait_rolled_out("db", 4).await?;
        let before = kept(&ns).await?;
        assert_eq!(before.pods.len(), 4);

        // petset names revisions by a hash of its own: the StatefulSet controller makes
        // its own revision of the same template, and the pods are relabelled, not replaced.
        petset(&ns, &["migrate", "petset/db", "--to", "statefulset"]).await?;
        let between = kept(&ns).await?;
        for (name, (uid, _, image)) in &before.pods {
            let (uid_now, _, image_now) = &between.pods[name];
            assert_eq!((uid_now, image_now), (uid, image), "{name} was replaced");
        }
        assert_eq!(between.claims, before.claims);
        let sts = wait_statefulset(&ns, "every pod updated", |s| {
            s.status.as_ref().is_some_and(|st| st.updated_replicas == Some(4))
        })
        .await?;
        let revision = sts.status.and_then(|s| s.update_revision).unwrap_or_default();
        assert!(between.pods.values().all(|(_, r, _)| *r == revision), "{between:?}");

        petset(&ns, &["migrate", "statefulset/db"]).await?;
        let after = kept(&ns).await?;
        assert_eq!(after.pods, between.pods, "a pod changed on the way in");
        assert_eq!(after.claims, before.claims);
        ns.wait_rolled_out("db", 4).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_statefulset_still_scaling_is_refused_with_the_reason() -> anyhow::Result<()> {
    in_namespace("migrate-refused", |ns| async move {
        // The node simulator holds the first pod not Ready, so OrderedReady never gets
        // to the second.
        let held = statefulset("OrderedReady", 2, "").replace(
            "metadata: {labels: {app: db}}",
            "metadata: {labels: {app: db}, annotations: {petset.dev/sim-ready: \"false\"}}",
        );
        kubectl(&ns, &["apply", "-f", "-"], Some(&held)).await?;
        wait_statefulset(&ns, "one pod", |s| s.status.as_ref().is_some_and(|st| st.replicas == 1)).await?;
        let refused = petset(&ns, &["migrate", "statefulset/db"]).await.expect_err("a scaling StatefulSet");
        assert!(refused.to_string().contains("still scaling (1 pods, 2 wanted)"), "{refused}");
        assert!(ns.api::<StatefulSet>().get_opt("db").await?.is_some());
        assert!(ns.petsets().get_opt("db").await?.is_none());
        Ok(())
    })
    .await
}
