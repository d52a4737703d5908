//! The two controllers under test, each its own process with its own identity (so the
//! audit log tells their requests apart), started and stopped by the benchmark, and
//! what /proc says about their CPU and memory.

use std::{
    fmt,
    path::{Path, PathBuf},
    process::Stdio,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde::Serialize;
use tokio::process::{Child, Command};

use crate::apiserver::sample;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    /// kube-controller-manager running only its StatefulSet controller.
    Upstream,
    Petset,
}

impl Controller {
    pub fn name(self) -> &'static str {
        match self {
            Controller::Upstream => "upstream",
            Controller::Petset => "petset",
        }
    }

    /// The user its client certificate names (`hack/cluster kubeconfig`).
    pub fn user(self) -> String {
        format!("bench-{}", self.name())
    }
}

impl FromStr for Controller {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "upstream" => Ok(Controller::Upstream),
            "petset" => Ok(Controller::Petset),
            _ => Err(format!("unknown controller {s:?}: upstream or petset")),
        }
    }
}

/// A client-side API request budget: sustained requests per second and burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub qps: u32,
    pub burst: u32,
}

impl FromStr for Budget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (qps, burst) = crate::positive_pair(s, '/', "QPS/BURST, e.g. 20/30")?;
        Ok(Budget { qps, burst })
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.qps, self.burst)
    }
}

/// Where the controllers' binaries and identities are.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub kube_controller_manager: PathBuf,
    pub petset_operator: PathBuf,
    /// The plane's state directory (`.cluster`): kubeconfig-bench-<controller> files.
    pub plane: PathBuf,
    pub logs: PathBuf,
}

/// A controller process, killed when dropped.
pub struct Running {
    pub controller: Controller,
    child: Child,
    pid: u32,
    metrics_url: String,
    peak_rss: Arc<AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

/// CPU time and memory of a process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
}

impl Running {
    pub async fn start(controller: Controller, budget: Budget, bins: &Binaries) -> anyhow::Result<Self> {
        let kubeconfig = bins.plane.join(format!("kubeconfig-{}", controller.user()));
        anyhow::ensure!(
            kubeconfig.exists(),
            "{} is missing (hack/cluster kubeconfig {})",
            kubeconfig.display(),
            controller.user()
        );
        let port = free_port()?;
        let mut command = match controller {
            Controller::Upstream => {
                let mut c = Command::new(&bins.kube_controller_manager);
                c.arg("--kubeconfig").arg(&kubeconfig);
                c.arg("--authentication-kubeconfig").arg(&kubeconfig);
                c.arg("--authorization-kubeconfig").arg(&kubeconfig);
                c.args(["--controllers", "statefulset", "--leader-elect=false", "--bind-address", "127.0.0.1"]);
                c.args(["--authorization-always-allow-paths", "/healthz,/readyz,/livez,/metrics"]);
                c.arg(format!("--secure-port={port}"));
                c.arg(format!("--kube-api-qps={}", budget.qps));
                c.arg(format!("--kube-api-burst={}", budget.burst));
                c
            }
            Controller::Petset => {
                let mut c = Command::new(&bins.petset_operator);
                c.arg("run").arg(format!("--admin-address=127.0.0.1:{port}"));
                c.arg(format!("--api-qps={}", budget.qps));
                c.arg(format!("--api-burst={}", budget.burst));
                c.env("KUBECONFIG", &kubeconfig).env("PETSET_LOG", "warn");
                c
            }
        };
        std::fs::create_dir_all(&bins.logs)?;
        let log_path = bins.logs.join(format!("{}-{}.log", controller.name(), budget.qps));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let child = command
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the {} controller", controller.name()))?;
        let pid = child.id().context("the controller exited at once")?;
        let metrics_url = match controller {
            Controller::Upstream => format!("https://127.0.0.1:{port}/metrics"),
            Controller::Petset => format!("http://127.0.0.1:{port}/metrics"),
        };
        let peak_rss = Arc::new(AtomicU64::new(0));
        let sampler = tokio::spawn(sample_rss(pid, peak_rss.clone()));
        let mut running = Running { controller, child, pid, metrics_url, peak_rss, sampler };
        running.wait_serving(&log_path).await?;
        Ok(running)
    }

    async fn wait_serving(&mut self, log: &Path) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if let Some(status) = self.child.try_wait()? {
                bail!("the {} controller exited ({status}); log: {}", self.controller.name(), log.display());
            }
            if self.metrics().await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the {} controller serves no metrics after 60s; log: {}", self.controller.name(), log.display());
            }
        }
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        let out = Command::new("curl").args(["-fsSk", "--max-time", "5", &self.metrics_url]).output().await?;
        anyhow::ensure!(out.status.success(), "GET {}: {}", self.metrics_url, String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Whether the controller has synced `sets` sets since it started and has nothing
    /// queued or running: what "caught up after a restart" means for each.
    pub async fn caught_up(&self, sets: usize) -> anyhow::Result<bool> {
        let m = self.metrics().await?;
        let value = |series: &str| sample(&m, series).unwrap_or(0.0);
        Ok(match self.controller {
            Controller::Upstream => {
                value("workqueue_work_duration_seconds_count{name=\"statefulset\"}") >= sets as f64
                    && value("workqueue_depth{name=\"statefulset\"}") == 0.0
                    && value("workqueue_unfinished_work_seconds{name=\"statefulset\"}") == 0.0
            }
            Controller::Petset => {
                value("petset_reconciles_total") >= sets as f64 && value("petset_reconciles_in_flight") == 0.0
            }
        })
    }

    pub fn usage(&self) -> anyhow::Result<Usage> {
        Ok(Usage { cpu_seconds: cpu_seconds(self.pid)?, peak_rss_bytes: self.peak_rss.load(Ordering::Relaxed) })
    }

    /// Starts a new peak-memory measurement.
    pub fn reset_peak(&self) {
        self.peak_rss.store(rss_bytes(self.pid).unwrap_or(0), Ordering::Relaxed);
    }

    /// Kills the process (as a crash or a node loss would) and waits for it to end.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.sampler.abort();
        self.child.kill().await?;
        Ok(())
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Resident memory, sampled every 50 ms: the peak between samples can be missed, the
/// kernel's own high-water mark (VmHWM) is whole-life only.
async fn sample_rss(pid: u32, peak: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        match rss_bytes(pid) {
            Ok(rss) => {
                peak.fetch_max(rss, Ordering::Relaxed);
            }
            Err(_) => return,
        }
    }
}

fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .context("no VmRSS")?;
    Ok(kib * 1024)
}

fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name: state is the first, utime the 12th.
    let fields: Vec<&str> = stat.rsplit_once(')').context("malformed stat")?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).context("short stat")?.iter().map(|f| f.parse::<f64>().unwrap_or(0.0)).sum();
    Ok(ticks / clock_ticks())
}

/// USER_HZ, the unit of /proc CPU times.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_budgets() {
        assert_eq!("20/30".parse::<Budget>(), Ok(Budget { qps: 20, burst: 30 }));
        assert!("20".parse::<Budget>().is_err());
        assert!("0/30".parse::<Budget>().is_err());
    }

    #[test]
    fn reads_its_own_usage() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_seconds(me).unwrap() >= 0.0);
    }
}
