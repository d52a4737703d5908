//! The order in which things happened to a namespace's pods, as the API server's watch
//! reports it (watch events arrive in the order etcd committed them), so tests can
//! assert "web-1 was created only after web-0 was Ready" without reading clocks.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};

use crate::pod_ready;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Happened {
    Created(String),
    Ready(String),
    NotReady(String),
    Deleting(String),
    /// The pod's `petset.dev/role` label changed to this value.
    Role(String, String),
}

/// Records pod transitions from the moment it starts until it is dropped.
pub struct History {
    seen: Arc<Mutex<Vec<Happened>>>,
    task: tokio::task::JoinHandle<()>,
    /// The most pods labelled leader at any one time.
    max_leaders: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for History {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl History {
    /// Starts recording; returns once the watch has its initial list, so nothing that
    /// happens after this call is missed.
    pub async fn start(pods: Api<Pod>) -> History {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
        let record = seen.clone();
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let max_leaders = most.clone();
        let task = tokio::spawn(async move {
            let mut state: BTreeMap<String, (bool, bool)> = BTreeMap::new();
            let mut roles: BTreeMap<String, String> = BTreeMap::new();
            let mut synced = Some(synced_tx);
            let mut events = std::pin::pin!(watcher(pods, watcher::Config::default()).default_backoff());
            while let Some(Ok(event)) = events.next().await {
                let pod = match event {
                    watcher::Event::InitDone => {
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    // Pods that exist when recording starts are the baseline, not news.
                    watcher::Event::InitApply(pod) => {
                        let state_now = (pod_ready(&pod), pod.metadata.deletion_timestamp.is_some());
                        state.insert(pod.uid().unwrap_or_default(), state_now);
                        roles.insert(pod.name_any(), role(&pod));
                        continue;
                    }
                    watcher::Event::Apply(pod) => pod,
                    watcher::Event::Delete(pod) => {
                        roles.remove(&pod.name_any());
                        continue;
                    }
                    watcher::Event::Init => continue,
                };
                let name = pod.name_any();
                let ready = pod_ready(&pod);
                let deleting = pod.metadata.deletion_timestamp.is_some();
                let mut log = record.lock().unwrap();
                let entry = state.entry(pod.uid().unwrap_or_default());
                let prev = match entry {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        log.push(Happened::Created(name.clone()));
                        *v.insert((false, false))
                    }
                    std::collections::btree_map::Entry::Occupied(o) => *o.get(),
                };
                if ready != prev.0 {
                    log.push(if ready { Happened::Ready(name.clone()) } else { Happened::NotReady(name.clone()) });
                }
                if deleting && !prev.1 {
                    log.push(Happened::Deleting(name.clone()));
                }
                state.insert(pod.uid().unwrap_or_default(), (ready, deleting));
                let now = role(&pod);
                if roles.get(&name) != Some(&now) {
                    log.push(Happened::Role(name.clone(), now.clone()));
                    roles.insert(name.clone(), now);
                }
                let leaders = roles.values().filter(|r| *r == "leader").count();
                max_leaders.fetch_max(leaders, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let _ = synced_rx.await;
        History { seen, task, max_leaders: most }
    }

    pub fn events(&self) -> Vec<Happened> {
        self.seen.lock().unwrap().clone()
    }

    /// The pods that were created, in order.
    pub fn created(&self) -> Vec<String> {
        self.events().into_iter().filter_map(|e| if let Happened::Created(n) = e { Some(n) } else { None }).collect()
    }

    /// The pods whose deletion started, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.events().into_iter().filter_map(|e| if let Happened::Deleting(n) = e { Some(n) } else { None }).collect()
    }

    /// The most pods labelled `petset.dev/role: leader` at the same time, so far.
    pub fn max_leaders(&self) -> usize {
        self.max_leaders.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Position of the first matching event.
    pub fn position(&self, what: &Happened) -> Option<usize> {
        self.events().iter().position(|e| e == what)
    }
}

fn role(pod: &Pod) -> String {
    pod.labels().get("petset.dev/role").cloned().unwrap_or_default()
}
