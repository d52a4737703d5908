//! PetSet behaviour on the real control plane, one test per upstream StatefulSet e2e
//! behaviour (test/e2e/apps/statefulset.go), named after it.

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use petset_crd::{PersistentVolumeClaimRetentionPolicy, PetSet, PodManagementPolicy, RetentionPolicyType};
use petset_tests::{
    TIMEOUT,
    fixtures::{hold_not_ready, stateless, web},
    history::{Happened, History},
    in_namespace, pod_phase, pod_ready, wait_for, wait_until,
};
use serde_json::json;

#[tokio::test]
async fn basic_identity_names_labels_hostname_and_claims() -> anyhow::Result<()> {
    in_namespace("identity", |ns| async move {
        let _op = ns.start_operator().await;
        let history = History::start(ns.pods()).await;
        let set = ns.create_petset(&web("web", 3)).await?;
        let pods = ns.wait_ready("web", 0..3).await?;

        // Created in ordinal order, each only after its predecessor was Ready.
        assert_eq!(history.created(), ["web-0", "web-1", "web-2"]);
        for i in 1..3 {
            let prev_ready = history.position(&Happened::Ready(format!("web-{}", i - 1))).unwrap();
            let created = history.position(&Happened::Created(format!("web-{i}"))).unwrap();
            assert!(prev_ready < created, "web-{i} was created before web-{} was Ready: {:?}", i - 1, history.events());
        }
        for (i, pod) in pods.iter().enumerate() {
            let name = format!("web-{i}");
            let labels = pod.labels();
            assert_eq!(labels["statefulset.kubernetes.io/pod-name"], name);
            assert_eq!(labels["apps.kubernetes.io/pod-index"], i.to_string());
            assert!(labels["controller-revision-hash"].starts_with("web-"));
            let spec = pod.spec.as_ref().unwrap();
            assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
            assert_eq!(spec.subdomain.as_deref(), Some("web"));
            let owner = &pod.owner_references()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
                ("PetSet", set.uid().unwrap().as_str(), Some(true))
            );
            let claim = spec.volumes.as_ref().unwrap().iter().find(|v| v.name == "www").unwrap();
            assert_eq!(claim.persistent_volume_claim.as_ref().unwrap().claim_name, format!("www-web-{i}"));
        }
        let claims: Api<PersistentVolumeClaim> = ns.api();
        for i in 0..3 {
            let claim = wait_for(&claims, &format!("www-web-{i}"), "Bound", TIMEOUT, |c| {
                c.and_then(|c| c.status.as_ref()).and_then(|s| s.phase.as_deref()) == Some("Bound")
            })
            .await?
            .unwrap();
            assert_eq!(claim.labels()["app"], "web");
            assert!(claim.owner_references().is_empty(), "Retain/Retain claims have no owners");
        }
        let set = wait_for(&ns.petsets(), "web", "status counts 3 ready", TIMEOUT, |s| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| st.ready_replicas == 3 && st.available_replicas == 3)
        })
        .await?
        .unwrap();
        let status = set.status.unwrap();
        assert_eq!((status.replicas, status.current_replicas, status.updated_replicas), (3, 3, 3));
        assert_eq!(status.selector.as_deref(), Some("app=web"));
        assert_eq!(status.observed_generation, set.metadata.generation);
        assert_eq!(status.current_revision, status.update_revision);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn adopts_matching_orphans_and_releases_non_matching_pods() -> anyhow::Result<()> {
    in_namespace("adoption", |ns| async move {
        let _op = ns.start_operator().await;
        let set = ns.create_petset(&stateless("web", 1)).await?;
        ns.wait_ready("web", [0]).await?;
        let pods = ns.pods();
        let owned_by_set = |p: Option<&Pod>| {
            p.is_some_and(|p| p.owner_references().iter().any(|r| Some(&r.uid) == set.uid().as_ref()))
        };

        // Orphan it: the set adopts it back.
        let uid = pods.get("web-0").await?.uid();
        pods.patch("web-0", &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"ownerReferences": null}})))
            .await?;
        wait_for(&pods, "web-0", "adopted again", TIMEOUT, owned_by_set).await?;
        assert_eq!(pods.get("web-0").await?.uid(), uid, "adopted, not replaced");

        // Change its labels so the selector no longer matches: released, and replaced.
        let relabel = json!({"metadata": {"labels": {"app": "elsewhere"}}});
        pods.patch("web-0", &PatchParams::default(), &Patch::Merge(&relabel)).await?;
        wait_for(&pods, "web-0", "released (no owner)", TIMEOUT, |p| {
            p.is_some_and(|p| p.owner_references().is_empty())
        })
        .await?;

        // Matching again: adopted again.
        let back = json!({"metadata": {"labels": {"app": "web"}}});
        pods.patch("web-0", &PatchParams::default(), &Patch::Merge(&back)).await?;
        wait_for(&pods, "web-0", "adopted after matching again", TIMEOUT, owned_by_set).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn no_deadlock_when_a_pods_predecessor_fails() -> anyhow::Result<()> {
    in_namespace("predecessor", |ns| async move {
        let _op = ns.start_operator().await;
        let mut set = stateless("web", 2);
        hold_not_ready(&mut set);
        ns.create_petset(&set).await?;
        ns.wait_pods("web", "web-0 Running, not Ready", |p| one_running(p, 1, 0)).await?;
        ns.set_ready("web-0", true).await?;
        ns.wait_pods("web", "web-1 Running, not Ready", |p| one_running(p, 2, 1)).await?;

        // Deleting the healthy web-0 while web-1 is unhealthy: web-0 comes back.
        let old = ns.pods().get("web-0").await?.uid();
        ns.pods().delete("web-0", &DeleteParams::default()).await?;
        ns.wait_pods("web", "web-0 recreated", |p| {
            let new = p.iter().find(|p| p.name_any() == "web-0").ok_or("no web-0")?;
            if new.uid() == old { Err("still the old web-0".into()) } else { Ok(()) }
        })
        .await?;
        ns.set_ready("web-0", true).await?;
        ns.set_ready("web-1", true).await?;
        ns.wait_ready("web", 0..2).await?;
        Ok(())
    })
    .await
}

