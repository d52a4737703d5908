//! Fault injection for the fault tier (`tests/tests/faults.rs`): a seeded random
//! source, the operator binary killed with SIGKILL and started again, the local plane's
//! components restarted through `hack/cluster restart`, the lock that keeps plane
//! faults away from the other tests of the same binary, and the convergence check.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::{ResourceExt, api::ListParams};
use petset_crd::PetSet;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::{TestNs, fixtures::summary, kubeconfig_path, pod_ready, process::OperatorProcess, wait_until};

/// A small deterministic generator (SplitMix64): the same seed replays the same faults.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }

    /// Uniform in [lo, hi].
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// The seed: `PETSET_FAULT_SEED` (decimal or 0x-hex), else a fresh one. Printed
/// either way, so a failing run can be replayed.
pub fn seed() -> u64 {
    let seed = match std::env::var("PETSET_FAULT_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("PETSET_FAULT_SEED={s} is not a number"))
        }
        Err(_) => {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::time::SystemTime::now())
        }
    };
    eprintln!("PETSET_FAULT_SEED={seed} (set it to replay this run)");
    seed
}

/// `PETSET_FAULT_ITERATIONS`, else `default` (what CI runs; `hack/test --soak` sets more).
pub fn iterations(default: usize) -> usize {
    let n = std::env::var("PETSET_FAULT_ITERATIONS")
        .ok()
        .map(|s| s.trim().parse().unwrap_or_else(|_| panic!("PETSET_FAULT_ITERATIONS={s} is not a number")))
        .unwrap_or(default);
    eprintln!("PETSET_FAULT_ITERATIONS={n}");
    n
}

/// Plane faults (an API server or etcd restart) disturb every test that talks to the
/// plane meanwhile. Tests of one binary run in parallel threads (binaries run one after
/// another), so every test in the fault binary holds this lock: shared for tests that
/// only need the plane up, exclusive for a test that restarts it.
static PLANE: RwLock<()> = RwLock::const_new(());

pub async fn plane_shared() -> RwLockReadGuard<'static, ()> {
    PLANE.read().await
}

pub async fn plane_exclusive() -> RwLockWriteGuard<'static, ()> {
    PLANE.write().await
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The tests talk to this checkout's plane (the one `hack/cluster restart` restarts):
/// the kubeconfig in use names the same server as `.cluster/kubeconfig`, and `up`
/// recorded how it started the API server.
pub fn plane_is_ours() -> anyhow::Result<()> {
    let server = |path: &PathBuf| -> anyhow::Result<String> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        text.lines()
            .find_map(|l| l.trim().strip_prefix("server:").map(|s| s.trim().to_string()))
            .with_context(|| format!("no server in {}", path.display()))
    };
    let ours = repo().join(".cluster/kubeconfig");
    let used = kubeconfig_path();
    let (a, b) = (server(&ours)?, server(&used)?);
    ensure!(
        a == b,
        "the tests use {} ({b}), not this checkout's plane {} ({a}): a plane fault here would restart the wrong \
         plane; run with this checkout's `hack/cluster up` (hack/test does)",
        used.display(),
        ours.display()
    );
    ensure!(
        repo().join(".cluster/pids/kube-apiserver.args").exists(),
        "this checkout's plane was started before `hack/cluster restart` existed: run `hack/cluster down; hack/cluster up`"
    );
    Ok(())
}

