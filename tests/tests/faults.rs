//! The fault tier: the operator binary killed with SIGKILL at random moments, and the
//! plane's API server and etcd restarted in the middle of rollouts. After the faults
//! the sets converge, and the API server's own watch history shows that no identity
//! ever had two pods at once, no claim was deleted against the retention policy (the
//! default Retain/Retain: none at all), each claim kept its first uid, and pods below a
//! rolling update's partition kept the old image.
//!
//! Random choices come from a seed: `PETSET_FAULT_SEED` replays a run (every run prints
//! its seed); `PETSET_FAULT_ITERATIONS` sets the number of kills (`hack/test --soak`).
//!
//! Plane restarts disturb anything that talks to the plane, so every test here holds
//! the plane lock (`faults::plane_shared` / `plane_exclusive`): cargo runs the tests of
//! this binary in parallel threads and the test binaries one after another, so while a
//! plane test runs nothing else does.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::{
    ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use petset_crd::PetSet;
use petset_tests::{
    TIMEOUT, TestNs,
    faults::{self, CrashLoop, Rng, plane_exclusive, plane_shared, restart_plane},
    fixtures::web,
    in_namespace,
    timeline::{Timeline, claims_kept, held_below_partition, render, two_at_once},
    wait_until,
};
use serde_json::json;

const IMAGE: &str = "registry.k8s.io/nginx-slim:0.";
const FIRST_TAG: u32 = 27;

/// One set under test and what the test last asked of it.
struct Subject {
    name: &'static str,
    replicas: i32,
    /// A RollingUpdate partition that stays put: ordinals below keep the first image.
    partition: Option<i32>,
}

/// `web` with claims (Retain/Retain), pods that take a moment to start (so kills land
/// mid-rollout), and the given policy and partition.
fn petset(s: &Subject, parallel: bool, start_delay: &str) -> PetSet {
    let mut v = serde_json::to_value(web(s.name, s.replicas)).expect("serializes");
    v["spec"]["template"]["metadata"]["annotations"] = json!({"petset.dev/sim-delay": start_delay});
    if parallel {
        v["spec"]["podManagementPolicy"] = json!("Parallel");
    }
    if let Some(p) = s.partition {
        v["spec"]["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": p}});
    }
    serde_json::from_value(v).expect("a PetSet")
}

fn image(tag: u32) -> String {
    format!("{IMAGE}{tag}")
}

/// A merge patch of the spec, retried while the plane is coming back.
async fn patch(ns: &TestNs, name: &str, spec: serde_json::Value) -> anyhow::Result<()> {
    let body = json!({ "spec": spec });
    wait_until(&format!("patching {name}"), TIMEOUT, || async {
        ns.petsets().patch(name, &PatchParams::default(), &Patch::Merge(&body)).await?;
        Ok(())
    })
    .await
}

async fn set_image(ns: &TestNs, name: &str, image: &str) -> anyhow::Result<()> {
    patch(ns, name, json!({"template": {"spec": {"containers": [{"name": "nginx", "image": image}]}}})).await
}

/// The invariants over the whole recorded history so far.
fn check_history(pods: &Timeline, claims: &Timeline, held: &[(&str, u64)]) -> anyhow::Result<()> {
    let (p, c) = (pods.records(), claims.records());
    let mut violations = two_at_once(&p);
    violations.extend(claims_kept(&c, |_| false));
    for (set, partition) in held {
        violations.extend(held_below_partition(&p, set, *partition, &image(FIRST_TAG)));
    }
    anyhow::ensure!(
        violations.is_empty(),
        "invariants violated:\n  {}\npod history:\n{}claim history:\n{}",
        violations.join("\n  "),
        render(&p),
        render(&c)
    );
    Ok(())
}

/// The uid each claim had when it was first recorded.
fn first_uids(claims: &Timeline) -> std::collections::BTreeMap<String, String> {
    let mut first = std::collections::BTreeMap::new();
    for r in claims.records() {
        first.entry(r.name).or_insert(r.uid);
    }
    first
}

