//! The bad-input catalogue: one line per case, each in a namespace of its own, while
//! one operator serves all of them and a healthy PetSet in another namespace scales
//! 1 -> 3 -> 1. Every case ends as its line says: refused at admission with the field
//! named, reported as a condition and a Warning event on the set, or (for input that
//! is legitimately fine) served. No case may panic the operator or be felt by the
//! healthy set. Run with `--nocapture` for the table of outcomes.

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PatchParams, PostParams},
};
use petset_tests::{
    Operator, TIMEOUT, TestNs,
    fixtures::{merge, web},
    in_namespaces, pod_ready, start_operator_in, wait_for, wait_until,
};
use serde_json::{Value, json};

const IMAGE: &str = "registry.k8s.io/nginx-slim:0.27";
const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
const REVISION: &str = "controller-revision-hash";

/// How a case must end.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The API server refuses the PetSet with a message containing this text.
    Refused(&'static str),
    /// Accepted; the set gets a True condition with `reason` and a Warning event with
    /// `reason`, both with messages containing `message_contains`.
    Reported { reason: &'static str, message_contains: &'static str },
    /// Fine as it is: the set's pods are all there, Ready, running its image, and stay so
    /// through what `after` does.
    Served,
}
use Expect::*;

/// What is done to an object once the set is served, under the operator's feet.
enum After {
    /// Deleted; the operator must bring it back (a new uid).
    Delete(&'static str, &'static str),
    /// Merge-patched as an app (or a person) could; the set must stay served.
    Patch(&'static str, &'static str, Value),
    /// Not a change: the set must then report this leader (or none) in its status.
    Leader(Option<&'static str>),
}
use After::*;

struct Case {
    name: &'static str,
    /// Objects created in the namespace before the set, in order.
    before: Vec<Value>,
    /// Merged into the fixture: `web`, 1 replica, the claim template `www`.
    spec: Value,
    after: Vec<After>,
    expect: Expect,
}

fn spec(name: &'static str, spec: Value, expect: Expect) -> Case {
    Case { name, before: vec![], spec, after: vec![], expect }
}

fn with(name: &'static str, before: Vec<Value>, spec: Value, expect: Expect) -> Case {
    Case { name, before, spec, after: vec![], expect }
}

fn then(name: &'static str, spec: Value, after: Vec<After>) -> Case {
    Case { name, before: vec![], spec, after, expect: Served }
}

/// The spec of the fixture's only container, with `extra` merged in.
fn container(extra: Value) -> Value {
    let mut c = json!({"name": "nginx", "image": IMAGE});
    merge(&mut c, extra);
    json!({"spec": {"template": {"spec": {"containers": [c]}}}})
}

/// The fixture's claim template `www`, with `extra` merged into its spec.
fn claim(extra: Value) -> Value {
    let mut c = json!({"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    merge(&mut c["spec"], extra);
    json!({"spec": {"volumeClaimTemplates": [c]}})
}

fn rolling(update: Value) -> Value {
    json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": update}}})
}

fn elected() -> Value {
    json!({"spec": {"clustering": {"manageService": true, "leader": {"policy": "AppElected"}}}})
}

/// The election Lease as an app writes it.
fn lease(holder: &str, renewed: &str, seconds: i64) -> After {
    Patch(
        "Lease",
        "web",
        json!({"spec": {"holderIdentity": holder, "renewTime": renewed, "leaseDurationSeconds": seconds}}),
    )
}

#[rustfmt::skip]
fn catalogue() -> Vec<Case> {
    let long = "a".repeat(53);
    vec![
        // Spec fields.
        spec("replicas-negative", json!({"spec": {"replicas": -1}}), Refused("spec.replicas")),
        spec("replicas-a-string", json!({"spec": {"replicas": "three"}}), Refused("spec.replicas")),
        spec("replicas-beyond-int32", json!({"spec": {"replicas": 2147483648_i64}}), Refused("spec.replicas")),
        spec("ordinals-start-negative", json!({"spec": {"ordinals": {"start": -1}}}), Refused("spec.ordinals.start")),
        spec("ordinals-past-int32", json!({"spec": {"replicas": 2, "ordinals": {"start": 2147483647}}}), Refused("spec.ordinals.start + spec.replicas must be at most 2147483647")),
        spec("min-ready-negative", json!({"spec": {"minReadySeconds": -1}}), Refused("spec.minReadySeconds")),
        spec("history-limit-negative", json!({"spec": {"revisionHistoryLimit": -1}}), Refused("spec.revisionHistoryLimit")),
        spec("progress-deadline-zero", json!({"spec": {"progressDeadlineSeconds": 0}}), Refused("spec.progressDeadlineSeconds")),
        spec("partition-negative", rolling(json!({"partition": -1})), Refused("spec.updateStrategy.rollingUpdate.partition")),
        spec("max-unavailable-zero", rolling(json!({"maxUnavailable": 0})), Refused("spec.updateStrategy.rollingUpdate.maxUnavailable")),
        spec("max-unavailable-101-percent", rolling(json!({"maxUnavailable": "101%"})), Refused("spec.updateStrategy.rollingUpdate.maxUnavailable")),
        spec("max-unavailable-huge-percent", rolling(json!({"maxUnavailable": "9223372036854775807%"})), Refused("spec.updateStrategy.rollingUpdate.maxUnavailable")),
        spec("replace-unhealthy-zero", rolling(json!({"replaceUnhealthyAfterSeconds": 0})), Refused("spec.updateStrategy.rollingUpdate.replaceUnhealthyAfterSeconds")),
        spec("update-type-unknown", json!({"spec": {"updateStrategy": {"type": "Sometimes"}}}), Refused("spec.updateStrategy.type")),
        spec("on-delete-with-rolling-update", json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}}}}), Refused("spec.updateStrategy.rollingUpdate is only allowed for updateStrategy 'RollingUpdate'")),
        spec("pod-policy-unknown", json!({"spec": {"podManagementPolicy": "Sometimes"}}), Refused("spec.podManagementPolicy")),
        spec("retention-unknown", json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Keep"}}}), Refused("spec.persistentVolumeClaimRetentionPolicy.whenDeleted")),
        spec("leader-policy-unknown", json!({"spec": {"clustering": {"leader": {"policy": "Whoever"}}}}), Refused("spec.clustering.leader.policy")),
        spec("clustering-without-service", json!({"spec": {"serviceName": null, "clustering": {}}}), Refused("spec.clustering needs spec.serviceName")),
        // Pod templates.
        spec("restart-policy-never", json!({"spec": {"template": {"spec": {"restartPolicy": "Never"}}}}), Refused("spec.template.spec.restartPolicy")),
        spec("active-deadline-set", json!({"spec": {"template": {"spec": {"activeDeadlineSeconds": 60}}}}), Refused("spec.template.spec.activeDeadlineSeconds must not be set")),
        spec("containers-not-a-list", json!({"spec": {"template": {"spec": {"containers": "nginx"}}}}), Refused("spec.template.spec.containers")),
        spec("template-without-labels", json!({"spec": {"template": {"metadata": {"labels": null}}}}), Refused("spec.template.metadata.labels")),
        spec("label-value-with-newline", json!({"spec": {"template": {"metadata": {"labels": {"tier": "db\nx"}}}}}), Refused("spec.template.metadata.labels must be valid labels")),
        spec("label-value-with-nul", json!({"spec": {"template": {"metadata": {"labels": {"tier": "db\u{0}"}}}}}), Refused("spec.template.metadata.labels must be valid labels")),
        spec("label-key-invalid", json!({"spec": {"template": {"metadata": {"labels": {"bad key": "x"}}}}}), Refused("spec.template.metadata.labels must be valid labels")),
        spec("template-sets-the-revision-label", json!({"spec": {"template": {"metadata": {"labels": {"controller-revision-hash": "forged"}}}}}), Served),
        spec("template-sets-the-pod-name-label", json!({"spec": {"template": {"metadata": {"labels": {"statefulset.kubernetes.io/pod-name": "web-7"}}}}}), Served),
        spec("label-value-too-long", json!({"spec": {"template": {"metadata": {"labels": {"tier": "x".repeat(64)}}}}}), Refused("spec.template.metadata.labels")),
        spec("container-name-not-dns-label", container(json!({"name": "Not_A_DNS_Label"})), Reported { reason: "FailedCreate", message_contains: "spec.containers[0].name" }),
        spec("no-containers", json!({"spec": {"template": {"spec": {"containers": []}}}}), Reported { reason: "FailedCreate", message_contains: "spec.containers" }),
        spec("image-with-leading-space", container(json!({"image": format!(" {IMAGE}")})), Reported { reason: "FailedCreate", message_contains: "spec.containers[0].image" }),
        spec("mount-of-a-missing-volume", container(json!({"volumeMounts": [{"name": "nothere", "mountPath": "/x"}]})), Reported { reason: "FailedCreate", message_contains: "spec.containers[0].volumeMounts[0].name" }),
        spec("field-ref-unknown", container(json!({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.nothing"}}}]})), Reported { reason: "FailedCreate", message_contains: "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath" }),
        spec("container-port-beyond-65535", container(json!({"ports": [{"containerPort": 70000}]})), Reported { reason: "FailedCreate", message_contains: "spec.containers[0].ports[0].containerPort" }),
        spec("run-as-user-negative", json!({"spec": {"template": {"spec": {"securityContext": {"runAsUser": -1}}}}}), Reported { reason: "FailedCreate", message_contains: "spec.securityContext.runAsUser" }),
        spec("node-selector-value-invalid", json!({"spec": {"template": {"spec": {"nodeSelector": {"zone": "a b"}}}}}), Reported { reason: "FailedCreate", message_contains: "spec.nodeSelector" }),
        spec("dns-policy-none-without-config", json!({"spec": {"template": {"spec": {"dnsPolicy": "None"}}}}), Reported { reason: "FailedCreate", message_contains: "spec.dnsConfig" }),
        spec("annotation-key-invalid", json!({"spec": {"template": {"metadata": {"annotations": {"bad key": "x"}}}}}), Reported { reason: "FailedCreate", message_contains: "metadata.annotations" }),
        spec("volume-named-like-the-claim", json!({"spec": {"template": {"spec": {"volumes": [{"name": "www", "emptyDir": {}}]}}}}), Served),
        spec("grace-period-max", json!({"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 2147483647}}}}), Served),
        // Quantities.
        spec("cpu-limit-not-a-quantity", container(json!({"resources": {"limits": {"cpu": "lots"}}})), Refused("spec.template.spec.containers[0].resources.limits.cpu")),
        spec("request-above-limit", container(json!({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}})), Reported { reason: "FailedCreate", message_contains: "spec.containers[0].resources.requests" }),
        spec("storage-not-a-quantity", claim(json!({"resources": {"requests": {"storage": "abc"}}})), Refused("spec.volumeClaimTemplates[0].spec.resources.requests.storage")),
        spec("storage-negative", claim(json!({"resources": {"requests": {"storage": "-1Gi"}}})), Reported { reason: "FailedCreate", message_contains: "spec.resources[storage]: Invalid value: \"-1Gi\"" }),
        spec("storage-missing", json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}), Reported { reason: "FailedCreate", message_contains: "spec.resources[storage]" }),
        // Claim templates.
        spec("claim-name-not-dns-label", json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "Data_1"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}), Refused("spec.volumeClaimTemplates[].metadata.name must be a DNS label")),
        spec("claim-name-too-long-for-a-volume", json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "d".repeat(64)}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}), Refused("spec.volumeClaimTemplates[].metadata.name must be a DNS label")),
        spec("claim-names-duplicate", json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "www"}}, {"metadata": {"name": "www"}}]}}), Refused("spec.volumeClaimTemplates[].metadata.name must be unique")),
        spec("claim-without-name", json!({"spec": {"volumeClaimTemplates": [{"metadata": {}}]}}), Refused("spec.volumeClaimTemplates[0].metadata.name")),
        spec("claim-without-access-modes", claim(json!({"accessModes": []})), Reported { reason: "FailedCreate", message_contains: "spec.accessModes" }),
        spec("claim-access-mode-unknown", claim(json!({"accessModes": ["Sometimes"]})), Reported { reason: "FailedCreate", message_contains: "spec.accessModes" }),
        spec("claim-volume-mode-unknown", claim(json!({"volumeMode": "Sideways"})), Reported { reason: "FailedCreate", message_contains: "spec.volumeMode" }),
        // Names.
        spec("name-of-53-characters", json!({"metadata": {"name": long}}), Refused("metadata.name must be at most 52 characters")),
        spec("name-with-a-dot", json!({"metadata": {"name": "web.v2"}}), Refused("metadata.name must be a DNS label")),
        spec("name-upper-case", json!({"metadata": {"name": "Web"}}), Refused("metadata.name")),
        spec("name-of-52-characters", json!({"metadata": {"name": "w".repeat(52)}}), Served),
        spec("service-name-with-a-dot", json!({"spec": {"serviceName": "web.svc"}}), Refused("spec.serviceName must be a DNS label")),
        spec("service-name-with-newline", json!({"spec": {"serviceName": "web\nx"}}), Refused("spec.serviceName must be a DNS label")),
        spec("service-name-too-long", json!({"spec": {"serviceName": "s".repeat(64)}}), Refused("spec.serviceName")),
        spec("cluster-domain-with-newline", json!({"spec": {"clustering": {"clusterDomain": "cluster.local\n0 evil.example ready leader"}}}), Refused("spec.clustering.clusterDomain must be a DNS domain")),
        spec("cluster-domain-with-nul", json!({"spec": {"clustering": {"clusterDomain": "cluster.local\u{0}"}}}), Refused("spec.clustering.clusterDomain must be a DNS domain")),
        // Selectors.
        spec("selector-empty", json!({"spec": {"selector": {"matchLabels": null}}}), Refused("spec.selector must not be empty")),
        spec("selector-not-matching", json!({"spec": {"selector": {"matchLabels": {"app": "other"}}}}), Refused("spec.selector.matchLabels must match spec.template.metadata.labels")),
        spec("selector-exists-with-values", json!({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["web"]}]}}}), Refused("spec.selector.matchExpressions[] must each have a valid label key")),
        spec("selector-in-without-values", json!({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]}}}), Refused("spec.selector.matchExpressions[] must each have a valid label key")),
        spec("selector-key-invalid", json!({"spec": {"selector": {"matchExpressions": [{"key": "bad key!", "operator": "DoesNotExist"}]}}}), Refused("spec.selector.matchExpressions[] must each have a valid label key")),
        spec("selector-operator-unknown", json!({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Like", "values": ["web"]}]}}}), Refused("spec.selector.matchExpressions must match")),
        // Huge numbers that are legal.
        spec("ordinals-start-near-int32-max", json!({"spec": {"replicas": 2, "ordinals": {"start": 2147483645}}}), Served),
        spec("history-limit-max", json!({"spec": {"revisionHistoryLimit": 2147483647}}), Served),
        spec("min-ready-max", json!({"spec": {"minReadySeconds": 2147483647}}), Served),
        spec("progress-deadline-max", json!({"spec": {"progressDeadlineSeconds": 2147483647}}), Served),
        spec("replace-unhealthy-max", rolling(json!({"replaceUnhealthyAfterSeconds": 2147483647})), Served),
        spec("partition-above-replicas", rolling(json!({"partition": 5})), Served),
        // Times.
        spec("template-created-in-9999", json!({"spec": {"template": {"metadata": {"creationTimestamp": "9999-12-31T00:00:00Z"}}}}), Reported { reason: "Undecodable", message_contains: "spec.template.metadata.creationTimestamp" }),
        then("lease-renewed-in-9999", elected(), vec![lease("web-0", "9999-12-30T21:00:00.000000Z", 2_000_000_000), Leader(Some("web-0"))]),
        then("lease-renewed-past-decoding", elected(), vec![lease("web-0", "9999-12-31T23:00:00.000000Z", 1), Leader(None)]),
        then("lease-renewed-in-year-1", elected(), vec![lease("web-0", "0001-01-01T00:00:00.000000Z", 2_000_000_000), Leader(None)]),
        // Leases and ConfigMaps written by apps.
        then("lease-held-by-a-stranger", elected(), vec![lease("intruder", "2099-01-01T00:00:00.000000Z", 15), Leader(None)]),
        then("lease-holder-with-newline", elected(), vec![lease("web-0\nweb-1", "2099-01-01T00:00:00.000000Z", 15), Leader(None)]),
        then("peers-file-overwritten", elected(), vec![Patch("ConfigMap", "web-peers", json!({"data": {"peers": "0 evil.example ready leader\n"}}))]),
        // Objects owned by someone else, and the namespace's own rules.
        with("claim-owned-by-another", vec![owner(), owned_claim()], json!({}), Served),
        with("quota-of-zero-pods", vec![json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"}, "spec": {"hard": {"pods": "0"}}})], json!({}), Reported { reason: "FailedCreate", message_contains: "exceeded quota" }),
        with("limit-range-below-request", vec![json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "l"}, "spec": {"limits": [{"type": "Container", "max": {"cpu": "100m"}}]}})], container(json!({"resources": {"requests": {"cpu": "200m"}, "limits": {"cpu": "200m"}}})), Reported { reason: "FailedCreate", message_contains: "maximum cpu usage" }),
        // Objects deleted under the operator's feet.
        then("pod-deleted", json!({}), vec![Delete("Pod", "web-0")]),
        then("pod-and-claim-deleted", json!({}), vec![Delete("PersistentVolumeClaim", "www-web-0"), Delete("Pod", "web-0")]),
        then("peers-file-deleted", elected(), vec![Delete("ConfigMap", "web-peers")]),
        then("governing-service-deleted", elected(), vec![Delete("Service", "web")]),
        then("election-lease-deleted", elected(), vec![Delete("Lease", "web")]),
    ]
}

