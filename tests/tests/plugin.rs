//! `kubectl petset` against the local plane: every command on a live set, checked
//! against what the API server says about the pods and claims.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use petset_crd::PetSet;
use petset_tests::{
    fixtures::{hold_not_ready, web},
    in_namespace,
    process::kubectl_petset as petset,
};
use serde_json::{Value, json};

const OLD: &str = "registry.k8s.io/nginx-slim:0.27";
const NEW: &str = "registry.k8s.io/nginx-slim:0.28";

fn images(pods: &[Pod]) -> Vec<String> {
    pods.iter().flat_map(|p| p.spec.iter().flat_map(|s| &s.containers)).filter_map(|c| c.image.clone()).collect()
}

fn uids(pods: &[Pod]) -> Vec<String> {
    pods.iter().filter_map(|p| p.uid()).collect()
}

#[tokio::test]
async fn status_shows_every_member_with_its_node_and_claims() -> anyhow::Result<()> {
    in_namespace("plugin-status", |ns| async move {
        let _op = ns.start_operator().await;
        ns.create_petset(&web("web", 3)).await?;
        ns.wait_rolled_out("web", 3).await?;
        let pods = ns.wait_ready("web", 0..3).await?;

        let snapshot: Value = serde_json::from_str(&petset(&ns, &["status", "web", "-o", "json"]).await?)?;
        let members = snapshot["members"].as_array().expect("members");
        assert_eq!(members.len(), 3, "{snapshot:#}");
        for (member, pod) in members.iter().zip(&pods) {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            assert_eq!(member["pod"], json!(pod.name_any()));
            assert_eq!(member["node"], json!(node), "{member:#}");
            assert_eq!(member["ready"], json!(true));
            assert_eq!(member["revision"], json!(pod.labels()["controller-revision-hash"]));
            assert_eq!(member["claims"][0]["name"], json!(format!("www-{}", pod.name_any())));
            assert_eq!(member["claims"][0]["capacity"], json!("1Gi"));
            assert_eq!(member["claims"][0]["phase"], json!("Bound"));
        }
        let yaml = petset(&ns, &["status", "web", "-o", "yaml"]).await?;
        assert!(yaml.contains("readyReplicas: 3"), "{yaml}");

        let text = petset(&ns, &["status", "web"]).await?;
        assert!(text.starts_with(&format!("PetSet {}/web: 3/3 ready, 3 updated\n", ns.name)), "{text}");
        for pod in &pods {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
            let row = text.lines().find(|l| l.contains(&format!(" {} ", pod.name_any()))).unwrap_or_default();
            assert!(row.contains("Running") && row.contains(&node) && row.contains("Bound"), "{text}");
        }
        assert!(text.contains("AllReplicasAvailable") && text.contains("SuccessfulCreate"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 120), "wider than the terminal:\n{text}");

        let missing = petset(&ns, &["status", "nope"]).await.expect_err("a missing set");
        assert!(missing.to_string().contains("reading PetSet"), "{missing}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn rollout_restart_pause_resume_undo_and_history() -> anyhow::Result<()> {
    in_namespace("plugin-rollout", |ns| async move {
        let _op = ns.start_operator().await;
        ns.create_petset(&web("web", 3)).await?;
        ns.wait_rolled_out("web", 3).await?;
        let before = ns.wait_ready("web", 0..3).await?;

        // restart: every pod replaced, and `rollout status` follows it to the end.
        assert_eq!(petset(&ns, &["rollout", "restart", "web"]).await?.trim(), "petset.petset.dev/web restarted");
        let followed = petset(&ns, &["rollout", "status", "web", "--timeout", "60"]).await?;
        assert!(
            followed.trim_end().ends_with("partitioned roll out complete: 3 new pods have been updated..."),
            "{followed}"
        );
        let restarted = ns.wait_ready("web", 0..3).await?;
        assert!(uids(&restarted).iter().all(|u| !uids(&before).contains(u)), "a pod was not restarted");
        assert_eq!(images(&restarted), [OLD; 3]);

        // pause: a new image reaches no pod; resume: it reaches all of them.
        assert_eq!(petset(&ns, &["rollout", "pause", "web"]).await?.trim(), "petset.petset.dev/web paused");
        let set = ns
            .patch_spec("web", json!({"template": {"spec": {"containers": [{"name": "nginx", "image": NEW}]}}}))
            .await?;
        assert_eq!(set.status.as_ref().map(|s| s.updated_replicas), Some(0), "a paused set updated a pod");
        assert_eq!(uids(&ns.pods_of("web").await?), uids(&restarted), "a paused set replaced a pod");
        assert!(petset(&ns, &["rollout", "pause", "web"]).await.is_err(), "paused twice");
        assert_eq!(petset(&ns, &["rollout", "resume", "web"]).await?.trim(), "petset.petset.dev/web resumed");
        petset(&ns, &["rollout", "status", "web", "--timeout", "60"]).await?;
        let set = ns.wait_rolled_out("web", 3).await?;
        assert_eq!(images(&ns.wait_ready("web", 0..3).await?), [NEW; 3]);
        assert_eq!(set.spec.partition(), 0, "resume did not put the partition back");

        // history: one revision per template; undo: back to the one before, whole.
        let history = petset(&ns, &["rollout", "history", "web"]).await?;
        let numbers: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
        assert_eq!(numbers, ["1", "2", "3"], "{history}");
        let one = petset(&ns, &["rollout", "history", "web", "--revision", "1"]).await?;
        assert!(one.contains("with revision #1") && one.contains(OLD) && !one.contains("restartedAt"), "{one}");
        assert_eq!(petset(&ns, &["rollout", "undo", "web"]).await?.trim(), "petset.petset.dev/web rolled back");
        petset(&ns, &["rollout", "status", "web", "--timeout", "60"]).await?;
        ns.wait_rolled_out("web", 3).await?;
        let undone = ns.wait_ready("web", 0..3).await?;
        assert_eq!(images(&undone), [OLD; 3]);
        let restarted_at = |p: &Pod| p.annotations().contains_key("kubectl.kubernetes.io/restartedAt");
        assert!(undone.iter().all(restarted_at), "undo did not bring back revision 2's template");
        petset(&ns, &["rollout", "undo", "web", "--to-revision", "1"]).await?;
        let set = ns.wait_rolled_out("web", 3).await?;
        assert!(
            set.spec.template.metadata.as_ref().is_none_or(|m| m.annotations.as_ref().is_none_or(|a| a.is_empty())),
            "undo to revision 1 kept a newer annotation: the template was merged, not replaced"
        );
        assert!(petset(&ns, &["rollout", "undo", "web", "--to-revision", "99"]).await.is_err());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn rollout_status_fails_past_the_progress_deadline() -> anyhow::Result<()> {
    in_namespace("plugin-stalled", |ns| async move {
        let _op = ns.start_operator().await;
        let mut set: PetSet = web("web", 2);
        set.spec.progress_deadline_seconds = Some(3);
        ns.create_petset(&set).await?;
        ns.wait_rolled_out("web", 2).await?;
        let mut stalled = web("web", 2);
        hold_not_ready(&mut stalled);
        ns.patch_spec("web", json!({"template": stalled.spec.template})).await?;
        let failed =
            petset(&ns, &["rollout", "status", "web", "--timeout", "60"]).await.expect_err("a stalled rollout");
        assert!(failed.to_string().contains("exceeded its progress deadline"), "{failed}");
        Ok(())
    })
    .await
}
