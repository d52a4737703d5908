//! Isolation on the real control plane: an operator watching several namespaces serves
//! every one of them, and an object it cannot decode stops nothing but itself.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use petset_crd::PetSet;
use petset_tests::{
    Operator, TIMEOUT, TestNs,
    fixtures::{stateless, web},
    in_namespace, start_operator_in, wait_for, wait_until,
};
use serde_json::{Value, json};

const IMAGE: &str = "registry.k8s.io/nginx-slim:0.27";

/// A date the API server accepts and k8s-openapi's time type cannot represent.
const FAR_FUTURE: &str = "9999-12-31T00:00:00Z";

#[tokio::test]
async fn an_operator_of_two_namespaces_serves_both() -> anyhow::Result<()> {
    in_namespace("two-ns-a", |a| async move {
        in_namespace("two-ns-b", |b| async move {
            // Both exist before the operator starts, so both are in its first lists.
            a.create_petset(&web("web", 2)).await?;
            b.create_petset(&web("web", 2)).await?;
            let op = start_operator_in(&[&a, &b]).await;
            wait_ready_flag(&op).await?;
            for ns in [&a, &b] {
                assert_images(&ns.wait_ready("web", 0..2).await?);
            }
            // Both keep being served after the first lists, too.
            for ns in [&a, &b] {
                ns.patch_spec("web", json!({"replicas": 3})).await?;
            }
            for ns in [&a, &b] {
                assert_images(&ns.wait_ready("web", 0..3).await?);
            }
            wait_until("petset_managed_petsets 2", TIMEOUT, || async {
                let metrics = op.metrics.render();
                anyhow::ensure!(metrics.lines().any(|l| l == "petset_managed_petsets 2"), "{metrics}");
                Ok(())
            })
            .await
        })
        .await
    })
    .await
}

#[tokio::test]
async fn a_petset_that_does_not_decode_stops_nothing_else() -> anyhow::Result<()> {
    in_namespace("undecodable-x", |x| async move {
        in_namespace("undecodable-y", |y| async move {
            x.create_raw(far_future(&stateless("far", 1))?).await?;
            y.create_petset(&stateless("web", 2)).await?;
            let op = start_operator_in(&[&x, &y]).await;
            wait_ready_flag(&op).await?;
            assert_images(&y.wait_ready("web", 0..2).await?);
            x.wait_event("far", "Undecodable", "cannot decode this PetSet").await?;
            wait_undecodable(&op, 1).await?;
            anyhow::ensure!(x.pods_of("far").await?.is_empty(), "pods were made from a spec petset cannot read");

            // A set that decoded, stops decoding, and is fixed, in the bad set's namespace.
            x.create_petset(&stateless("turns", 1)).await?;
            x.wait_ready("turns", [0]).await?;
            let bad = json!({"spec": {"template": {"metadata": {"creationTimestamp": FAR_FUTURE}}}});
            patch_raw(&x, "turns", bad).await?;
            x.wait_event("turns", "Undecodable", "spec.template.metadata.creationTimestamp").await?;
            wait_undecodable(&op, 2).await?;
            wait_marked(&x, "turns", true).await?;
            let fixed = json!({"spec": {"replicas": 2, "template": {"metadata": {"creationTimestamp": null}}}});
            patch_raw(&x, "turns", fixed).await?;
            assert_images(&x.wait_ready("turns", 0..2).await?);
            wait_marked(&x, "turns", false).await
        })
        .await
    })
    .await
}

async fn wait_ready_flag(op: &Operator) -> anyhow::Result<()> {
    let mut ready = op.ready.clone();
    tokio::time::timeout(TIMEOUT, ready.wait_for(|r| *r))
        .await
        .map_err(|_| anyhow::anyhow!("the operator was not ready (caches synced) within {TIMEOUT:?}"))??;
    Ok(())
}

fn assert_images(pods: &[Pod]) {
    for pod in pods {
        let images: Vec<_> = pod.spec.iter().flat_map(|s| &s.containers).map(|c| c.image.as_deref()).collect();
        assert_eq!(images, [Some(IMAGE)], "pod {:?}", pod.metadata.name);
    }
}

/// Waits until the metric counts at least `at_least` undecodable PetSets.
async fn wait_undecodable(op: &Operator, at_least: u64) -> anyhow::Result<()> {
    wait_until(&format!("{at_least} undecodable PetSets counted"), TIMEOUT, || async {
        let metrics = op.metrics.render();
        let counted = metrics
            .lines()
            .find_map(|l| l.strip_prefix(r#"petset_undecodable_objects_total{kind="PetSet"} "#))
            .and_then(|n| n.parse::<u64>().ok());
        anyhow::ensure!(counted.is_some_and(|n| n >= at_least), "{metrics}");
        Ok(())
    })
    .await
}

/// `set` with its pod template stamped with a creation time the typed PetSet cannot hold.
fn far_future(set: &PetSet) -> anyhow::Result<Value> {
    let mut value = serde_json::to_value(set)?;
    value["spec"]["template"]["metadata"]["creationTimestamp"] = json!(FAR_FUTURE);
    Ok(value)
}

/// Waits until the set has (or no longer has) the condition of a set that does not
/// decode, naming the field.
async fn wait_marked(ns: &TestNs, name: &str, marked: bool) -> anyhow::Result<()> {
    let what = format!("Undecodable condition present: {marked}");
    wait_for(&ns.raw_petsets(), name, &what, TIMEOUT, |s| {
        let conditions = s.and_then(|s| s.data["status"]["conditions"].as_array().cloned()).unwrap_or_default();
        let found = conditions.iter().any(|c| {
            c["type"] == "ReplicaFailure"
                && c["reason"] == "Undecodable"
                && c["message"].as_str().is_some_and(|m| m.contains("spec.template.metadata.creationTimestamp"))
        });
        found == marked
    })
    .await?;
    Ok(())
}

async fn patch_raw(ns: &TestNs, name: &str, patch: Value) -> anyhow::Result<()> {
    ns.raw_petsets().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}
