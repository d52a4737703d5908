//! The API server's audit log (`hack/cluster up --audit`, hack/audit-policy.yaml): one
//! line per write request with who sent it and when the server received it, so a test
//! can prove what a process did not write, which no watch can show.

use std::path::PathBuf;

use anyhow::Context as _;
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use crate::kubeconfig_path;

/// One write request, as logged once its response was sent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Write {
    pub verb: String,
    pub user: User,
    #[serde(default)]
    pub object_ref: ObjectRef,
    pub request_received_timestamp: Timestamp,
    pub response_status: Option<ResponseStatus>,
}

#[derive(Debug, Deserialize)]
pub struct User {
    pub username: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ObjectRef {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct ResponseStatus {
    pub code: u16,
}

impl Write {
    pub fn succeeded(&self) -> bool {
        self.response_status.as_ref().is_some_and(|s| s.code < 300)
    }
}

impl std::fmt::Display for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = self.response_status.as_ref().map_or(0, |s| s.code);
        let ObjectRef { resource, name, .. } = &self.object_ref;
        write!(f, "{} {} {} {resource}/{name} {code}", self.request_received_timestamp, self.user.username, self.verb)
    }
}

/// The plane's audit log: next to its kubeconfig, in `.cluster/`.
pub fn path() -> PathBuf {
    kubeconfig_path().with_file_name("audit.log")
}

/// Every write request logged so far in `namespace`, in the order logged.
pub fn writes_in(namespace: &str) -> anyhow::Result<Vec<Write>> {
    let path = path();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (start the plane with `hack/cluster up --audit`)", path.display()))?;
    let mut writes = Vec::new();
    for line in text.lines().filter(|l| l.contains(namespace)) {
        let write: Write = serde_json::from_str(line).with_context(|| format!("an audit line: {line}"))?;
        if write.object_ref.namespace == namespace {
            writes.push(write);
        }
    }
    Ok(writes)
}
