//! The operator as its own process (the binary users run), for what only a process
//! shows: leader election and failover, the admin server, its permissions.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::Context as _;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
};

use crate::kubeconfig_path;

/// The operator binary `hack/test` builds (cargo build --workspace).
pub fn operator_binary() -> PathBuf {
    workspace_binary("petset-operator")
}

/// A binary of the workspace, as `cargo build --workspace` leaves it.
pub fn workspace_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug").join(name)
}

/// Runs the kubectl plugin (`kubectl-petset -n <ns> args...`) as a user would.
pub async fn kubectl_petset(ns: &crate::TestNs, args: &[&str]) -> anyhow::Result<String> {
    let binary = workspace_binary("kubectl-petset");
    anyhow::ensure!(binary.exists(), "{} is missing: run `cargo build -p petset-plugin`", binary.display());
    let mut all = vec!["-n", ns.name.as_str()];
    all.extend_from_slice(args);
    crate::run_tool(binary.to_str().context("a UTF-8 path")?, &all, None).await
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A running `petset-operator run`, killed when dropped.
pub struct OperatorProcess {
    pub child: Child,
    pub admin_port: u16,
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts `petset-operator run --admin-address 127.0.0.1:<free port> <args>`.
    pub fn spawn(args: &[&str], env: &[(&str, &str)], kubeconfig: Option<&PathBuf>) -> anyhow::Result<Self> {
        let binary = operator_binary();
        anyhow::ensure!(binary.exists(), "{} is missing: run `cargo build -p petset-operator`", binary.display());
        let admin_port = free_port();
        let log = std::env::temp_dir().join(format!("petset-operator-{admin_port}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .arg("run")
            .arg("--admin-address")
            .arg(format!("127.0.0.1:{admin_port}"))
            .args(args)
            .envs(env.iter().copied())
            .env("KUBECONFIG", kubeconfig.cloned().unwrap_or_else(kubeconfig_path))
            .env("PETSET_LOG", "info")
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .context("starting petset-operator")?;
        Ok(OperatorProcess { child, admin_port, log })
    }

    /// GET on the admin server: (status code, body).
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        http_get(self.admin_port, path).await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`STOP`, `CONT`...) with kill(1): SIGSTOP freezes the process
    /// whole, as a long pause or a partition freezes a leader, without killing it.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.child.id().context("the operator has exited")?;
        let status = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid}: {status}");
        Ok(())
    }
}

/// A kubeconfig of the plane's for `user`, a cluster-admin under a name of its own
/// (`hack/cluster kubeconfig`), so the audit log tells its writes apart.
pub fn kubeconfig_for(user: &str) -> anyhow::Result<PathBuf> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hack/cluster");
    let out = std::process::Command::new(&script).args(["kubeconfig", user]).output()?;
    anyhow::ensure!(out.status.success(), "hack/cluster kubeconfig {user}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// A plain HTTP/1.0 GET on loopback.
pub async fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(("127.0.0.1", port))).await??;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await??;
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("no status line")?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

/// A copy of the admin kubeconfig that acts as `user` (impersonation), to run with a
/// service account's permissions.
pub fn kubeconfig_as(user: &str) -> anyhow::Result<PathBuf> {
    let admin = std::fs::read_to_string(kubeconfig_path())?;
    let mut doc: serde_json::Value = serde_saphyr::from_str(&admin)?;
    for u in doc["users"].as_array_mut().context("kubeconfig users")? {
        u["user"]["as"] = serde_json::json!(user);
    }
    let path = std::env::temp_dir().join(format!("kubeconfig-as-{}-{}", user.replace(':', "_"), free_port()));
    std::fs::write(&path, serde_json::to_string(&doc)?)?;
    Ok(path)
}
