//! The local control plane is real: the scheduler places pods on simulated nodes, the
//! node simulator runs init containers in order and obeys the health annotations, the
//! provisioner and the PV binder bind claims, and the garbage collector follows
//! ownerReferences.

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, PersistentVolumeClaim, Pod},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use petset_tests::{TIMEOUT, in_namespace, pod_phase, pod_ready, wait_for, wait_until};
use serde_json::json;

const POD_WITH_INIT: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: init-order}
spec:
  initContainers:
  - {name: first, image: busybox}
  - {name: second, image: busybox}
  containers:
  - {name: app, image: nginx}
"#;

#[tokio::test]
async fn pod_runs_init_containers_in_order_then_becomes_ready() -> anyhow::Result<()> {
    in_namespace("init-order", |ns| async move {
        ns.create::<Pod>(POD_WITH_INIT).await?;
        let pod = wait_for(&ns.pods(), "init-order", "Running and Ready", TIMEOUT, |p| {
            p.is_some_and(|p| pod_phase(p) == "Running" && pod_ready(p))
        })
        .await?
        .unwrap();
        let status = pod.status.unwrap();
        assert!(pod.spec.unwrap().node_name.is_some_and(|n| n.starts_with("kwok-node-")));
        let inits = status.init_container_statuses.unwrap_or_default();
        let names: Vec<_> = inits.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["first", "second"]);
        let terminated: Vec<_> = inits
            .iter()
            .map(|s| s.state.as_ref().and_then(|st| st.terminated.clone()).expect("init container terminated"))
            .collect();
        for t in &terminated {
            assert_eq!(t.exit_code, 0);
            assert_eq!(t.reason.as_deref(), Some("Completed"));
        }
        // In order: the second starts no earlier than the first finished.
        let first_done = terminated[0].finished_at.clone().expect("finishedAt").0;
        let second_started = terminated[1].started_at.clone().expect("startedAt").0;
        assert!(second_started >= first_done, "second init container started before the first finished");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn not_ready_annotation_holds_readiness_until_removed() -> anyhow::Result<()> {
    in_namespace("sim-ready", |ns| async move {
        ns.create::<Pod>(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: held
  annotations: {petset.dev/sim-ready: "false"}
spec:
  containers: [{name: app, image: nginx}]
"#,
        )
        .await?;
        let pods = ns.pods();
        let running_not_ready = |p: Option<&Pod>| {
            p.is_some_and(|p| {
                pod_phase(p) == "Running"
                    && !pod_ready(p)
                    && p.status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .is_some_and(|cs| cs.iter().all(|c| c.state.as_ref().is_some_and(|st| st.running.is_some())))
            })
        };
        wait_for(&pods, "held", "Running with its container running, but not Ready", TIMEOUT, running_not_ready)
            .await?;

        let drop_annotation = json!({"metadata": {"annotations": {"petset.dev/sim-ready": null}}});
        pods.patch("held", &PatchParams::default(), &Patch::Merge(&drop_annotation)).await?;
        wait_for(&pods, "held", "Ready once the annotation is gone", TIMEOUT, |p| p.is_some_and(pod_ready)).await?;

        let hold_again = json!({"metadata": {"annotations": {"petset.dev/sim-ready": "false"}}});
        pods.patch("held", &PatchParams::default(), &Patch::Merge(&hold_again)).await?;
        wait_for(&pods, "held", "not Ready again", TIMEOUT, running_not_ready).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn failed_annotation_fails_the_pod() -> anyhow::Result<()> {
    in_namespace("sim-phase", |ns| async move {
        ns.create::<Pod>(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: doomed}\nspec:\n  containers: [{name: app, image: nginx}]\n",
        )
        .await?;
        let pods = ns.pods();
        wait_for(&pods, "doomed", "Ready", TIMEOUT, |p| p.is_some_and(pod_ready)).await?;
        let fail = json!({"metadata": {"annotations": {"petset.dev/sim-phase": "Failed"}}});
        pods.patch("doomed", &PatchParams::default(), &Patch::Merge(&fail)).await?;
        wait_for(&pods, "doomed", "phase Failed and not Ready", TIMEOUT, |p| {
            p.is_some_and(|p| pod_phase(p) == "Failed" && !pod_ready(p))
        })
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn claim_of_the_default_class_becomes_bound() -> anyhow::Result<()> {
    in_namespace("pvc-bound", |ns| async move {
        ns.create::<PersistentVolumeClaim>(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
        )
        .await?;
        let claim = wait_for(&ns.api::<PersistentVolumeClaim>(), "data", "Bound", TIMEOUT, |c| {
            c.and_then(|c| c.status.as_ref()).and_then(|s| s.phase.as_deref()) == Some("Bound")
        })
        .await?
        .unwrap();
        let spec = claim.spec.unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("standard"), "the default class was applied");
        assert!(spec.volume_name.is_some_and(|v| !v.is_empty()));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn garbage_collector_deletes_dependents_of_a_deleted_owner() -> anyhow::Result<()> {
    in_namespace("gc", |ns| async move {
        let maps: Api<ConfigMap> = ns.api();
        let owner = ns.create::<ConfigMap>("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner}\n").await?;
        let dependent = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dependent\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: {}}}\n",
            owner.uid().unwrap()
        );
        ns.create::<ConfigMap>(&dependent).await?;
        maps.delete("owner", &DeleteParams::default()).await?;
        wait_for(&maps, "dependent", "deleted by the garbage collector", TIMEOUT, |c| c.is_none()).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn scheduler_places_deployment_pods_on_simulated_nodes() -> anyhow::Result<()> {
    in_namespace("schedule", |ns| async move {
        ns.create::<Deployment>(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: nginx}]
"#,
        )
        .await?;
        let pods = ns.pods();
        wait_until("3 deployment pods scheduled, Running and Ready", TIMEOUT, || async {
            let list = pods.list(&Default::default()).await?;
            let good = list
                .items
                .iter()
                .filter(|p| {
                    pod_ready(p)
                        && p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_deref())
                            .is_some_and(|n| n.starts_with("kwok-node-"))
                })
                .count();
            anyhow::ensure!(good == 3, "{good} of 3 pods scheduled and Ready");
            Ok(())
        })
        .await
    })
    .await
}
