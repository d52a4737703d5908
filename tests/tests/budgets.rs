//! What a PetSet that keeps failing may cost, on the real control plane: its warnings
//! stay within a budget, its retries back off while other sets are served; a write the
//! fence refuses is counted as refused; an adoption lost to another controller stops
//! the sync and harms nobody's pod.

use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration,
    core::v1::{ConfigMap, Pod},
    events::v1::Event,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    client::ClientBuilder,
};
use petset_crd::PetSet;
use petset_operator::{
    controller::Context,
    fence::{Fence, FenceLayer},
    metrics::{EventLabels, FailureLabels, Metrics, WriteLabels},
    reconcile::{
        act,
        plan::{Action, DeleteReason, Plan},
    },
};
use petset_tests::{
    Operator, TIMEOUT, TestNs, config,
    fixtures::{pods_refused, stateless},
    in_namespace, start_operator_in, wait_for, wait_until,
};
use serde_json::json;

fn warnings(metrics: &Metrics, outcome: &'static str) -> u64 {
    metrics.events.get_or_create(&EventLabels { r#type: "Warning", outcome }).get()
}

fn pod_creates(metrics: &Metrics) -> u64 {
    metrics.api_writes.get_or_create(&WriteLabels { verb: "create", resource: "pods" }).get()
}

fn failures(metrics: &Metrics, reason: &'static str) -> u64 {
    metrics.reconcile_failures.get_or_create(&FailureLabels { reason }).get()
}

/// The FailedCreate events about `set` as the API shows them, and the writes they took
/// (an Event repeated is one object whose `series.count` counts its writes).
async fn failed_creates(ns: &TestNs, set: &str) -> anyhow::Result<(usize, i32)> {
    let events = ns.api::<Event>().list(&ListParams::default()).await?.items;
    let ours: Vec<&Event> = events
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(set))
        .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
        .collect();
    Ok((ours.len(), ours.iter().map(|e| e.series.as_ref().map_or(1, |s| s.count)).sum()))
}

fn has_replica_failure(set: Option<&PetSet>) -> bool {
    set.and_then(|s| s.status.as_ref())
        .is_some_and(|st| st.conditions.iter().any(|c| c.type_ == "ReplicaFailure" && c.status == "True"))
}

#[tokio::test]
async fn a_pod_refused_at_every_sync_writes_its_warning_within_a_budget() -> anyhow::Result<()> {
    in_namespace("warning-budget", |ns| async move {
        let op = ns.start_operator().await;
        ns.create_petset(&pods_refused("bad")).await?;
        wait_for(&ns.petsets(), "bad", "a ReplicaFailure condition", TIMEOUT, has_replica_failure).await?;

        // Every change of the set wakes a sync, and every sync tries the pod again.
        const TRIES: u64 = 40;
        let mut round = 0;
        while pod_creates(&op.metrics) < TRIES {
            round += 1;
            let tried = pod_creates(&op.metrics);
            let note = json!({"metadata": {"annotations": {"test/round": round.to_string()}}});
            ns.petsets().patch("bad", &PatchParams::default(), &Patch::Merge(&note)).await?;
            wait_until("another try of the pod", TIMEOUT, || async {
                ensure!(pod_creates(&op.metrics) > tried, "{tried} tries");
                Ok(())
            })
            .await?;
        }
        let tried = pod_creates(&op.metrics);
        wait_until("every warning published or held back", TIMEOUT, || async {
            let settled = warnings(&op.metrics, "published") + warnings(&op.metrics, "over_budget");
            ensure!(settled >= tried, "{settled} of {tried} warnings");
            Ok(())
        })
        .await?;

        let (objects, writes) = failed_creates(&ns, "bad").await?;
        eprintln!("{tried} refused creates: {objects} FailedCreate Event(s), {writes} event writes");
        ensure!(objects >= 1 && writes >= 1, "the failure was never reported");
        ensure!(writes <= 25, "{writes} writes for {tried} refusals: the warning is not budgeted");
        ensure!(objects <= 2, "{objects} Event objects for one repeated failure");
        ensure!(warnings(&op.metrics, "over_budget") >= tried - 25);
        let set = ns.petsets().get("bad").await?;
        ensure!(has_replica_failure(Some(&set)), "the condition went away: {:?}", set.status);
        Ok(())
    })
    .await
}

/// A webhook nobody serves, called for every pod created in `ns`: the API server
/// fails those creates (500), as it does while a real webhook is down.
fn webhook_down(ns: &str) -> anyhow::Result<ValidatingWebhookConfiguration> {
    let yaml = format!(
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: {ns}-down}}
webhooks:
- name: down.petset.dev
  clientConfig: {{url: "https://127.0.0.1:9/down"}}
  rules: [{{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}}]
  namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}}
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
  timeoutSeconds: 1