/// `hack/cluster restart <args>`: returns once the plane answers /readyz again.
pub async fn restart_plane(args: &[&str]) -> anyhow::Result<Duration> {
    plane_is_ours()?;
    let started = std::time::Instant::now();
    let out = tokio::process::Command::new(repo().join("hack/cluster"))
        .arg("restart")
        .args(args)
        .output()
        .await
        .context("running hack/cluster restart")?;
    ensure!(
        out.status.success(),
        "hack/cluster restart {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(started.elapsed())
}

/// The operator binary for one namespace, killed with SIGKILL and started again at will.
pub struct CrashLoop {
    args: Vec<String>,
    pub current: Option<OperatorProcess>,
    /// Logs of every run so far, oldest first.
    pub logs: Vec<PathBuf>,
    pub kills: usize,
}

impl CrashLoop {
    pub fn start(ns: &str) -> anyhow::Result<CrashLoop> {
        Self::start_with(ns, &[])
    }

    /// With more arguments for `petset-operator run` (e.g. `--log debug`).
    pub fn start_with(ns: &str, extra: &[&str]) -> anyhow::Result<CrashLoop> {
        let mut args = vec!["--namespaces".to_string(), ns.to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut lp = CrashLoop { args, current: None, logs: vec![], kills: 0 };
        lp.restart()?;
        Ok(lp)
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        ensure!(self.current.is_none(), "the operator is already running");
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let op = OperatorProcess::spawn(&args, &[], None)?;
        self.logs.push(op.log.clone());
        self.current = Some(op);
        Ok(())
    }

    /// Fails if the operator exited on its own (a crash nobody injected).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(op) = self.current.as_mut()
            && let Some(status) = op.child.try_wait()?
        {
            bail!(
                "the operator exited by itself ({status}) after {} injected kills; the end of its log {}:\n{}",
                self.kills,
                op.log.display(),
                tail(&op.log(), 40)
            );
        }
        Ok(())
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.check_alive()?;
        let mut op = self.current.take().context("the operator is not running")?;
        op.child.kill().await.context("SIGKILL")?;
        self.kills += 1;
        Ok(())
    }

    /// The end of the log of the latest run that wrote one (the one just killed, when
    /// its successor has not logged yet), with its path.
    pub fn log_tail(&self, lines: usize) -> String {
        for l in self.logs.iter().rev() {
            let text = std::fs::read_to_string(l).unwrap_or_default();
            if !text.trim().is_empty() {
                return format!("({})\n{}", l.display(), tail(&text, lines));
            }
        }
        String::new()
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a converged set looks like, read from its live spec: exactly the in-range
/// ordinals, none terminating, all Running and Ready; each runs the spec's image,
/// except ordinals below a rolling update's partition, which run `held_image` (the
/// image before the partitioned rollout); the status has seen the latest generation;
/// every in-range ordinal has its claims.
pub async fn converged(ns: &TestNs, name: &str, held_image: Option<&str>) -> anyhow::Result<()> {
    let set: PetSet = ns.petsets().get(name).await?;
    let replicas = set.spec.replicas.unwrap_or(1) as u64;
    let image = set.spec.template.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone());
    let image = image.context("the template has an image")?;
    let partition = set
        .spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0) as u64;
    let generation = set.metadata.generation;
    let observed = set.status.as_ref().and_then(|s| s.observed_generation);
    ensure!(observed == generation, "{name}: observedGeneration {observed:?}, generation {generation:?}");
    let pods = ns.pods_of(name).await?;
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    let want: Vec<String> = (0..replicas).map(|o| format!("{name}-{o}")).collect();
    ensure!(names == want, "{name}: pods {names:?}, want {want:?}; {}", summary(&pods));
    for (o, pod) in pods.iter().enumerate() {
        ensure!(pod.metadata.deletion_timestamp.is_none(), "{}: terminating", pod.name_any());
        ensure!(pod_ready(pod), "{}: not Ready; {}", pod.name_any(), summary(&pods));
        let has = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.as_deref()).unwrap_or("");
        let expected = match held_image {
            Some(old) if (o as u64) < partition => old,
            _ => image.as_str(),
        };
        ensure!(has == expected, "{}: image {has}, want {expected} (partition {partition})", pod.name_any());
    }
    let claims: Vec<String> = ns
        .api::<PersistentVolumeClaim>()
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    for t in &set.spec.volume_claim_templates {
        for o in 0..replicas {
            let claim = format!("{}-{name}-{o}", t.name_any());
            ensure!(claims.contains(&claim), "{name}: claim {claim} missing; claims {claims:?}");
        }
    }
    Ok(())
}

/// Waits until [`converged`] holds for every set (name, image held below the partition).
pub async fn wait_converged(ns: &TestNs, sets: &[(&str, Option<&str>)], timeout: Duration) -> anyhow::Result<()> {
    wait_until("every set converged", timeout, || async {
        for (name, held) in sets {
            converged(ns, name, *held).await?;
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_replays_the_same_faults() {
        let a: Vec<u64> = (0..5).scan(Rng::new(42), |r, _| Some(r.below(1000))).collect();
        let b: Vec<u64> = (0..5).scan(Rng::new(42), |r, _| Some(r.below(1000))).collect();
        let c: Vec<u64> = (0..5).scan(Rng::new(43), |r, _| Some(r.below(1000))).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = Rng::new(7);
        assert!((0..1000).map(|_| r.between(2, 4)).all(|v| (2..=4).contains(&v)));
    }
}