#[tokio::test]
async fn the_operator_killed_at_random_moments_converges_without_harm() -> anyhow::Result<()> {
    let _plane = plane_shared().await;
    let seed = faults::seed();
    let iterations = faults::iterations(30);
    in_namespace("crash-only", |ns| async move {
        let started = Instant::now();
        let pods = Timeline::start(ns.pods()).await;
        let claims = Timeline::start(ns.api::<PersistentVolumeClaim>()).await;
        let mut rng = Rng::new(seed);
        let mut op = CrashLoop::start(&ns.name)?;

        let mut sets = [
            (Subject { name: "ordered", replicas: 3, partition: None }, false),
            (Subject { name: "parallel", replicas: 3, partition: None }, true),
            (Subject { name: "canary", replicas: 4, partition: Some(2) }, false),
        ];
        for (s, parallel) in &sets {
            ns.create_petset(&petset(s, *parallel, "200ms")).await?;
        }
        let held_image = image(FIRST_TAG);
        let expect: Vec<(&str, Option<&str>)> =
            sets.iter().map(|(s, _)| (s.name, s.partition.map(|_| held_image.as_str()))).collect();
        let held: Vec<(&str, u64)> = sets.iter().filter_map(|(s, _)| s.partition.map(|p| (s.name, p as u64))).collect();
        let fail = |what: String, op: &CrashLoop| {
            format!(
                "seed {seed} (PETSET_FAULT_SEED={seed} replays it): {what}; the operator's log ends:\n{}",
                op.log_tail(30)
            )
        };
        faults::wait_converged(&ns, &expect, 2 * TIMEOUT).await.with_context(|| fail("initial rollout".into(), &op))?;

        let mut tag = FIRST_TAG;
        let mut converged_checks = 0;
        for i in 0..iterations {
            // One action (two sometimes, the second while the operator is down), then
            // SIGKILL after a random delay, then a new operator.
            let mut actions = Vec::new();
            let rounds = if rng.chance(30) { 2 } else { 1 };
            let mut delay = Duration::ZERO;
            for round in 0..rounds {
                let (s, _) = &mut sets[rng.below(3) as usize];
                let what = match rng.below(3) {
                    0 => {
                        s.replicas = (s.replicas + rng.between(1, 3) as i32).min(6);
                        patch(&ns, s.name, json!({"replicas": s.replicas})).await?;
                        format!("{} scaled up to {}", s.name, s.replicas)
                    }
                    1 => {
                        s.replicas = (s.replicas - rng.between(1, 3) as i32).max(1);
                        patch(&ns, s.name, json!({"replicas": s.replicas})).await?;
                        format!("{} scaled down to {}", s.name, s.replicas)
                    }
                    _ => {
                        tag += 1;
                        set_image(&ns, s.name, &image(tag)).await?;
                        format!("{} image -> {}", s.name, image(tag))
                    }
                };
                actions.push(what);
                if round == 0 {
                    delay = rng.millis(0, 1500);
                    tokio::time::sleep(delay).await;
                    op.kill().await.map_err(|e| anyhow::anyhow!(fail(format!("iteration {i}: {e:#}"), &op)))?;
                }
            }
            op.restart()?;
            eprintln!("[{i}] {} ; SIGKILL {delay:?} after the first", actions.join(", then "));

            let last = i + 1 == iterations;
            if i % 3 == 2 || last {
                converged_checks += 1;
                faults::wait_converged(&ns, &expect, 2 * TIMEOUT).await.with_context(|| {
                    fail(format!("iteration {i} ({}) did not converge", actions.join(", then ")), &op)
                })?;
            }
            check_history(&pods, &claims, &held).with_context(|| fail(format!("after iteration {i}"), &op))?;
        }
        op.check_alive()?;

        // Every claim ever created is still there, with its first uid.
        let now = ns.claim_uids().await?;
        let first = first_uids(&claims);
        assert_eq!(now, first, "seed {seed}: claims now vs. as first created");
        eprintln!(
            "seed {seed}: {} SIGKILLs over {iterations} iterations, {converged_checks} convergence checks, {} pod and \
             {} claim records, {} claims kept, in {:?}",
            op.kills,
            pods.records().len(),
            claims.records().len(),
            now.len(),
            started.elapsed()
        );
        anyhow::ensure!(op.kills >= iterations, "only {} kills", op.kills);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_rollout_survives_an_api_server_restart_and_an_etcd_outage() -> anyhow::Result<()> {
    let _plane = plane_exclusive().await;
    faults::plane_is_ours()?;
    in_namespace("plane-faults", |ns| async move {
        let started = Instant::now();
        let pods = Timeline::start(ns.pods()).await;
        let claims = Timeline::start(ns.api::<PersistentVolumeClaim>()).await;
        // Debug logs: the evidence if the operator does not recover.
        let mut op = CrashLoop::start_with(&ns.name, &["--log", "info,petset_operator=debug"])?;
        let sets = [
            (Subject { name: "ordered", replicas: 5, partition: None }, false),
            (Subject { name: "parallel", replicas: 4, partition: None }, true),
            (Subject { name: "canary", replicas: 4, partition: Some(2) }, false),
        ];
        for (s, parallel) in &sets {
            // Slow starts: a rollout of the ordered set takes several seconds.
            ns.create_petset(&petset(s, *parallel, "1s")).await?;
        }
        let held_image = image(FIRST_TAG);
        let expect: Vec<(&str, Option<&str>)> =
            sets.iter().map(|(s, _)| (s.name, s.partition.map(|_| held_image.as_str()))).collect();
        let held = [("canary", 2u64)];
        faults::wait_converged(&ns, &expect, 2 * TIMEOUT).await?;

        // A rollout of every set; once the ordered set has replaced a pod, the API
        // server goes away and comes back.
        for (s, _) in &sets {
            set_image(&ns, s.name, &image(FIRST_TAG + 1)).await?;
        }
        let progressed = |tag: u32| {
            let ns = ns.clone();
            async move {
                ns.wait_pods("ordered", &format!("a pod of ordered at {}", image(tag)), |ps| {
                    let new = ps.iter().filter(|p| faults_image(p) == image(tag)).count();
                    if new >= 1 && new < ps.len() { Ok(()) } else { Err(format!("{new} at the new image")) }
                })
                .await
            }
        };
        progressed(FIRST_TAG + 1).await?;
        // The scheduler and the node simulator are restarted after it too: after an API
        // server restart kube-scheduler logged "Scheduler cache is corrupted" and left a
        // pod Pending for good; they are the plane, not what this test is about.
        let api_restart = restart_plane(&["kube-apiserver", "kube-scheduler", "kwok"]).await?;
        op.check_alive().context("the operator must ride out an API server restart")?;

        // Another rollout on top, and etcd stops for 3 s in the middle of it.
        for (s, _) in &sets {
            set_image(&ns, s.name, &image(FIRST_TAG + 2)).await?;
        }
        progressed(FIRST_TAG + 2).await?;
        let etcd_restart = restart_plane(&["--kill", "--down", "3", "etcd"]).await?;
        restart_plane(&["kube-scheduler", "kwok"]).await?;
        op.check_alive().context("the operator must ride out an etcd outage")?;

        if let Err(e) = faults::wait_converged(&ns, &expect, 2 * TIMEOUT).await {
            let metrics = match op.current.as_ref() {
                Some(p) => p.get("/metrics").await.map(|(_, b)| b).unwrap_or_else(|e| format!("({e})")),
                None => String::new(),
            };
            let statuses: Vec<String> = ns
                .petsets()
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .map(|s| format!("{} generation {:?}: {}", s.name_any(), s.metadata.generation, json!(s.status)))
                .collect();
            anyhow::bail!(
                "{e:#}\nafter an API server restart ({api_restart:?}) and etcd down 3 s ({etcd_restart:?}) the \
                 operator (alive) did not converge.\nsets: {}\noperator metrics:\n{}\nthe operator's log ends {}",
                statuses.join("\n  "),
                metrics.lines().filter(|l| l.starts_with("petset_")).collect::<Vec<_>>().join("\n"),
                op.log_tail(60)
            );
        }
        check_history(&pods, &claims, &held)?;
        let now = ns.claim_uids().await?;
        assert_eq!(now, first_uids(&claims), "claims now vs. as first created");
        op.check_alive()?;
        eprintln!(
            "kube-apiserver restart {api_restart:?}, etcd down 3 s and back in {etcd_restart:?}; the history watches \
             survived {} + {} errors and listed {} + {} times; {} pod records; in {:?}",
            pods.errors().len(),
            claims.errors().len(),
            pods.lists(),
            claims.lists(),
            pods.records().len(),
            started.elapsed()
        );
        Ok(())
    })
    .await
}

fn faults_image(p: &k8s_openapi::api::core::v1::Pod) -> String {
    p.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default()
}