"#
    );
    Ok(serde_saphyr::from_str(&yaml)?)
}

#[tokio::test]
async fn a_set_failing_every_sync_backs_off_while_another_is_served_promptly() -> anyhow::Result<()> {
    in_namespace("backoff-down", |down| async move {
        in_namespace("backoff-up", |up| async move {
            let webhooks = Api::<ValidatingWebhookConfiguration>::all(down.client.clone());
            let webhook = webhooks.create(&PostParams::default(), &webhook_down(&down.name)?).await?;
            let result = backoff_while_down(&down, &up).await;
            webhooks.delete(&webhook.name_any(), &DeleteParams::default()).await?;
            result
        })
        .await
    })
    .await
}

async fn backoff_while_down(down: &TestNs, up: &TestNs) -> anyhow::Result<()> {
    wait_until("the webhook refusing pods", TIMEOUT, || async {
        let probe: Pod = serde_saphyr::from_str("metadata: {name: probe}\nspec: {containers: [{name: c, image: c}]}")?;
        match down.pods().create(&PostParams::default(), &probe).await {
            Err(kube::Error::Api(status)) if status.code == 500 => Ok(()),
            other => {
                let _ = down.pods().delete("probe", &DeleteParams::default()).await;
                anyhow::bail!("the probe pod: {other:?}")
            }
        }
    })
    .await?;
    let op = start_operator_in(&[down, up]).await;
    down.create_petset(&stateless("web", 1)).await?;
    up.create_petset(&stateless("web", 3)).await?;

    // The moments the failing set's syncs fail, until five have, and meanwhile the
    // moment the healthy set is ready.
    let started = tokio::time::Instant::now();
    let failing = async {
        let mut failed_at = Vec::new();
        while failed_at.len() < 5 {
            ensure!(started.elapsed() < TIMEOUT, "{} failed syncs in {TIMEOUT:?}", failed_at.len());
            let failed = failures(&op.metrics, "write") as usize;
            failed_at.resize(failed.max(failed_at.len()), started.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(failed_at)
    };
    let healthy = async { up.wait_ready("web", 0..3).await.map(|_| started.elapsed()) };
    let (failed_at, ready_at) = tokio::try_join!(failing, healthy)?;
    let gaps: Vec<Duration> = failed_at.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("failed syncs at {failed_at:?}; gaps {gaps:?}; the healthy set ready at {ready_at:?}");
    // The first retry may come at once (the first failure's status write wakes the
    // set); after that each wait doubles, give or take a tenth.
    for pair in gaps[1..].windows(2) {
        ensure!(pair[1] > pair[0].mul_f64(1.3), "the retries do not back off: gaps {gaps:?}");
    }
    ensure!(op.metrics.render().contains("petset_retry_delay_seconds_count"), "no retry delay reported");
    ensure!(ready_at < failed_at[4], "the healthy set was ready only at {ready_at:?}");
    ensure!(down.pods_of("web").await?.is_empty(), "a pod got past the webhook");
    down.wait_event("web", "FailedCreate", "failed calling webhook").await?;
    Ok(())
}

#[tokio::test]
async fn writes_the_fence_refuses_are_counted_as_fenced_and_nothing_is_written() -> anyhow::Result<()> {
    in_namespace("fenced", |ns| async move {
        let metrics = Arc::new(Metrics::default());
        let fence = Fence::until(tokio::time::Instant::now() + Duration::from_secs(3600));
        let layer = FenceLayer::new(fence.clone(), metrics.fenced_writes.clone());
        let client = ClientBuilder::try_from(config().await?)?.with_layer(&layer).build();
        let op = Operator::start(client, vec![ns.name.clone()], metrics.clone());
        ns.create_petset(&stateless("web", 1)).await?;
        ns.wait_ready("web", [0]).await?;
        let written = pod_creates(&metrics);

        // Leadership lost: the operator goes on watching, and sends no write.
        fence.close();
        ns.petsets().patch("web", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 3}}))).await?;
        wait_until("a sync refused by the fence", TIMEOUT, || async {
            ensure!(failures(&metrics, "fenced") >= 1, "{}", metrics.render());
            ensure!(metrics.fenced_writes.get() >= 1, "{}", metrics.render());
            Ok(())
        })
        .await?;
        ensure!(failures(&metrics, "write") == 0, "a refused write counted as a failed write:\n{}", metrics.render());
        ensure!(pod_creates(&metrics) == written, "a refused create counted as sent:\n{}", metrics.render());
        let pods = ns.pods_of("web").await?;
        ensure!(
            pods.len() == 1,
            "pods written past the fence: {:?}",
            pods.iter().map(|p| p.name_any()).collect::<Vec<_>>()
        );
        let set = ns.petsets().get("web").await?;
        ensure!(set.status.as_ref().and_then(|s| s.observed_generation) == Some(1), "status written past the fence");
        drop(op);
        Ok(())
    })
    .await
}