/// A ConfigMap to own the claim of `claim-owned-by-another`.
fn owner() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
}

/// The claim `www-web-0`, controlled by the ConfigMap `owner` (its uid filled in at creation).
fn owned_claim() -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "www-web-0", "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "uid-of:owner", "controller": true}]},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

#[tokio::test]
async fn the_bad_input_catalogue() -> anyhow::Result<()> {
    // BAD_INPUT_CASES=a,b runs only the cases whose names contain a or b.
    let only = std::env::var("BAD_INPUT_CASES").ok();
    let filter = |c: &Case| only.as_deref().is_none_or(|o| o.split(',').any(|part| c.name.contains(part)));
    let cases: Vec<Case> = catalogue().into_iter().filter(filter).collect();
    let settled = cases.iter().filter(|c| !matches!(c.expect, Refused(_))).count();
    let refused_or_reported = cases.iter().filter(|c| matches!(c.expect, Refused(_) | Reported { .. })).count();
    anyhow::ensure!(only.is_some() || refused_or_reported >= 40, "only {refused_or_reported} bad inputs");
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.push("bad-input-healthy");
    in_namespaces(&names, |namespaces| async move {
        let healthy = namespaces.last().expect("the healthy namespace");
        // Only what the API server accepts needs the operator.
        let watched: Vec<&TestNs> =
            cases.iter().zip(&namespaces).filter(|(c, _)| !matches!(c.expect, Refused(_))).map(|(_, ns)| ns).collect();
        anyhow::ensure!(watched.len() == settled);
        let op = start_operator_in(&[watched.as_slice(), &[healthy]].concat()).await;

        let runs = join_all(cases.iter().zip(&namespaces).map(|(case, ns)| async move {
            let observed = tokio::time::timeout(TIMEOUT * 2, run(case, ns)).await;
            let observed = observed.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
            // What the set was told, to see why a case did not end as it should.
            match (observed, ns.events_about("web").await) {
                (Err(e), Ok(events)) => Err(e.context(format!("events about the set: {events:?}"))),
                (observed, _) => observed,
            }
        }));
        let (outcomes, scaled) = tokio::join!(runs, scale_healthy(healthy));

        println!("\n| case | expected | observed |\n|---|---|---|");
        let mut failed = Vec::new();
        for (case, outcome) in cases.iter().zip(&outcomes) {
            let observed = match outcome {
                Ok(o) => o.clone(),
                Err(e) => {
                    failed.push(case.name);
                    format!("**FAILED**: {e:#}")
                }
            };
            println!("| {} | {} | {} |", case.name, expected(case.expect), one_line(&observed));
        }
        println!();
        scaled?;
        no_panic(&op)?;
        anyhow::ensure!(failed.is_empty(), "cases that did not end as the catalogue says: {failed:?}");
        Ok(())
    })
    .await
}

