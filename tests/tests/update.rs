//! Rolling updates, revision history and rollback on the real control plane, named
//! after upstream's e2e behaviours, plus petset's heal for stuck rollouts.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use petset_crd::{PetSet, UpdateStrategyType};
use petset_tests::{
    TIMEOUT, TestNs,
    fixtures::{stateless, web},
    history::History,
    in_namespace, pod_ready, wait_for,
};
use serde_json::json;

fn revision(pod: &Pod) -> String {
    pod.labels().get("controller-revision-hash").cloned().unwrap_or_default()
}

async fn set_image(ns: &TestNs, name: &str, image: &str) -> anyhow::Result<PetSet> {
    ns.patch_spec(name, json!({"template": {"spec": {"containers": [{"name": "nginx", "image": image}]}}})).await
}

/// Waits for the rollout to finish: every pod Ready at the update revision, and
/// currentRevision moved to it. Returns the set.
async fn rolled_out(ns: &TestNs, name: &str, replicas: i32) -> anyhow::Result<PetSet> {
    let set = ns.wait_rolled_out(name, replicas).await?;
    let update = set.status.as_ref().unwrap().update_revision.clone().unwrap();
    let pods = ns.pods_of(name).await?;
    assert!(
        pods.iter().all(|p| revision(p) == update && pod_ready(p)),
        "pods: {:?}",
        pods.iter().map(revision).collect::<Vec<_>>()
    );
    Ok(set)
}

/// The update revision once the operator has synced the latest spec.
async fn update_revision(ns: &TestNs) -> anyhow::Result<String> {
    let generation = ns.petsets().get("web").await?.metadata.generation.unwrap_or_default();
    let set = ns.wait_synced("web", generation).await?;
    Ok(set.status.and_then(|s| s.update_revision).unwrap_or_default())
}

async fn revisions(ns: &TestNs) -> anyhow::Result<Vec<(String, i64)>> {
    let mut list: Vec<_> = ns
        .api::<ControllerRevision>()
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|r| (r.name_any(), r.revision))
        .collect();
    list.sort_by_key(|r| r.1);
    Ok(list)
}

async fn update_and_roll_back(ns: &TestNs, set: PetSet) -> anyhow::Result<()> {
    let _op = ns.start_operator().await;
    ns.create_petset(&set).await?;
    let first = rolled_out(ns, "web", 3).await?.status.unwrap().update_revision.unwrap();

    let history = History::start(ns.pods()).await;
    set_image(ns, "web", "registry.k8s.io/nginx-slim:0.28").await?;
    let second = rolled_out(ns, "web", 3).await?.status.unwrap().update_revision.unwrap();
    assert_ne!(first, second);
    assert_eq!(history.deleted(), ["web-2", "web-1", "web-0"], "replaced from the highest ordinal down");

    // Rollback: the first revision is reused, renumbered as the newest.
    set_image(ns, "web", "registry.k8s.io/nginx-slim:0.27").await?;
    let back = rolled_out(ns, "web", 3).await?.status.unwrap().update_revision.unwrap();
    assert_eq!(back, first, "the rollback reuses the prior revision");
    let revs = revisions(ns).await?;
    assert_eq!(revs.last().unwrap(), &(first.clone(), 3), "revisions: {revs:?}");
    assert_eq!(revs.len(), 2);
    ns.wait_event("web-2", "UpdatingPod", "").await?;
    Ok(())
}

