//! What the API server itself says about a run: the write requests of each client
//! (from its audit log, `hack/cluster up --audit`) and its request latency (from its
//! own `apiserver_request_duration_seconds` histogram).

use std::{
    collections::{BTreeMap, HashMap},
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use kube::Client;
use serde::Deserialize;

use crate::stats::Histogram;

/// A position in the audit log: the writes counted are those logged after it.
#[derive(Clone, Copy, Debug)]
pub struct AuditMark(u64);

pub struct AuditLog {
    path: PathBuf,
}

#[derive(Deserialize)]
struct Event {
    user: User,
    verb: String,
    #[serde(rename = "objectRef")]
    object: Option<ObjectRef>,
}

#[derive(Deserialize)]
struct User {
    username: String,
}

#[derive(Deserialize)]
struct ObjectRef {
    resource: Option<String>,
    subresource: Option<String>,
}

impl AuditLog {
    pub fn new(path: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            path.exists(),
            "{} is missing: the plane must run with `hack/cluster up --audit`",
            path.display()
        );
        Ok(AuditLog { path: path.to_owned() })
    }

    pub fn mark(&self) -> anyhow::Result<AuditMark> {
        Ok(AuditMark(std::fs::metadata(&self.path)?.len()))
    }

    /// The write requests `user` sent since `mark`, by "verb resource[/subresource]".
    pub fn writes_since(&self, mark: AuditMark, user: &str) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut file = std::fs::File::open(&self.path)?;
        file.seek(SeekFrom::Start(mark.0))?;
        let mut text = String::new();
        file.read_to_string(&mut text).with_context(|| format!("reading {}", self.path.display()))?;
        Ok(count_writes(&text, user))
    }
}

fn count_writes(log: &str, user: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    // A line still being written has no newline yet; the next read counts it.
    let complete = log.rfind('\n').map_or("", |end| &log[..end]);
    for event in complete.lines().filter_map(|line| serde_json::from_str::<Event>(line).ok()) {
        if event.user.username != user {
            continue;
        }
        let object = event.object.unwrap_or(ObjectRef { resource: None, subresource: None });
        let mut key = format!("{} {}", event.verb, object.resource.unwrap_or_default());
        if let Some(sub) = object.subresource {
            key = format!("{key}/{sub}");
        }
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// The API server's request latency histogram over the calls its SLO covers: every
/// verb but WATCH and CONNECT, which are long-running.
pub async fn request_latency(client: &Client) -> anyhow::Result<Histogram> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await.context("reading the API server's /metrics")?;
    Ok(latency_histogram(&text))
}

fn latency_histogram(metrics: &str) -> Histogram {
    let mut buckets: HashMap<String, f64> = HashMap::new();
    for line in metrics.lines().filter(|l| l.starts_with("apiserver_request_duration_seconds_bucket{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        if labels.contains("verb=\"WATCH\"") || labels.contains("verb=\"CONNECT\"") {
            continue;
        }
        let Some(le) = label(labels, "le") else { continue };
        *buckets.entry(le.to_string()).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    let mut sorted: Vec<(f64, f64)> =
        buckets.into_iter().filter_map(|(le, count)| Some((le.parse::<f64>().ok()?, count))).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    Histogram(sorted)
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

/// The value of one sample (`name` or `name{labels}`, exactly as exposed) in a
/// Prometheus text exposition.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_one_users_writes_by_resource() {
        let log = concat!(
            r#"{"user":{"username":"bench-petset"},"verb":"create","objectRef":{"resource":"pods"}}"#,
            "\n",
            r#"{"user":{"username":"admin"},"verb":"create","objectRef":{"resource":"pods"}}"#,
            "\n",
            r#"{"user":{"username":"bench-petset"},"verb":"patch","objectRef":{"resource":"petsets","subresource":"status"}}"#,
            "\n",
            r#"{"user":{"username":"bench-petset"},"verb":"create","objectRef":{"resource":"pods"}}"#,
            "\n",
            r#"{"user":{"username":"bench-petset"},"verb":"create","obj"#,
        );
        let counts = count_writes(log, "bench-petset");
        assert_eq!(counts.get("create pods"), Some(&2));
        assert_eq!(counts.get("patch petsets/status"), Some(&1));
        assert_eq!(counts.len(), 2);
    }

    #[test]
    fn latency_histogram_sums_buckets_without_long_running_verbs() {
        let metrics = "\
apiserver_request_duration_seconds_bucket{verb=\"GET\",resource=\"pods\",le=\"0.1\"} 3
apiserver_request_duration_seconds_bucket{verb=\"GET\",resource=\"pods\",le=\"+Inf\"} 4
apiserver_request_duration_seconds_bucket{verb=\"POST\",resource=\"pods\",le=\"0.1\"} 1
apiserver_request_duration_seconds_bucket{verb=\"POST\",resource=\"pods\",le=\"+Inf\"} 1
apiserver_request_duration_seconds_bucket{verb=\"WATCH\",resource=\"pods\",le=\"0.1\"} 0
apiserver_request_duration_seconds_bucket{verb=\"WATCH\",resource=\"pods\",le=\"+Inf\"} 9
";
        assert_eq!(latency_histogram(metrics), Histogram(vec![(0.1, 4.0), (f64::INFINITY, 5.0)]));
    }

    #[test]
    fn reads_one_sample() {
        let metrics = "# HELP x\nworkqueue_depth{name=\"statefulset\"} 3\nworkqueue_depth{name=\"x\"} 1\nup 1\n";
        assert_eq!(sample(metrics, "workqueue_depth{name=\"statefulset\"}"), Some(3.0));
        assert_eq!(sample(metrics, "up"), Some(1.0));
        assert_eq!(sample(metrics, "down"), None);
    }
}