/// A pod named and labelled as a member of set `web`, owned by no one.
const ORPHAN: &str = "metadata: {name: web-0, labels: {app: web, statefulset.kubernetes.io/pod-name: web-0}}
spec: {containers: [{name: nginx, image: nginx}]}";

/// The orphan `web-0` of set `web`, as the plan saw it, and the plan: adopt it, then,
/// in a later step, delete it as a member (a scale-down, say).
async fn stale_plan_for_orphan(ns: &TestNs) -> anyhow::Result<(PetSet, Pod, Plan)> {
    let set = ns.create_petset(&stateless("web", 1)).await?;
    let orphan: Pod = ns.create(ORPHAN).await?;
    let (name, uid) = (orphan.name_any(), orphan.uid().context("uid")?);
    let plan = Plan {
        batches: vec![
            vec![vec![Action::AdoptPod { name: name.clone(), uid: uid.clone() }]],
            vec![vec![Action::DeletePod { name, uid, reason: DeleteReason::ScaleDown }]],
        ],
        ..Plan::default()
    };
    Ok((set, orphan, plan))
}

#[tokio::test]
async fn an_adoption_lost_to_another_controller_stops_the_sync_and_the_pod_keeps_its_owner() -> anyhow::Result<()> {
    in_namespace("adopt-race", |ns| async move {
        // No operator runs: the test plays a sync's act step, with a plan made before
        // another controller took the orphan.
        let (set, orphan, plan) = stale_plan_for_orphan(&ns).await?;
        let owner: ConfigMap = ns.create("metadata: {name: other-controller}").await?;
        let taken = json!({"metadata": {"ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner.name_any(),
            "uid": owner.uid(), "controller": true,
        }]}});
        ns.pods().patch("web-0", &PatchParams::default(), &Patch::Merge(&taken)).await?;

        let ctx = Context::uncached(ns.client.clone(), Arc::default());
        let outcome = act::execute(&set, &plan, &ctx).await;
        let error = outcome.err().context("the sync went on after the adoption was refused")?;
        ensure!(error.to_string().starts_with("patch Pod web-0"), "{error}");

        let pod = ns.pods().get("web-0").await.context("the pod was deleted")?;
        ensure!(pod.uid() == orphan.uid(), "the pod was replaced");
        let owners: Vec<_> = pod.owner_references().iter().map(|r| (r.kind.as_str(), r.name.as_str())).collect();
        ensure!(owners == [("ConfigMap", "other-controller")], "owners now: {owners:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn an_adoption_of_an_orphan_replaced_since_the_plan_stops_the_sync() -> anyhow::Result<()> {
    in_namespace("adopt-replaced", |ns| async move {
        let (set, orphan, plan) = stale_plan_for_orphan(&ns).await?;
        ns.pods().delete("web-0", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await?;
        wait_for(&ns.pods(), "web-0", "gone", TIMEOUT, |p| p.is_none()).await?;
        let again: Pod = ns.create(ORPHAN).await?;
        ensure!(again.uid() != orphan.uid());

        let ctx = Context::uncached(ns.client.clone(), Arc::default());
        let error = act::execute(&set, &plan, &ctx).await.err().context("a replaced pod's adoption succeeded")?;
        ensure!(error.to_string().starts_with("patch Pod web-0"), "{error}");
        let pod = ns.pods().get("web-0").await?;
        ensure!(pod.uid() == again.uid() && pod.owner_references().is_empty(), "{:?}", pod.metadata);
        Ok(())
    })
    .await
}