#[tokio::test]
async fn rolling_update_and_rollback_of_the_template_with_claims() -> anyhow::Result<()> {
    in_namespace("update-claims", |ns| async move {
        update_and_roll_back(&ns, web("web", 3)).await?;
        assert_eq!(ns.claims().await?, ["www-web-0", "www-web-1", "www-web-2"], "claims survive the update");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn rolling_update_and_rollback_of_the_template_without_claims() -> anyhow::Result<()> {
    in_namespace("update-stateless", |ns| async move { update_and_roll_back(&ns, stateless("web", 3)).await }).await
}

#[tokio::test]
async fn canary_and_phased_rolling_updates_with_a_partition() -> anyhow::Result<()> {
    in_namespace("partition", |ns| async move {
        let _op = ns.start_operator().await;
        let mut set = stateless("web", 3);
        set.spec.update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().partition = Some(2);
        ns.create_petset(&set).await?;
        let old = rolled_out(&ns, "web", 3).await?.status.unwrap().update_revision.unwrap();

        // Canary: only web-2 takes the new template.
        set_image(&ns, "web", "registry.k8s.io/nginx-slim:0.28").await?;
        let new_rev = update_revision(&ns).await?;
        assert_ne!(new_rev, old);
        let revs = |want: [&'static str; 3]| {
            let (old, new_rev) = (old.clone(), new_rev.clone());
            move |pods: &[Pod]| {
                // A pod is its revision: the label and what it runs must agree.
                let image = |p: &Pod| p.spec.as_ref().and_then(|s| s.containers[0].image.clone()).unwrap_or_default();
                let have: Vec<String> = pods
                    .iter()
                    .map(|p| match (revision(p), image(p).as_str()) {
                        (r, "registry.k8s.io/nginx-slim:0.27") if r == old => "old".into(),
                        (r, "registry.k8s.io/nginx-slim:0.28") if r == new_rev => "new".into(),
                        (r, i) => format!("{r} running {i}"),
                    })
                    .collect();
                let ready = pods.iter().all(pod_ready);
                if have == want && ready { Ok(()) } else { Err(format!("revisions {have:?}, all ready: {ready}")) }
            }
        };
        ns.wait_pods("web", "only web-2 updated", revs(["old", "old", "new"])).await?;

        // Below the partition, a deleted pod comes back at the current revision...
        let replaced = |uid: Option<String>| {
            let revs = revs(["old", "old", "new"]);
            move |pods: &[Pod]| {
                revs(pods)?;
                if pods[0].uid() == uid { Err("web-0 not replaced yet".to_string()) } else { Ok(()) }
            }
        };
        let deleted_uid = ns.pods().get("web-0").await?.uid();
        ns.pods().delete("web-0", &DeleteParams::default()).await?;
        ns.wait_pods("web", "web-0 back at the old revision", replaced(deleted_uid)).await?;
        // ... and so does a failed one.
        let fail = json!({"metadata": {"annotations": {"petset.dev/sim-phase": "Failed"}}});
        let failed_uid = ns.pods().get("web-0").await?.uid();
        ns.pods().patch("web-0", &PatchParams::default(), &Patch::Merge(&fail)).await?;
        ns.wait_pods("web", "failed web-0 replaced at the old revision", replaced(failed_uid)).await?;

        // Phased: lower the partition to roll the rest.
        ns.patch_spec("web", json!({"updateStrategy": {"rollingUpdate": {"partition": 1}}})).await?;
        ns.wait_pods("web", "web-1 and web-2 updated", revs(["old", "new", "new"])).await?;
        ns.patch_spec("web", json!({"updateStrategy": {"rollingUpdate": {"partition": 0}}})).await?;
        rolled_out(&ns, "web", 3).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn on_delete_replaces_pods_only_when_they_are_deleted() -> anyhow::Result<()> {
    in_namespace("on-delete", |ns| async move {
        let _op = ns.start_operator().await;
        let mut set = stateless("web", 3);
        set.spec.update_strategy =
            Some(petset_crd::PetSetUpdateStrategy { type_: UpdateStrategyType::OnDelete, rolling_update: None });
        ns.create_petset(&set).await?;
        ns.wait_ready("web", 0..3).await?;
        let before: Vec<_> = ns.pods_of("web").await?.iter().map(|p| p.uid()).collect();
        set_image(&ns, "web", "registry.k8s.io/nginx-slim:0.28").await?;
        let update = update_revision(&ns).await?;
        let after: Vec<_> = ns.pods_of("web").await?.iter().map(|p| p.uid()).collect();
        assert_eq!(before, after, "OnDelete replaced pods by itself");
        ns.pods().delete("web-1", &DeleteParams::default()).await?;
        ns.wait_pods("web", "web-1 back at the update revision", |pods| {
            let p = pods.iter().find(|p| p.name_any() == "web-1").ok_or("no web-1")?;
            if revision(p) == update && pod_ready(p) && Some(p.uid()) != Some(before[1].clone()) {
                Ok(())
            } else {
                Err("not yet".into())
            }
        })
        .await?;
        Ok(())
    })
    .await
}

/// 5 pods; the new template holds its pods not Ready, so the rollout stops once
/// maxUnavailable pods are down, showing how many it replaced at once.
async fn max_unavailable_run(ns: &TestNs, max_unavailable: serde_json::Value) -> anyhow::Result<()> {
    let _op = ns.start_operator().await;
    let mut set = stateless("web", 5);
    set.spec.pod_management_policy = Some(petset_crd::PodManagementPolicy::Parallel);
    ns.create_petset(&set).await?;
    let old = rolled_out(ns, "web", 5).await?.status.unwrap().update_revision.unwrap();
    ns.patch_spec(
        "web",
        json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": max_unavailable}},
               "template": {"metadata": {"annotations": {"petset.dev/sim-ready": "false"}}}}),
    )
    .await?;
    ns.wait_pods("web", "web-3 and web-4 replaced, the rest untouched", |pods| {
        let new: Vec<String> = pods
            .iter()
            .filter(|p| revision(p) != old && p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        if new == ["web-3", "web-4"] && pods.len() == 5 { Ok(()) } else { Err(format!("updated: {new:?}")) }
    })
    .await?;
    // Another sync (a spec change that alters no pod) still replaces nothing more while
    // two pods are unavailable.
    ns.patch_spec("web", json!({"revisionHistoryLimit": 5})).await?;
    let again = ns.pods_of("web").await?;
    let untouched = again.iter().filter(|p| revision(p) == old).count();
    assert_eq!(untouched, 3, "more than maxUnavailable pods replaced");
    Ok(())
}

#[tokio::test]
async fn max_unavailable_two_replaces_two_at_a_time() -> anyhow::Result<()> {
    in_namespace("max-unavailable", |ns| async move { max_unavailable_run(&ns, json!(2)).await }).await
}

#[tokio::test]
async fn max_unavailable_as_a_percentage_rounds_down() -> anyhow::Result<()> {
    // 40% of 5 is 2; 59% of 5 would round down to 2 as well.
    in_namespace("max-unavailable-pct", |ns| async move { max_unavailable_run(&ns, json!("59%")).await }).await
}

#[tokio::test]
async fn revision_history_is_truncated_to_the_limit() -> anyhow::Result<()> {
    in_namespace("history", |ns| async move {
        let _op = ns.start_operator().await;
        let mut set = stateless("web", 1);
        set.spec.revision_history_limit = Some(1);
        ns.create_petset(&set).await?;
        rolled_out(&ns, "web", 1).await?;
        let mut names = Vec::new();
        for tag in ["0.28", "0.29", "0.30", "0.31"] {
            set_image(&ns, "web", &format!("registry.k8s.io/nginx-slim:{tag}")).await?;
            names.push(rolled_out(&ns, "web", 1).await?.status.unwrap().update_revision.unwrap());
        }
        let revs = ns.api::<ControllerRevision>();
        petset_tests::wait_until("history truncated to 1 + the live one", TIMEOUT, || async {
            let have: Vec<String> =
                revs.list(&ListParams::default()).await?.items.iter().map(|r| r.name_any()).collect();
            anyhow::ensure!(have.len() == 2, "revisions: {have:?}");
            anyhow::ensure!(have.contains(&names[3]) && have.contains(&names[2]), "revisions: {have:?}");
            Ok(())
        })
        .await
    })
    .await
}

/// A template whose pods never become Ready, then the revert: how the set gets out.
async fn bad_rollout_then_revert(ns: &TestNs, heal: bool) -> anyhow::Result<()> {
    let _op = ns.start_operator().await;
    let mut set = stateless("web", 3);
    set.spec.progress_deadline_seconds = Some(2);
    if heal {
        set.spec.update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().replace_unhealthy_after_seconds =
            Some(4);
    }
    ns.create_petset(&set).await?;
    rolled_out(ns, "web", 3).await?;
    ns.patch_spec("web", json!({"template": {"metadata": {"annotations": {"petset.dev/sim-ready": "false"}}}})).await?;
    ns.wait_pods("web", "web-2 replaced by a pod that never becomes Ready", |pods| match pods {
        [_, _, p]
            if p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("petset.dev/sim-ready"))
                && !pod_ready(p) =>
        {
            Ok(())
        }
        _ => Err("not yet".into()),
    })
    .await?;
    // The bad template is reverted.
    let revert = json!([{"op": "remove", "path": "/spec/template/metadata/annotations"}]);
    ns.petsets().patch("web", &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(revert)?)).await?;
    let stuck_uid = ns.pods().get("web-2").await?.uid();
    // Both ways, Progressing reports the stall.
    wait_for(&ns.petsets(), "web", "Progressing=False ProgressDeadlineExceeded", TIMEOUT, |s| {
        s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
            st.conditions
                .iter()
                .any(|c| c.type_ == "Progressing" && c.status == "False" && c.reason == "ProgressDeadlineExceeded")
        })
    })
    .await?;
    if heal {
        rolled_out(ns, "web", 3).await?;
        ns.wait_event("web-2", "ReplacingStuckPod", "").await?;
        wait_for(&ns.petsets(), "web", "Progressing=True RolloutComplete", TIMEOUT, |s| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
                st.conditions.iter().any(|c| c.type_ == "Progressing" && c.reason == "RolloutComplete")
            })
        })
        .await?;
    } else {
        // As upstream: the set waits for web-2, which nobody replaces.
        let pod = ns.pods().get("web-2").await?;
        assert_eq!(pod.uid(), stuck_uid, "web-2 was replaced without the option");
        assert!(!pod_ready(&pod));
    }
    Ok(())
}

