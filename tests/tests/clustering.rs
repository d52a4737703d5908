//! What a clustered store's pods get: identity environment, bootstrap or join, the
//! peers file, the governing Service, and both leader policies.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{
    ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PropagationPolicy},
};
use petset_crd::{Clustering, LeaderPolicy, LeaderSpec, PetSet, PetSetOrdinals};
use petset_tests::{
    TIMEOUT, TestNs,
    fixtures::stateless,
    history::{Happened, History},
    in_namespace, pod_ready, wait_for, wait_until,
};
use serde_json::json;

fn clustered(replicas: i32, leader: Option<LeaderPolicy>) -> PetSet {
    let mut set = stateless("web", replicas);
    set.spec.clustering = Some(Clustering {
        manage_service: true,
        leader: leader.map(|policy| LeaderSpec { policy, service: true }),
        cluster_domain: "cluster.local".into(),
    });
    let spec = set.spec.template.spec.as_mut().unwrap();
    spec.init_containers = Some(vec![k8s_openapi::api::core::v1::Container {
        name: "bootstrap".into(),
        image: Some("busybox".into()),
        ..Default::default()
    }]);
    spec.containers[0].ports = Some(vec![k8s_openapi::api::core::v1::ContainerPort {
        container_port: 80,
        name: Some("web".into()),
        ..Default::default()
    }]);
    set
}

/// The PETSET_* variables of each container and init container of a pod.
fn env(pod: &Pod) -> Vec<BTreeMap<String, String>> {
    let spec = pod.spec.as_ref().unwrap();
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| {
            c.env
                .iter()
                .flatten()
                .filter(|e| e.name.starts_with("PETSET_"))
                .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        })
        .collect()
}

/// Waits until the set `web` has recorded its formation and its status is of its
/// latest spec; returns when it was formed.
async fn wait_formed(ns: &TestNs) -> anyhow::Result<Time> {
    let set = wait_for(&ns.petsets(), "web", "formedAt recorded", TIMEOUT, |s| {
        s.and_then(|s| s.status.as_ref()).is_some_and(|st| st.formed_at.is_some())
    })
    .await?
    .unwrap();
    let set = ns.wait_synced("web", set.metadata.generation.unwrap()).await?;
    Ok(set.status.and_then(|s| s.formed_at).unwrap())
}

async fn peers(ns: &TestNs) -> anyhow::Result<String> {
    let cm = ns.api::<ConfigMap>().get_opt("web-peers").await?;
    Ok(cm.and_then(|c| c.data).and_then(|d| d.get("peers").cloned()).unwrap_or_default())
}

async fn wait_peers(ns: &TestNs, want: &str) -> anyhow::Result<()> {
    wait_until(&format!("peers file:\n{want}"), TIMEOUT, || async {
        let have = peers(ns).await?;
        anyhow::ensure!(have == want, "peers file is\n{have}");
        Ok(())
    })
    .await
}

fn line(ns: &TestNs, ordinal: i32, state: &str, role: &str) -> String {
    format!("{ordinal} web-{ordinal}.web.{}.svc.cluster.local {state} {role}\n", ns.name)
}