/// The healthy set, scaled 1 -> 3 -> 1 while the cases run, each step Ready at its image.
async fn scale_healthy(ns: &TestNs) -> anyhow::Result<()> {
    ns.create_petset(&web("web", 1)).await?;
    for replicas in [1, 3, 1] {
        ns.patch_spec("web", json!({"replicas": replicas})).await?;
        let pods = ns.wait_ready("web", 0..replicas).await?;
        for pod in &pods {
            anyhow::ensure!(images(pod) == [IMAGE], "healthy {} runs {:?}", pod.name_any(), images(pod));
        }
    }
    Ok(())
}

fn no_panic(op: &Operator) -> anyhow::Result<()> {
    let metrics = op.metrics.render();
    let panics = metrics
        .lines()
        .filter(|l| l.starts_with("petset_reconcile_failures_total") && l.contains(r#"reason="panic""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    anyhow::ensure!(panics == 0.0, "the operator panicked {panics} times:\n{metrics}");
    Ok(())
}

async fn run(case: &Case, ns: &TestNs) -> anyhow::Result<String> {
    let mut uids = std::collections::BTreeMap::new();
    for object in &case.before {
        let mut object = object.clone();
        fill_uids(&mut object, &uids);
        let created = create(ns, object).await?;
        uids.insert(created.name_any(), created.uid().unwrap_or_default());
    }
    let mut set = serde_json::to_value(web("web", 1))?;
    merge(&mut set, case.spec.clone());
    let name = set["metadata"]["name"].as_str().unwrap_or_default().to_string();
    match (case.expect, ns.create_raw(set.clone()).await) {
        (Refused(text), Err(kube::Error::Api(e))) => {
            anyhow::ensure!(e.code == 422, "refused with {} instead of 422: {}", e.code, e.message);
            anyhow::ensure!(e.message.contains(text), "the refusal does not say {text:?}: {}", e.message);
            Ok(format!("refused: {}", e.message))
        }
        (_, Err(e)) => anyhow::bail!("refused: {e}"),
        (Refused(_), Ok(_)) => anyhow::bail!("accepted"),
        (Reported { reason, message_contains }, Ok(_)) => reported(ns, &name, reason, message_contains).await,
        (Served, Ok(_)) => {
            let pods = served(ns, &set).await?;
            let mut deleted = Vec::new();
            for after in &case.after {
                deleted.extend(tamper(ns, after).await?);
            }
            for (api, name, uid) in &deleted {
                back(api, name, uid).await?;
            }
            if !case.after.is_empty() {
                served(ns, &set).await?;
            }
            let done: Vec<String> = case.after.iter().map(describe).collect();
            Ok(if done.is_empty() { format!("served: {pods}") } else { format!("served: {pods}; {}", done.join("; ")) })
        }
    }
}

async fn reported(ns: &TestNs, name: &str, reason: &str, text: &str) -> anyhow::Result<String> {
    let has = |s: Option<&DynamicObject>| {
        conditions(s).iter().any(|c| {
            c["status"] == "True" && c["reason"] == reason && c["message"].as_str().is_some_and(|m| m.contains(text))
        })
    };
    let set = wait_for(&ns.raw_petsets(), name, &format!("a condition {reason}: ...{text}..."), TIMEOUT, has).await?;
    ns.wait_event(name, reason, text).await?;
    let condition = conditions(set.as_ref()).into_iter().find(|c| c["reason"] == reason).unwrap_or_default();
    Ok(format!(
        "condition {} {reason} + Warning event: {}",
        condition["type"].as_str().unwrap_or_default(),
        condition["message"].as_str().unwrap_or_default()
    ))
}

fn conditions(set: Option<&DynamicObject>) -> Vec<Value> {
    set.and_then(|s| s.data["status"]["conditions"].as_array().cloned()).unwrap_or_default()
}

/// Waits until the set's members are exactly there, Ready, at the template's image and
/// the update revision, with their identity and their claims; says what it saw.
async fn served(ns: &TestNs, set: &Value) -> anyhow::Result<String> {
    let name = set["metadata"]["name"].as_str().unwrap_or_default();
    let start = set["spec"]["ordinals"]["start"].as_i64().unwrap_or(0);
    let replicas = set["spec"]["replicas"].as_i64().unwrap_or(1);
    let image = set["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or_default();
    let want: Vec<String> = (start..start + replicas).map(|o| format!("{name}-{o}")).collect();
    let claims: Vec<String> = set["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| want.iter().map(move |p| format!("{}-{p}", t["metadata"]["name"].as_str().unwrap_or_default())))
        .collect();
    wait_until(&format!("{want:?} Ready at {image} with {claims:?}"), TIMEOUT, || async {
        let pods = ns.pods().list(&ListParams::default()).await?.items;
        let live: Vec<&Pod> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        let mut names: Vec<String> = live.iter().map(|p| p.name_any()).collect();
        names.sort();
        anyhow::ensure!(names == want, "pods {names:?}");
        let revision = ns.raw_petsets().get(name).await?.data["status"]["updateRevision"].clone();
        for pod in &live {
            let labels = pod.labels();
            anyhow::ensure!(pod_ready(pod), "{} not Ready", pod.name_any());
            anyhow::ensure!(images(pod) == [image], "{} runs {:?}", pod.name_any(), images(pod));
            anyhow::ensure!(labels.get(POD_NAME) == Some(&pod.name_any()), "{} is labelled {labels:?}", pod.name_any());
            anyhow::ensure!(
                revision.as_str() == labels.get(REVISION).map(String::as_str),
                "{} is labelled {labels:?}, the update revision is {revision}",
                pod.name_any()
            );
        }
        let have = ns.claims().await?;
        anyhow::ensure!(claims.iter().all(|c| have.contains(c)), "claims {have:?}");
        Ok(format!("{} Ready at {image}", names.join(", ")))
    })
    .await
}

fn images(pod: &Pod) -> Vec<&str> {
    pod.spec.iter().flat_map(|s| &s.containers).filter_map(|c| c.image.as_deref()).collect()
}

/// Does what `after` says, and returns a check of what must hold once it is done.
async fn tamper(ns: &TestNs, after: &After) -> anyhow::Result<Option<(Api<DynamicObject>, String, Option<String>)>> {
    match after {
        Delete(kind, name) => {
            let api = dynamic(ns, kind);
            let uid = api.get(name).await?.uid();
            api.delete(name, &DeleteParams::default()).await?;
            Ok(Some((api, name.to_string(), uid)))
        }
        Patch(kind, name, patch) => {
            let api = dynamic(ns, kind);
            // The operator makes it beside the pods, not necessarily before they are Ready.
            wait_until(&format!("{kind} {name} made"), TIMEOUT, || async { Ok(api.get(name).await?) }).await?;
            api.patch(name, &PatchParams::default(), &kube::api::Patch::Merge(patch)).await?;
            // What the operator owns (the peers file) it writes back; what apps own (the
            // Lease's spec) it leaves alone.
            if *kind == "ConfigMap" {
                wait_until(&format!("{kind} {name} written back"), TIMEOUT, || async {
                    let now = api.get(name).await?;
                    anyhow::ensure!(now.data["data"] != patch["data"], "{:?}", now.data["data"]);
                    Ok(())
                })
                .await?;
            }
            Ok(None)
        }
        Leader(leader) => {
            wait_for(&ns.raw_petsets(), "web", &format!("status.leader.pod {leader:?}"), TIMEOUT, |s| {
                s.is_some_and(|s| s.data["status"]["leader"]["pod"].as_str() == *leader)
            })
            .await?;
            Ok(None)
        }
    }
}

/// Waits until the object deleted (with `uid`) is back: another uid, not terminating.
async fn back(api: &Api<DynamicObject>, name: &str, uid: &Option<String>) -> anyhow::Result<()> {
    wait_until(&format!("{name} back"), TIMEOUT, || async {
        let now = api.get_opt(name).await?;
        let back = now.as_ref().is_some_and(|o| o.uid() != *uid && o.metadata.deletion_timestamp.is_none());
        let seen = now.map(|o| (o.uid(), o.metadata.deletion_timestamp, o.metadata.finalizers));
        anyhow::ensure!(back, "not yet: {seen:?}");
        Ok(())
    })
    .await
}

/// Creates `object` (JSON of any namespaced kind) in the namespace.
async fn create(ns: &TestNs, object: Value) -> anyhow::Result<DynamicObject> {
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let object: DynamicObject = serde_json::from_value(object)?;
    Ok(dynamic(ns, &kind).create(&PostParams::default(), &object).await?)
}

fn dynamic(ns: &TestNs, kind: &str) -> Api<DynamicObject> {
    let (group, version) = match kind {
        "Lease" => ("coordination.k8s.io", "v1"),
        _ => ("", "v1"),
    };
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    Api::namespaced_with(ns.client.clone(), &ns.name, &resource)
}

/// Replaces each "uid-of:<name>" with the uid of the object `<name>` created before it.
fn fill_uids(value: &mut Value, uids: &std::collections::BTreeMap<String, String>) {
    match value {
        Value::String(s) => {
            if let Some(uid) = s.strip_prefix("uid-of:").and_then(|n| uids.get(n)) {
                *s = uid.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| fill_uids(v, uids)),
        Value::Object(map) => map.values_mut().for_each(|v| fill_uids(v, uids)),
        _ => {}
    }
}

/// What an `After` did and what held, for the table.
fn describe(after: &After) -> String {
    match after {
        Delete(kind, name) => format!("{kind} {name} deleted, made again"),
        Patch(kind, name, patch) if *kind == "ConfigMap" => {
            format!("{kind} {name} overwritten ({patch}), written back")
        }
        Patch(kind, name, patch) => format!("{kind} {name} written: {patch}"),
        Leader(leader) => format!("leader {}", leader.unwrap_or("none")),
    }
}

fn expected(expect: Expect) -> String {
    match expect {
        Refused(text) => format!("Refused(\"{text}\")"),
        Reported { reason, message_contains } => format!("Reported({reason}: \"{message_contains}\")"),
        Served => "Served".into(),
    }
}

/// A message on one table line.
fn one_line(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}
