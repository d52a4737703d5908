//! The operator binary as users run it: the admin server, readiness, metrics, and
//! leader election with failover and its write fence.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::ListParams;
use petset_crd::PodManagementPolicy;
use petset_tests::{
    TIMEOUT, audit, chart,
    fixtures::web,
    history::History,
    in_namespace,
    process::{OperatorProcess, kubeconfig_as, kubeconfig_for},
    run_tool, wait_for, wait_until,
};

#[tokio::test]
async fn metrics_report_the_work_done() -> anyhow::Result<()> {
    in_namespace("metrics", |ns| async move {
        let op = OperatorProcess::spawn(&["--namespaces", &ns.name], &[], None)?;
        ns.create_petset(&web("web", 2)).await?;
        ns.wait_ready("web", 0..2).await?;
        let body = wait_until("metrics with the created pods", TIMEOUT, || async {
            let (code, body) = op.get("/metrics").await?;
            anyhow::ensure!(code == 200, "status {code}");
            anyhow::ensure!(body.contains("petset_pods_created_total 2"), "{body}");
            Ok(body)
        })
        .await?;
        let value = |name: &str| -> f64 {
            body.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{body}"))
        };
        assert!(value("petset_reconciles_total") >= 2.0);
        assert_eq!(value("petset_claims_created_total"), 2.0);
        assert_eq!(value("petset_managed_petsets"), 1.0);
        assert_eq!(value("petset_leader"), 1.0);
        assert_eq!(value(r#"petset_api_write_requests_total{verb="create",resource="pods"}"#), 2.0);
        assert!(value(r#"petset_api_write_requests_total{verb="patch",resource="petsets/status"}"#) >= 1.0);
        assert!(value("petset_reconcile_duration_seconds_count") >= 2.0);
        assert!(body.contains("# TYPE petset_reconcile_duration_seconds histogram"));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn readyz_waits_until_the_caches_are_synced() -> anyhow::Result<()> {
    in_namespace("readyz", |ns| async move {
        // A service account with no permissions yet: the watches cannot list.
        let release = format!("ready-{}", ns.name);
        let user = format!("system:serviceaccount:{}:{release}-petset-operator", ns.name);
        let op = OperatorProcess::spawn(&["--namespaces", &ns.name], &[], Some(&kubeconfig_as(&user)?))?;
        wait_until("livez answers", TIMEOUT, || async {
            let (code, _) = op.get("/livez").await?;
            anyhow::ensure!(code == 200, "livez {code}");
            Ok(())
        })
        .await?;
        let (code, body) = op.get("/readyz").await?;
        assert_eq!((code, body.as_str()), (503, "caches not synced"));

        // The chart's RBAC for that namespace: the caches sync, the operator is ready.
        let rendered = run_tool(
            "helm",
            &[
                "template",
                &release,
                &chart(),
                "-n",
                &ns.name,
                "--kube-version",
                "1.36.3",
                "--set",
                "crds.install=false",
                "--set",
                &format!("watchNamespaces={{{}}}", ns.name),
                "--show-only",
                "templates/rbac.yaml",
            ],
            None,
        )
        .await?;
        run_tool("kubectl", &["apply", "-f", "-"], Some(&rendered)).await?;
        wait_until("readyz turns 200", TIMEOUT, || async {
            let (code, _) = op.get("/readyz").await?;
            anyhow::ensure!(code == 200, "readyz {code}");
            Ok(())
        })
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_dies_mid_scale_up() -> anyhow::Result<()> {
    in_namespace("failover", |ns| async move {
        let args = ["--namespaces", &ns.name, "--leader-elect", "--lease-namespace", &ns.name, "--lease-duration", "3"];
        let mut ops = BTreeMap::new();
        for name in ["op-a", "op-b"] {
            ops.insert(name.to_string(), OperatorProcess::spawn(&args, &[("POD_NAME", name)], None)?);
        }
        let leases = ns.api::<Lease>();
        let leader = |l: Option<&Lease>| l.and_then(|l| l.spec.as_ref()).and_then(|s| s.holder_identity.clone());
        let first = wait_for(&leases, "petset-operator", "a leader", TIMEOUT, |l| leader(l).is_some()).await?;
        let first = leader(first.as_ref()).unwrap();

        // Each pod takes a moment to start, so the scale-up is still going when the
        // leader dies.
        let mut set = web("web", 10);
        set.spec.template.metadata.get_or_insert_default().annotations =
            Some([("petset.dev/sim-delay".to_string(), "300ms".to_string())].into());
        let history = History::start(ns.pods()).await;
        ns.create_petset(&set).await?;
        ns.wait_pods("web", "web-3 created", |pods| {
            if pods.len() >= 4 { Ok(()) } else { Err(format!("{} pods", pods.len())) }
        })
        .await?;
        let before = ns.claim_uids().await?;
        let mut dead = ops.remove(&first).unwrap();
        dead.child.kill().await?;
        assert!(before.len() < 10, "the scale-up finished before the leader died: {before:?}");

        let second =
            wait_for(&leases, "petset-operator", "another leader", TIMEOUT, |l| leader(l).is_some_and(|h| h != first))
                .await?;
        assert_ne!(leader(second.as_ref()), Some(first));
        ns.wait_ready("web", 0..10).await?;

        let created = history.created();
        let expected: Vec<String> = (0..10).map(|i| format!("web-{i}")).collect();
        assert_eq!(created, expected, "each pod created exactly once, in order");
        let after = ns.claim_uids().await?;
        assert_eq!(after.len(), 10);
        for (name, uid) in &before {
            assert_eq!(after.get(name), Some(uid), "claim {name} was lost or replaced");
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_frozen_leader_writes_nothing_once_a_standby_has_taken_its_lease() -> anyhow::Result<()> {
    in_namespace("fence", |ns| async move {
        audit::writes_in(&ns.name)?;
        // A small request budget: the leader has writes waiting in line when it is
        // frozen, and would send them when thawed.
        let args = [
            "--namespaces",
            &ns.name,
            "--leader-elect",
            "--lease-namespace",
            &ns.name,
            "--lease-duration",
            "4",
            "--api-qps",
            "10",
            "--api-burst",
            "2",
        ];
        let mut ops = BTreeMap::new();
        for name in ["op-a", "op-b"] {
            // Users of their own, so the audit log tells the two processes apart.
            let user = format!("{}-{name}", ns.name);
            let op = OperatorProcess::spawn(&args, &[("POD_NAME", name)], Some(&kubeconfig_for(&user)?))?;
            ops.insert(name.to_string(), (user, op));
        }
        let leases = ns.api::<Lease>();
        let leader = |l: Option<&Lease>| l.and_then(|l| l.spec.as_ref()).and_then(|s| s.holder_identity.clone());
        let first = wait_for(&leases, "petset-operator", "a leader", TIMEOUT, |l| leader(l).is_some()).await?;
        let first = leader(first.as_ref()).unwrap();
        let (old_user, mut old) = ops.remove(&first).unwrap();
        let (new_name, (new_user, _standby)) = ops.into_iter().next().unwrap();

        let replicas = 30;
        let mut set = web("web", replicas);
        set.spec.pod_management_policy = Some(PodManagementPolicy::Parallel);
        let history = History::start(ns.pods()).await;
        ns.create_petset(&set).await?;
        ns.wait_pods("web", "the scale-up under way", |pods| {
            if pods.len() >= 3 { Ok(()) } else { Err(format!("{} pods", pods.len())) }
        })
        .await?;
        old.signal("STOP")?;
        let frozen_with = ns.pods().list(&ListParams::default()).await?.items.len();
        // The freeze lasts until the standby leads: it holds the Lease and writes.
        let result = async {
            wait_for(&leases, "petset-operator", "the standby's", TIMEOUT, |l| leader(l).as_ref() == Some(&new_name))
                .await?;
            wait_until("the new leader creating pods", TIMEOUT, || async {
                let writes = audit::writes_in(&ns.name)?;
                let created = writes
                    .iter()
                    .any(|w| w.user.username == new_user && w.verb == "create" && w.object_ref.resource == "pods");
                anyhow::ensure!(created, "no pod created by {new_user} yet");
                Ok(())
            })
            .await
        }
        .await;
        old.signal("CONT")?;
        result?;
        assert!(frozen_with < replicas as usize, "the scale-up finished before the leader froze");

        let status = tokio::time::timeout(TIMEOUT, old.child.wait()).await??;
        assert!(!status.success(), "the old leader exited with {status}");
        ns.wait_ready("web", 0..replicas).await?;

        let writes = audit::writes_in(&ns.name)?;
        let takeover = writes
            .iter()
            .find(|w| w.user.username == new_user && w.object_ref.resource == "leases" && w.succeeded())
            .expect("the new leader's first Lease write");
        let old_writes: Vec<_> = writes.iter().filter(|w| w.user.username == old_user).collect();
        let late: Vec<String> = old_writes
            .iter()
            .filter(|w| w.request_received_timestamp >= takeover.request_received_timestamp)
            .map(|w| w.to_string())
            .collect();
        eprintln!(
            "the takeover: {takeover}\n{} writes by the old leader, the last: {}",
            old_writes.len(),
            old_writes.last().map(|w| w.to_string()).unwrap_or_default()
        );
        assert!(late.is_empty(), "the old leader wrote after the takeover:\n{}", late.join("\n"));
        assert!(old.log().contains("lost the leader Lease"), "{}", old.log());

        let mut created = history.created();
        created.sort_by_key(|name| name.rsplit('-').next().and_then(|o| o.parse::<i32>().ok()));
        let expected: Vec<String> = (0..replicas).map(|i| format!("web-{i}")).collect();
        assert_eq!(created, expected, "each pod created exactly once");
        Ok(())
    })
    .await
}
