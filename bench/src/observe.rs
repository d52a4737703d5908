//! The pods of a run as the benchmark sees them through one watch: when each was first
//! seen, first seen Ready, and gone. Every time is the watch event's arrival, on one
//! clock, so both controllers are measured alike.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::bail;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, ResourceExt,
    runtime::watcher::{self, Event},
};
use tokio::sync::watch;

use crate::workload::{REVISION, SCENARIO, SET};

#[derive(Clone, Debug)]
pub struct PodRecord {
    pub name: String,
    pub set: String,
    pub scenario: String,
    pub revision: String,
    pub created: Instant,
    pub ready: Option<Instant>,
    pub deleted: Option<Instant>,
}

impl PodRecord {
    pub fn ordinal(&self) -> Option<u32> {
        self.name.rsplit_once('-')?.1.parse().ok()
    }
}

#[derive(Default)]
pub struct Timeline {
    /// Every pod seen, by uid: a replaced pod keeps its name but not its uid.
    pub pods: HashMap<String, PodRecord>,
}

impl Timeline {
    pub fn live(&self) -> impl Iterator<Item = &PodRecord> {
        self.pods.values().filter(|p| p.deleted.is_none())
    }

    /// Live pods that are Ready at `revision`, in `scenario` if given.
    pub fn ready(&self, scenario: Option<&str>, revision: &str) -> usize {
        self.live()
            .filter(|p| p.ready.is_some() && p.revision == revision && scenario.is_none_or(|s| p.scenario == s))
            .count()
    }

    fn apply(&mut self, pod: &Pod, now: Instant) {
        let Some(uid) = pod.uid() else { return };
        let labels = pod.labels();
        let record = self.pods.entry(uid).or_insert_with(|| PodRecord {
            name: pod.name_any(),
            set: labels.get(SET).cloned().unwrap_or_default(),
            scenario: labels.get(SCENARIO).cloned().unwrap_or_default(),
            revision: pod.annotations().get(REVISION).cloned().unwrap_or_default(),
            created: now,
            ready: None,
            deleted: None,
        });
        if record.ready.is_none() && is_ready(pod) {
            record.ready = Some(now);
        }
    }

    fn delete(&mut self, pod: &Pod, now: Instant) {
        if let Some(record) = pod.uid().and_then(|uid| self.pods.get_mut(&uid)) {
            record.deleted.get_or_insert(now);
        }
    }
}

/// Running and Ready, not being deleted: what both controllers wait for before the next
/// ordinal.
fn is_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else { return false };
    pod.metadata.deletion_timestamp.is_none()
        && status.phase.as_deref() == Some("Running")
        && status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// A running watch on the benchmark's pods of one namespace.
pub struct Observer {
    timeline: Arc<Mutex<Timeline>>,
    changed: watch::Receiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Starts watching and returns once the initial list is in.
    pub async fn start(client: Client, namespace: &str) -> anyhow::Result<Self> {
        let timeline = Arc::new(Mutex::new(Timeline::default()));
        let (notify, mut changed) = watch::channel(());
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let config = watcher::Config::default().labels(SCENARIO);
        let shared = timeline.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, config).boxed();
            while let Some(event) = events.next().await {
                let now = Instant::now();
                let Ok(event) = event else { continue };
                if matches!(event, Event::Init) {
                    continue;
                }
                {
                    let mut t = shared.lock().expect("timeline lock");
                    match &event {
                        Event::Apply(pod) | Event::InitApply(pod) => t.apply(pod, now),
                        Event::Delete(pod) => t.delete(pod, now),
                        Event::Init | Event::InitDone => {}
                    }
                }
                notify.send_replace(());
            }
        });
        // The first notification is the initial list's first pod or its end.
        changed.changed().await?;
        Ok(Observer { timeline, changed, task })
    }

    pub fn with<T>(&self, f: impl FnOnce(&Timeline) -> T) -> T {
        f(&self.timeline.lock().expect("timeline lock"))
    }

    /// Waits until `done` holds for the pods seen, re-checking on every watch event;
    /// fails after `timeout` with `progress`'s account of how far it got.
    pub async fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Timeline) -> bool,
        progress: impl Fn(&Timeline) -> String,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.with(&done) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("{what}: the pod watch ended"),
                Err(_) => bail!("{what}: not done after {}s ({})", timeout.as_secs(), self.with(&progress)),
            }
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