#[tokio::test]
async fn identity_environment_and_bootstrap_then_join() -> anyhow::Result<()> {
    in_namespace("cluster-env", |ns| async move {
        let _op = ns.start_operator().await;
        let mut set = clustered(2, None);
        set.spec.ordinals = Some(PetSetOrdinals { start: 3 });
        ns.create_petset(&set).await?;
        let pods = ns.wait_ready("web", 3..5).await?;
        for pod in &pods {
            let ordinal = pod.name_any().trim_start_matches("web-").to_string();
            let all = env(pod);
            assert_eq!(all.len(), 2, "an init container and an app container");
            for vars in all {
                assert_eq!(vars["PETSET_NAME"], "web");
                assert_eq!(vars["PETSET_NAMESPACE"], ns.name);
                assert_eq!(vars["PETSET_ORDINAL"], ordinal);
                assert_eq!(vars["PETSET_SERVICE"], "web");
                assert_eq!(vars["PETSET_FQDN"], format!("web-{ordinal}.web.{}.svc.cluster.local", ns.name));
                assert_eq!(vars["PETSET_SEED_FQDN"], format!("web-3.web.{}.svc.cluster.local", ns.name));
                assert_eq!(vars["PETSET_BOOTSTRAP"], "true", "founding members");
                assert_eq!(vars["PETSET_PEERS_FILE"], "/etc/petset/peers");
            }
        }
        wait_formed(&ns).await?;
        ns.patch_spec("web", json!({"replicas": 3})).await?;
        let pods = ns.wait_ready("web", 3..6).await?;
        assert!(env(&pods[2]).iter().all(|v| v["PETSET_BOOTSTRAP"] == "false"), "a scale-up after formation joins");
        assert!(env(&pods[0]).iter().all(|v| v["PETSET_BOOTSTRAP"] == "true"));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn peers_file_follows_scaling_and_health() -> anyhow::Result<()> {
    in_namespace("cluster-peers", |ns| async move {
        let _op = ns.start_operator().await;
        ns.create_petset(&clustered(2, None)).await?;
        ns.wait_ready("web", 0..2).await?;
        wait_peers(&ns, &(line(&ns, 0, "ready", "-") + &line(&ns, 1, "ready", "-"))).await?;
        ns.patch_spec("web", json!({"replicas": 3})).await?;
        ns.wait_ready("web", 0..3).await?;
        wait_peers(&ns, &(line(&ns, 0, "ready", "-") + &line(&ns, 1, "ready", "-") + &line(&ns, 2, "ready", "-")))
            .await?;
        ns.set_ready("web-1", false).await?;
        wait_peers(&ns, &(line(&ns, 0, "ready", "-") + &line(&ns, 1, "notready", "-") + &line(&ns, 2, "ready", "-")))
            .await?;
        ns.set_ready("web-1", true).await?;
        ns.patch_spec("web", json!({"replicas": 1})).await?;
        ns.wait_ready("web", [0]).await?;
        wait_peers(&ns, &line(&ns, 0, "ready", "-")).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_governing_service_is_made_and_someone_elses_left_alone() -> anyhow::Result<()> {
    in_namespace("cluster-service", |ns| async move {
        let _op = ns.start_operator().await;
        ns.create_petset(&clustered(1, None)).await?;
        let svc = wait_for(&ns.api::<Service>(), "web", "created", TIMEOUT, |s| s.is_some()).await?.unwrap();
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector.unwrap()["app"], "web");
        // Drift is corrected.
        let drift = json!({"spec": {"publishNotReadyAddresses": false}});
        ns.api::<Service>().patch("web", &PatchParams::default(), &Patch::Merge(&drift)).await?;
        wait_for(&ns.api::<Service>(), "web", "corrected", TIMEOUT, |s| {
            s.and_then(|s| s.spec.as_ref()).and_then(|s| s.publish_not_ready_addresses) == Some(true)
        })
        .await?;

        // A Service someone else made, with the name another set wants.
        ns.create::<Service>("apiVersion: v1\nkind: Service\nmetadata: {name: theirs}\nspec:\n  ports: [{port: 80}]\n  selector: {app: other}\n").await?;
        let mut other = clustered(1, None);
        other.metadata.name = Some("other".into());
        other.spec.service_name = Some("theirs".into());
        other.spec.selector.match_labels = Some([("app".to_string(), "other".to_string())].into());
        other.spec.template.metadata.as_mut().unwrap().labels = Some([("app".to_string(), "other".to_string())].into());
        ns.create_petset(&other).await?;
        ns.wait_event("other", "ObjectConflict", "Service theirs exists and was not made for this PetSet").await?;
        ns.wait_condition("other", "ObjectConflict", &["Service theirs"]).await?;
        let theirs = ns.api::<Service>().get("theirs").await?;
        assert!(theirs.owner_references().is_empty());
        assert_eq!(theirs.spec.unwrap().selector.unwrap()["app"], "other");
        Ok(())
    })
    .await
}

/// `clustered`, named `name` with a Service of that name, selecting its pods by
/// `matchExpressions` only.
fn named(name: &str, leader: Option<LeaderPolicy>) -> PetSet {
    let mut set = clustered(1, leader);
    set.metadata.name = Some(name.into());
    set.spec.service_name = Some(name.into());
    set.spec.selector =
        serde_json::from_value(json!({"matchExpressions": [{"key": "app", "operator": "In", "values": [name]}]}))
            .unwrap();
    set.spec.template.metadata.as_mut().unwrap().labels = Some([("app".to_string(), name.to_string())].into());
    set
}

#[tokio::test]
async fn cluster_objects_someone_else_made_are_left_alone_until_removed() -> anyhow::Result<()> {
    in_namespace("cluster-theirs", |ns| async move {
        let _op = ns.start_operator().await;
        ns.create::<ConfigMap>("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-peers}\ndata: {peers: mine}\n").await?;
        ns.create::<Service>("apiVersion: v1\nkind: Service\nmetadata: {name: web-leader}\nspec:\n  ports: [{port: 81}]\n  selector: {app: mine}\n").await?;
        let set = ns.create_petset(&clustered(2, Some(LeaderPolicy::OperatorAssigned))).await?;
        ns.wait_condition("web", "ObjectConflict", &["ConfigMap web-peers", "Service web-leader"]).await?;
        ns.wait_event("web-peers", "ObjectConflict", "ConfigMap web-peers exists and was not made for this PetSet")
            .await?;
        ns.wait_event("web-leader", "ObjectConflict", "Service web-leader exists").await?;
        // The members are made all the same, and their syncs leave the objects as they are.
        ns.wait_ready("web", 0..2).await?;
        wait_leader(&ns, Some("web-0")).await?;
        let cm = ns.api::<ConfigMap>().get("web-peers").await?;
        assert_eq!(cm.data.unwrap()["peers"], "mine");
        assert!(cm.metadata.owner_references.is_none() && cm.metadata.annotations.is_none());
        let svc = ns.api::<Service>().get("web-leader").await?;
        assert!(svc.metadata.owner_references.is_none());
        assert_eq!(svc.spec.unwrap().selector.unwrap(), BTreeMap::from([("app".to_string(), "mine".to_string())]));

        // Once they are gone, the set makes its own.
        ns.api::<ConfigMap>().delete("web-peers", &Default::default()).await?;
        ns.api::<Service>().delete("web-leader", &Default::default()).await?;
        let controlled = |meta: &kube::api::ObjectMeta| meta.owner_references.iter().flatten().any(|r| Some(&r.uid) == set.uid().as_ref());
        wait_for(&ns.api::<ConfigMap>(), "web-peers", "the set's own", TIMEOUT, |c| c.is_some_and(|c| controlled(&c.metadata))).await?;
        wait_peers(&ns, &(line(&ns, 0, "ready", "leader") + &line(&ns, 1, "ready", "follower"))).await?;
        wait_for(&ns.api::<Service>(), "web-leader", "the set's own", TIMEOUT, |s| s.is_some_and(|s| controlled(&s.metadata))).await?;
        ns.wait_no_condition("web", "ObjectConflict").await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn two_sets_naming_one_service_do_not_fight_over_it() -> anyhow::Result<()> {
    in_namespace("cluster-shared-service", |ns| async move {
        let _op = ns.start_operator().await;
        let first = ns.create_petset(&clustered(1, None)).await?;
        let owned_by_first = |s: Option<&Service>| {
            s.is_some_and(|s| s.owner_references().iter().any(|r| Some(&r.uid) == first.uid().as_ref()))
        };
        let services = ns.api::<Service>();
        let made = wait_for(&services, "web", "made by the first set", TIMEOUT, owned_by_first).await?.unwrap();

        let mut second = named("second", None);
        second.spec.service_name = Some("web".into());
        ns.create_petset(&second).await?;
        ns.wait_condition("second", "ObjectConflict", &["Service web exists and is controlled by PetSet web"]).await?;
        ns.wait_event("second", "ObjectConflict", "Service web exists and is controlled by PetSet web").await?;
        // The second set syncs on, scaling up, and never writes the Service.
        ns.patch_spec("second", json!({"replicas": 2})).await?;
        ns.wait_ready("second", 0..2).await?;
        let kept = services.get("web").await?;
        assert_eq!(kept.resource_version(), made.resource_version(), "the Service was written: {kept:?}");

        // Deleting the set that does not own it leaves it.
        ns.delete_petset("second").await?;
        let kept = services.get("web").await?;
        assert_eq!((kept.uid(), kept.resource_version()), (made.uid(), made.resource_version()));
        assert!(owned_by_first(Some(&kept)));
        // It is the owning set's, and goes with it.
        ns.delete_petset("web").await?;
        wait_for(&services, "web", "deleted with its set", TIMEOUT, |s| s.is_none()).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn each_leader_service_selects_only_its_own_leader() -> anyhow::Result<()> {
    in_namespace("cluster-two-leaders", |ns| async move {
        let _op = ns.start_operator().await;
        for name in ["a", "b"] {
            let mut set = named(name, Some(LeaderPolicy::OperatorAssigned));
            set.spec.replicas = Some(2);
            ns.create_petset(&set).await?;
        }
        for name in ["a", "b"] {
            ns.wait_ready(name, 0..2).await?;
            wait_for(&ns.petsets(), name, "a leader", TIMEOUT, |s| leader_of(s).is_some_and(|(p, _)| p.is_some()))
                .await?;
        }
        for name in ["a", "b"] {
            for (service, want) in [
                (format!("{name}-leader"), vec![format!("{name}-0")]),
                (name.to_string(), vec![format!("{name}-0"), format!("{name}-1")]),
            ] {
                wait_until(&format!("Service {service} to select {want:?}"), TIMEOUT, || async {
                    let svc = ns.api::<Service>().get_opt(&service).await?.ok_or_else(|| anyhow::anyhow!("absent"))?;
                    let selector = svc.spec.and_then(|s| s.selector).unwrap_or_default();
                    let query = selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
                    let mut selected: Vec<String> = ns
                        .pods()
                        .list(&kube::api::ListParams::default().labels(&query))
                        .await?
                        .items
                        .iter()
                        .map(|p| p.name_any())
                        .collect();
                    selected.sort();
                    anyhow::ensure!(selected == want, "{service} ({query}) selects {selected:?}");
                    Ok(())
                })
                .await?;
            }
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_recreated_set_keeps_its_cluster_formed() -> anyhow::Result<()> {
    in_namespace("cluster-recreated", |ns| async move {
        let _op = ns.start_operator().await;
        ns.create_petset(&clustered(3, None)).await?;
        ns.wait_ready("web", 0..3).await?;
        let formed = wait_formed(&ns).await?;
        wait_for(&ns.api::<ConfigMap>(), "web-peers", "the formation kept beside the members", TIMEOUT, |c| {
            c.is_some_and(|c| c.annotations().contains_key("petset.dev/formed-at"))
        })
        .await?;

        // Deleted leaving its members, which lose one while the set is away.
        ns.petsets()
            .delete("web", &DeleteParams { propagation_policy: Some(PropagationPolicy::Orphan), ..Default::default() })
            .await?;
        wait_for(&ns.petsets(), "web", "deleted", TIMEOUT, |s| s.is_none()).await?;
        ns.pods().delete("web-2", &DeleteParams::default().grace_period(0)).await?;
        wait_for(&ns.pods(), "web-2", "deleted", TIMEOUT, |p| p.is_none()).await?;

        // The same manifest again, with no status.
        ns.create_petset(&clustered(3, None)).await?;
        let pods = ns.wait_ready("web", 0..3).await?;
        assert!(env(&pods[2]).iter().all(|v| v["PETSET_BOOTSTRAP"] == "false"), "web-2 comes back to join");
        assert_eq!(wait_formed(&ns).await?, formed, "formedAt is that of the first formation");
        ns.patch_spec("web", json!({"replicas": 4})).await?;
        let pods = ns.wait_ready("web", 0..4).await?;
        assert!(env(&pods[3]).iter().all(|v| v["PETSET_BOOTSTRAP"] == "false"), "a scale-up joins");
        Ok(())
    })
    .await
}

fn leader_of(set: Option<&PetSet>) -> Option<(Option<String>, i64)> {
    set.and_then(|s| s.status.as_ref()).and_then(|s| s.leader.as_ref()).map(|l| (l.pod.clone(), l.epoch))
}

async fn labelled_leader(ns: &TestNs) -> anyhow::Result<Vec<String>> {
    Ok(ns
        .pods_of("web")
        .await?
        .iter()
        .filter(|p| p.labels().get("petset.dev/role").map(String::as_str) == Some("leader"))
        .map(|p| p.name_any())
        .collect())
}

async fn wait_leader(ns: &TestNs, want: Option<&str>) -> anyhow::Result<i64> {
    let set = wait_for(&ns.petsets(), "web", &format!("leader {want:?}"), TIMEOUT, |s| {
        leader_of(s).is_some_and(|(pod, _)| pod.as_deref() == want)
    })
    .await?;
    wait_until("the leader label to follow", TIMEOUT, || async {
        let labelled = labelled_leader(ns).await?;
        anyhow::ensure!(
            labelled.iter().map(String::as_str).collect::<Vec<_>>() == want.into_iter().collect::<Vec<_>>(),
            "labelled: {labelled:?}"
        );
        Ok(())
    })
    .await?;
    Ok(leader_of(set.as_ref()).unwrap().1)
}

#[tokio::test]
async fn operator_assigned_leader_is_sticky_and_fails_over() -> anyhow::Result<()> {
    in_namespace("leader-assigned", |ns| async move {
        let _op = ns.start_operator().await;
        let history = History::start(ns.pods()).await;
        ns.create_petset(&clustered(3, Some(LeaderPolicy::OperatorAssigned))).await?;
        ns.wait_ready("web", 0..3).await?;
        let epoch = wait_leader(&ns, Some("web-0")).await?;
        let svc = wait_for(&ns.api::<Service>(), "web-leader", "the leader Service", TIMEOUT, |s| s.is_some())
            .await?
            .unwrap();
        assert_eq!(svc.spec.unwrap().selector.unwrap()["petset.dev/role"], "leader");

        // Sticky: a scale-up or a follower going unready changes nothing.
        ns.patch_spec("web", json!({"replicas": 4})).await?;
        ns.wait_ready("web", 0..4).await?;
        ns.set_ready("web-2", false).await?;
        ns.set_ready("web-2", true).await?;
        assert_eq!(wait_leader(&ns, Some("web-0")).await?, epoch);

        // The leader turns unready: the lowest Ready member takes over.
        ns.set_ready("web-0", false).await?;
        let moved = wait_leader(&ns, Some("web-1")).await?;
        assert_eq!(moved, epoch + 1);
        // Back to Ready, web-0 stays a follower: leadership is sticky.
        ns.set_ready("web-0", true).await?;
        assert_eq!(wait_leader(&ns, Some("web-1")).await?, moved);
        assert!(peers(&ns).await?.contains("web-1.web") && peers(&ns).await?.contains("ready leader"));
        assert_eq!(history.max_leaders(), 1, "two pods were labelled leader at once: {:?}", history.events());
        ns.wait_event("web-1", "LeaderChanged", "web-0 -> web-1").await?;
        Ok(())
    })
    .await
}

async fn hold_lease(ns: &TestNs, holder: &str, renewed: Timestamp, seconds: i32) -> anyhow::Result<()> {
    let lease = Lease {
        metadata: Default::default(),
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(renewed)),
            acquire_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(seconds),
            ..Default::default()
        }),
    };
    let body = json!({"spec": lease.spec});
    ns.api::<Lease>().patch("web", &PatchParams::default(), &Patch::Merge(&body)).await?;
    Ok(())
}

#[tokio::test]
async fn app_elected_leader_mirrors_only_a_valid_member_lease() -> anyhow::Result<()> {
    in_namespace("leader-elected", |ns| async move {
        let _op = ns.start_operator().await;
        let history = History::start(ns.pods()).await;
        ns.create_petset(&clustered(3, Some(LeaderPolicy::AppElected))).await?;
        ns.wait_ready("web", 0..3).await?;
        wait_for(&ns.api::<Lease>(), "web", "the election Lease", TIMEOUT, |l| l.is_some()).await?;
        wait_leader(&ns, None).await?;

        // The pods elect web-1 (here the test plays the app).
        let now = Timestamp::now();
        hold_lease(&ns, "web-1", now, 30).await?;
        wait_leader(&ns, Some("web-1")).await?;
        // A holder that is no member is ignored.
        hold_lease(&ns, "intruder", now, 30).await?;
        wait_leader(&ns, None).await?;
        // An expired hold is ignored.
        hold_lease(&ns, "web-2", now - std::time::Duration::from_secs(100), 30).await?;
        wait_leader(&ns, None).await?;
        // A short hold that runs out: the label goes when it does.
        hold_lease(&ns, "web-2", Timestamp::now(), 3).await?;
        wait_leader(&ns, Some("web-2")).await?;
        wait_leader(&ns, None).await?;
        assert!(history.max_leaders() <= 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn rolling_update_replaces_the_leader_last_after_a_switchover() -> anyhow::Result<()> {
    in_namespace("leader-last", |ns| async move {
        let _op = ns.start_operator().await;
        ns.create_petset(&clustered(3, Some(LeaderPolicy::OperatorAssigned))).await?;
        ns.wait_ready("web", 0..3).await?;
        wait_leader(&ns, Some("web-0")).await?;
        // Make web-1 the leader, so ordinal order alone would not replace it last.
        ns.set_ready("web-0", false).await?;
        wait_leader(&ns, Some("web-1")).await?;
        ns.set_ready("web-0", true).await?;

        let history = History::start(ns.pods()).await;
        ns.patch_spec("web", json!({"template": {"spec": {"containers": [{"name": "nginx", "image": "registry.k8s.io/nginx-slim:0.28"}]}}})).await?;
        ns.wait_rolled_out("web", 3).await?;
        assert_eq!(history.deleted(), ["web-2", "web-0", "web-1"], "the leader goes last");
        // Leadership moved to an updated follower before the old leader's pod went.
        let promoted = history.position(&Happened::Role("web-0".into(), "leader".into())).expect("web-0 promoted");
        let replaced = history.position(&Happened::Deleting("web-1".into())).unwrap();
        assert!(promoted < replaced, "{:?}", history.events());
        assert_eq!(history.max_leaders(), 1);
        let pods = ns.pods_of("web").await?;
        assert!(pods.iter().all(pod_ready));
        Ok(())
    })
    .await
}