/// `count` pods exist and `ready` of them are Ready.
fn one_running(pods: &[Pod], count: usize, ready: usize) -> Result<(), String> {
    let running = pods.iter().filter(|p| pod_phase(p) == "Running").count();
    let r = pods.iter().filter(|p| pod_ready(p)).count();
    if pods.len() == count && running == count && r == ready {
        Ok(())
    } else {
        Err(format!("{running} running, {r} ready"))
    }
}

#[tokio::test]
async fn scaling_happens_in_order_and_halts_on_an_unhealthy_pod() -> anyhow::Result<()> {
    in_namespace("ordered-scaling", |ns| async move {
        let _op = ns.start_operator().await;
        ns.create_petset(&stateless("web", 1)).await?;
        ns.wait_ready("web", [0]).await?;

        // web-0 unhealthy: scaling up to 3 creates nothing.
        ns.set_ready("web-0", false).await?;
        ns.patch_spec("web", json!({"replicas": 3})).await?;
        assert_eq!(ns.pods_of("web").await?.len(), 1, "scale-up went past an unhealthy pod");

        // Healthy again: web-1 then web-2, in order.
        let history = History::start(ns.pods()).await;
        ns.set_ready("web-0", true).await?;
        ns.wait_ready("web", 0..3).await?;
        assert_eq!(history.created(), ["web-1", "web-2"]);

        // Every pod unhealthy: scale-down to 0 halts.
        for i in 0..3 {
            ns.set_ready(&format!("web-{i}"), false).await?;
        }
        ns.patch_spec("web", json!({"replicas": 0})).await?;
        assert_eq!(ns.pods_of("web").await?.len(), 3, "scale-down went past unhealthy pods");

        // Healthy again: removed in reverse order.
        let history = History::start(ns.pods()).await;
        for i in (0..3).rev() {
            ns.hold(&format!("web-{i}"), true).await?;
        }
        ns.wait_pods("web", "all gone", |p| if p.is_empty() { Ok(()) } else { Err("pods left".into()) }).await?;
        assert_eq!(history.deleted(), ["web-2", "web-1", "web-0"]);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn burst_scaling_runs_to_completion_with_unhealthy_pods() -> anyhow::Result<()> {
    in_namespace("burst", |ns| async move {
        let _op = ns.start_operator().await;
        let mut set = stateless("web", 1);
        set.spec.pod_management_policy = Some(PodManagementPolicy::Parallel);
        hold_not_ready(&mut set);
        ns.create_petset(&set).await?;
        ns.wait_pods("web", "web-0 running, not Ready", |p| one_running(p, 1, 0)).await?;
        ns.patch_spec("web", json!({"replicas": 5})).await?;
        ns.wait_pods("web", "5 pods Running, none Ready", |p| one_running(p, 5, 0)).await?;
        ns.patch_spec("web", json!({"replicas": 0})).await?;
        ns.wait_pods("web", "all gone", |p| if p.is_empty() { Ok(()) } else { Err("pods left".into()) }).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn failed_pod_is_recreated() -> anyhow::Result<()> {
    in_namespace("evicted", |ns| async move {
        let _op = ns.start_operator().await;
        ns.create_petset(&web("web", 1)).await?;
        let old = ns.wait_ready("web", [0]).await?[0].uid();
        let fail = json!({"metadata": {"annotations": {"petset.dev/sim-phase": "Failed"}}});
        ns.pods().patch("web-0", &PatchParams::default(), &Patch::Merge(&fail)).await?;
        let pods = ns
            .wait_pods("web", "web-0 replaced and Ready", |p| match p {
                [pod] if pod.uid() != old && pod_ready(pod) => Ok(()),
                _ => Err("not yet".into()),
            })
            .await?;
        assert_eq!(pods[0].name_any(), "web-0");
        ns.wait_event("web-0", "RecreatingFailedPod", "").await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn scale_subresource_gets_updates_and_patches_replicas() -> anyhow::Result<()> {
    in_namespace("scale", |ns| async move {
        let _op = ns.start_operator().await;
        ns.create_petset(&stateless("web", 1)).await?;
        ns.wait_ready("web", [0]).await?;
        let sets = ns.petsets();
        let scale = wait_until("scale reports status", TIMEOUT, || async {
            let s = sets.get_scale("web").await?;
            anyhow::ensure!(s.status.as_ref().is_some_and(|st| st.replicas == 1), "status.replicas not 1 yet");
            Ok(s)
        })
        .await?;
        assert_eq!(scale.spec.unwrap().replicas, Some(1));
        assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));

        let mut scale = sets.get_scale("web").await?;
        scale.spec.as_mut().unwrap().replicas = Some(2);
        sets.replace_scale("web", &Default::default(), &scale).await?;
        ns.wait_ready("web", 0..2).await?;

        sets.patch_scale("web", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 3}}))).await?;
        ns.wait_ready("web", 0..3).await?;
        assert_eq!(sets.get("web").await?.spec.replicas, Some(3));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn list_patch_and_delete_a_collection() -> anyhow::Result<()> {
    in_namespace("collection", |ns| async move {
        let sets = ns.petsets();
        for name in ["a", "b", "c"] {
            let mut set = stateless(name, 0);
            set.metadata.labels = Some([("batch".to_string(), "one".to_string())].into());
            ns.create_petset(&set).await?;
        }
        let by_label = ListParams::default().labels("batch=one");
        assert_eq!(sets.list(&by_label).await?.items.len(), 3);
        sets.patch("b", &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"labels": {"patched": "yes"}}})))
            .await?;
        assert_eq!(sets.list(&ListParams::default().labels("patched=yes")).await?.items.len(), 1);
        sets.delete_collection(&DeleteParams::default(), &by_label).await?;
        wait_until("the collection to be gone", TIMEOUT, || async {
            let left = sets.list(&by_label).await?.items.len();
            anyhow::ensure!(left == 0, "{left} left");
            Ok(())
        })
        .await
    })
    .await
}

#[tokio::test]
async fn status_endpoint_reads_patches_and_updates() -> anyhow::Result<()> {
    in_namespace("status-endpoint", |ns| async move {
        let sets = ns.petsets();
        ns.create_petset(&stateless("web", 0)).await?;
        let condition = json!({"status": {"conditions": [{
            "type": "StatusPatched", "status": "True", "reason": "E2E", "message": "set by the test",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        sets.patch_status("web", &PatchParams::default(), &Patch::Merge(&condition)).await?;
        let read = sets.get_status("web").await?;
        assert!(read.status.unwrap().conditions.iter().any(|c| c.type_ == "StatusPatched"));
        let mut set = sets.get_status("web").await?;
        set.status.get_or_insert_default().collision_count = Some(0);
        sets.replace_status("web", &Default::default(), &set).await?;
        assert_eq!(sets.get_status("web").await?.status.unwrap().collision_count, Some(0));
        // The spec is not writable through /status.
        let sneaky = json!({"spec": {"replicas": 7}});
        sets.patch_status("web", &PatchParams::default(), &Patch::Merge(&sneaky)).await?;
        assert_eq!(sets.get("web").await?.spec.replicas, Some(0));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn min_ready_seconds_delays_availability() -> anyhow::Result<()> {
    in_namespace("min-ready", |ns| async move {
        let _op = ns.start_operator().await;
        let mut set = stateless("web", 1);
        set.spec.min_ready_seconds = Some(4);
        ns.create_petset(&set).await?;
        let sets = ns.petsets();
        let status = |s: Option<&PetSet>| s.and_then(|s| s.status.clone()).unwrap_or_default();
        wait_for(&sets, "web", "Ready but not yet Available", TIMEOUT, |s| {
            let st = status(s);
            st.ready_replicas == 1 && st.available_replicas == 0
        })
        .await?;
        let pod_ready_at = ns.pods().get("web-0").await?;
        let since = ready_since(&pod_ready_at);
        wait_for(&sets, "web", "Available after minReadySeconds", TIMEOUT, |s| status(s).available_replicas == 1)
            .await?;
        let elapsed = k8s_openapi::jiff::Timestamp::now().duration_since(since);
        assert!(elapsed.as_secs() >= 4, "available after only {elapsed:?}");
        Ok(())
    })
    .await
}

fn ready_since(pod: &Pod) -> k8s_openapi::jiff::Timestamp {
    pod.status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .last_transition_time
        .clone()
        .unwrap()
        .0
}

fn retention(
    when_deleted: RetentionPolicyType,
    when_scaled: RetentionPolicyType,
) -> PersistentVolumeClaimRetentionPolicy {
    PersistentVolumeClaimRetentionPolicy { when_deleted, when_scaled }
}

/// Creates `web` with 3 replicas and the policy, scales it to 1, then deletes it, and
/// returns the claims left after each step.
async fn retention_run(
    ns: &petset_tests::TestNs,
    policy: PersistentVolumeClaimRetentionPolicy,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut set = web("web", 3);
    set.spec.persistent_volume_claim_retention_policy = Some(policy);
    ns.create_petset(&set).await?;
    ns.wait_ready("web", 0..3).await?;
    ns.patch_spec("web", json!({"replicas": 1})).await?;
    ns.wait_ready("web", [0]).await?;
    let after_scale = settle_claims(ns).await?;
    ns.delete_petset("web").await?;
    ns.wait_pods("web", "pods gone", |p| if p.is_empty() { Ok(()) } else { Err("pods left".into()) }).await?;
    let after_delete = settle_claims(ns).await?;
    Ok((after_scale, after_delete))
}

/// The claims once the garbage collector has done what the owners ask: no claim left
/// whose owners are all gone.
async fn settle_claims(ns: &petset_tests::TestNs) -> anyhow::Result<Vec<String>> {
    let claims: Api<PersistentVolumeClaim> = ns.api();
    let pods = ns.pods();
    let sets = ns.petsets();
    wait_until("the garbage collector to act on claims", TIMEOUT, || async {
        for claim in claims.list(&ListParams::default()).await?.items {
            for owner in claim.owner_references() {
                let alive = match owner.kind.as_str() {
                    "Pod" => pods.get_opt(&owner.name).await?.is_some_and(|p| p.uid().as_ref() == Some(&owner.uid)),
                    _ => sets.get_opt(&owner.name).await?.is_some_and(|s| s.uid().as_ref() == Some(&owner.uid)),
                };
                anyhow::ensure!(alive, "claim {} still has a dead owner {}", claim.name_any(), owner.name);
            }
        }
        Ok(())
    })
    .await?;
    ns.claims().await
}

#[tokio::test]
async fn claims_are_retained_by_default() -> anyhow::Result<()> {
    in_namespace("retain-retain", |ns| async move {
        let _op = ns.start_operator().await;
        let (scaled, deleted) =
            retention_run(&ns, retention(RetentionPolicyType::Retain, RetentionPolicyType::Retain)).await?;
        let all = ["www-web-0", "www-web-1", "www-web-2"];
        assert_eq!(scaled, all);
        assert_eq!(deleted, all);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn claims_deleted_with_the_set_when_deleted_policy_is_delete() -> anyhow::Result<()> {
    in_namespace("when-deleted", |ns| async move {
        let _op = ns.start_operator().await;
        let (scaled, deleted) =
            retention_run(&ns, retention(RetentionPolicyType::Delete, RetentionPolicyType::Retain)).await?;
        assert_eq!(scaled, ["www-web-0", "www-web-1", "www-web-2"]);
        assert!(deleted.is_empty(), "left: {deleted:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn claims_deleted_on_scale_down_when_scaled_policy_is_delete() -> anyhow::Result<()> {
    in_namespace("when-scaled", |ns| async move {
        let _op = ns.start_operator().await;
        let (scaled, deleted) =
            retention_run(&ns, retention(RetentionPolicyType::Retain, RetentionPolicyType::Delete)).await?;
        assert_eq!(scaled, ["www-web-0"]);
        assert_eq!(deleted, ["www-web-0"], "whenDeleted: Retain keeps the in-range claim");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn claims_deleted_on_scale_down_and_with_the_set_when_both_are_delete() -> anyhow::Result<()> {
    in_namespace("delete-delete", |ns| async move {
        let _op = ns.start_operator().await;
        let (scaled, deleted) =
            retention_run(&ns, retention(RetentionPolicyType::Delete, RetentionPolicyType::Delete)).await?;
        assert_eq!(scaled, ["www-web-0"]);
        assert!(deleted.is_empty(), "left: {deleted:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn claim_controlled_by_another_controller_is_left_alone() -> anyhow::Result<()> {
    in_namespace("foreign-claim", |ns| async move {
        let _op = ns.start_operator().await;
        // A claim under another controller, with the name the set will use.
        let owner = ns.create::<k8s_openapi::api::core::v1::ConfigMap>("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other-controller}\n").await?;
        let claim = format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: www-web-0\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: other-controller, uid: {}, controller: true}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 1Gi}}}}\n",
            owner.uid().unwrap()
        );
        ns.create::<PersistentVolumeClaim>(&claim).await?;
        let mut set = web("web", 1);
        set.spec.persistent_volume_claim_retention_policy = Some(retention(RetentionPolicyType::Delete, RetentionPolicyType::Delete));
        ns.create_petset(&set).await?;
        ns.wait_ready("web", [0]).await?;
        wait_until("a Warning event about the claim", TIMEOUT, || async {
            let events = ns.events_about("web").await?;
            anyhow::ensure!(events.iter().any(|(r, m)| r == "ClaimOwnedElsewhere" && m.contains("www-web-0")), "{events:?}");
            Ok(())
        })
        .await?;
        let claim = ns.api::<PersistentVolumeClaim>().get("www-web-0").await?;
        assert_eq!(claim.owner_references().len(), 1, "owners changed: {:?}", claim.owner_references());
        ns.delete_petset("web").await?;
        assert!(ns.claims().await?.contains(&"www-web-0".to_string()), "a foreign claim was deleted");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn claims_deleted_with_the_set_after_adopting_a_pod() -> anyhow::Result<()> {
    in_namespace("adopted-claims", |ns| async move {
        let op = ns.start_operator().await;
        let mut set = web("web", 2);
        set.spec.persistent_volume_claim_retention_policy =
            Some(retention(RetentionPolicyType::Delete, RetentionPolicyType::Retain));
        ns.create_petset(&set).await?;
        ns.wait_ready("web", 0..2).await?;
        // Orphan web-1 while the operator is stopped, then let it adopt the pod back.
        drop(op);
        let pods = ns.pods();
        pods.patch("web-1", &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"ownerReferences": null}})))
            .await?;
        let _op = ns.start_operator().await;
        wait_for(&pods, "web-1", "adopted", TIMEOUT, |p| p.is_some_and(|p| !p.owner_references().is_empty())).await?;
        ns.delete_petset("web").await?;
        let left = settle_claims(&ns).await?;
        assert!(left.is_empty(), "left: {left:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn missing_claim_under_a_pending_pod_is_recreated() -> anyhow::Result<()> {
    in_namespace("missing-claim", |ns| async move {
        let _op = ns.start_operator().await;
        let mut set = web("web", 1);
        // No node has this label: the pod stays Pending.
        set.spec.template.spec.as_mut().unwrap().node_selector =
            Some([("petset.dev/nowhere".to_string(), "true".to_string())].into());
        ns.create_petset(&set).await?;
        let claims: Api<PersistentVolumeClaim> = ns.api();
        ns.wait_pods("web", "web-0 Pending", |p| match p {
            [pod] if pod_phase(pod) == "Pending" => Ok(()),
            _ => Err("no pending web-0".into()),
        })
        .await?;
        let old = wait_for(&claims, "www-web-0", "created", TIMEOUT, |c| c.is_some()).await?.unwrap().uid();
        claims.delete("www-web-0", &DeleteParams::default()).await?;
        // The claim protection finalizer may hold it while the pod refers to it; once it
        // is gone, the operator creates it again.
        wait_for(&claims, "www-web-0", "recreated with a new uid", TIMEOUT, |c| {
            c.is_some_and(|c| c.uid() != old && c.metadata.deletion_timestamp.is_none())
        })
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn start_ordinal_set_increased_decreased_and_removed() -> anyhow::Result<()> {
    in_namespace("start-ordinal", |ns| async move {
        let _op = ns.start_operator().await;
        let mut set = stateless("web", 2);
        set.spec.ordinals = Some(petset_crd::PetSetOrdinals { start: 2 });
        ns.create_petset(&set).await?;
        ns.wait_ready("web", 2..4).await?;
        ns.patch_spec("web", json!({"ordinals": {"start": 3}})).await?;
        ns.wait_ready("web", 3..5).await?;
        ns.patch_spec("web", json!({"ordinals": {"start": 1}})).await?;
        ns.wait_ready("web", 1..3).await?;
        ns.patch_spec("web", json!({"ordinals": null})).await?;
        ns.wait_ready("web", 0..2).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_member_that_lost_its_identity_label_gets_it_back() -> anyhow::Result<()> {
    in_namespace("identity-lost", |ns| async move {
        let _op = ns.start_operator().await;
        ns.create_petset(&stateless("web", 2)).await?;
        ns.wait_ready("web", 0..2).await?;
        let uid = ns.pods().get("web-1").await?.uid();
        // The operator's pod watch selects on this label: without it the pod is unseen.
        let unlabel = json!({"metadata": {"labels": {"statefulset.kubernetes.io/pod-name": null}}});
        ns.pods().patch("web-1", &PatchParams::default(), &Patch::Merge(&unlabel)).await?;
        ns.patch_spec("web", json!({"replicas": 3})).await?;
        let pods = ns.wait_ready("web", 0..3).await?;
        assert_eq!(pods[1].uid(), uid, "the same pod, healed, not replaced");
        assert_eq!(pods[1].labels()["statefulset.kubernetes.io/pod-name"], "web-1");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_pod_of_another_owner_with_a_members_name_is_reported_and_waited_for() -> anyhow::Result<()> {
    in_namespace("identity-taken", |ns| async move {
        let _op = ns.start_operator().await;
        let holder = ns.create::<ConfigMap>("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: holder}\n").await?;
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-1\n  labels: {{app: web}}\n  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: holder, uid: {}, controller: true}}]\nspec:\n  terminationGracePeriodSeconds: 0\n  containers: [{{name: c, image: registry.k8s.io/pause:3.9}}]\n",
            holder.uid().unwrap()
        );
        let theirs = ns.create::<Pod>(&pod).await?;
        ns.create_petset(&stateless("web", 3)).await?;
        ns.wait_event("web-1", "ObjectConflict", "Pod web-1 exists and is controlled by ConfigMap holder").await?;
        ns.wait_condition("web", "ObjectConflict", &["Pod web-1", "ConfigMap holder"]).await?;
        let pods = ns.pods().list(&ListParams::default()).await?.items;
        assert!(pods.iter().all(|p| p.name_any() != "web-2"), "OrderedReady: nothing after the member it lacks");
        assert_eq!(ns.pods().get("web-1").await?.uid(), theirs.uid(), "their pod is left alone");

        ns.pods().delete("web-1", &DeleteParams::default().grace_period(0)).await?;
        let pods = ns.wait_ready("web", 0..3).await?;
        let set = ns.petsets().get("web").await?;
        assert_eq!(pods[1].owner_references()[0].uid, set.uid().unwrap());
        ns.wait_no_condition("web", "ObjectConflict").await?;
        Ok(())
    })
    .await
}