#[tokio::test]
async fn a_stuck_rollout_heals_itself_when_asked() -> anyhow::Result<()> {
    in_namespace("stuck-heal", |ns| async move { bad_rollout_then_revert(&ns, true).await }).await
}

#[tokio::test]
async fn a_stuck_rollout_waits_as_upstream_by_default() -> anyhow::Result<()> {
    in_namespace("stuck-wait", |ns| async move { bad_rollout_then_revert(&ns, false).await }).await
}

#[tokio::test]
async fn operator_restart_mid_rollout_replaces_no_pod_twice() -> anyhow::Result<()> {
    in_namespace("restart-rollout", |ns| async move {
        let op = ns.start_operator().await;
        ns.create_petset(&stateless("web", 4)).await?;
        let old = rolled_out(&ns, "web", 4).await?.status.unwrap().update_revision.unwrap();
        let history = History::start(ns.pods()).await;
        set_image(&ns, "web", "registry.k8s.io/nginx-slim:0.28").await?;
        ns.wait_pods("web", "web-3 updated", |pods| match pods.last() {
            Some(p) if revision(p) != old && pod_ready(p) => Ok(()),
            _ => Err("not yet".into()),
        })
        .await?;
        drop(op);
        let _op = ns.start_operator().await;
        rolled_out(&ns, "web", 4).await?;
        assert_eq!(history.deleted(), ["web-3", "web-2", "web-1", "web-0"], "each pod replaced exactly once");
        Ok(())
    })
    .await
}
