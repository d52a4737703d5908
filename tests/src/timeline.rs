//! A uid-aware record of what happened to a namespace's objects (pods, claims), as
//! the API server's watch reports it, that survives the API server and etcd going
//! away: the fault tier's evidence.
//!
//! `history::History` answers "in which order did pods become Ready"; this answers
//! "which object (uid) of which name existed when". Each watch event becomes a
//! [`Record`]. When the watch breaks it resumes from its last resourceVersion; when
//! it has to list again (410 Gone, or at the start) the fresh list is reconciled
//! with what was known: an object missing from the list is recorded as Deleted, an
//! unknown one as Added, both marked `inferred`. So a gap in the history can hide
//! intermediate states but never shows two objects alive that were not.
//!
//! The checks are pure functions over the records, tested below on synthetic
//! histories so that each one is known to fail when it should.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{Arc, Mutex},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

/// One observation of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub change: Change,
    pub name: String,
    pub uid: String,
    /// metadata.deletionTimestamp is set.
    pub deleting: bool,
    /// Pods: the first container's image.
    pub image: String,
    /// Pods: the `controller-revision-hash` label.
    pub revision: String,
    /// Not a watch event: concluded from a fresh list after the watch had to re-list.
    pub inferred: bool,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {} uid={}", self.change, self.name, self.uid)?;
        if !self.image.is_empty() {
            write!(f, " image={}", self.image)?;
        }
        if self.deleting {
            write!(f, " (terminating)")?;
        }
        if self.inferred {
            write!(f, " (inferred from a re-list)")?;
        }
        Ok(())
    }
}

/// What a record keeps of an object.
pub trait Digest {
    fn digest(&self, change: Change) -> Record;
}

fn base<K: Resource>(obj: &K, change: Change) -> Record {
    Record {
        change,
        name: obj.meta().name.clone().unwrap_or_default(),
        uid: obj.meta().uid.clone().unwrap_or_default(),
        deleting: obj.meta().deletion_timestamp.is_some(),
        image: String::new(),
        revision: String::new(),
        inferred: false,
    }
}

impl Digest for Pod {
    fn digest(&self, change: Change) -> Record {
        Record {
            image: self
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            revision: self.labels().get("controller-revision-hash").cloned().unwrap_or_default(),
            ..base(self, change)
        }
    }
}

impl Digest for PersistentVolumeClaim {
    fn digest(&self, change: Change) -> Record {
        base(self, change)
    }
}

#[derive(Default)]
struct Shared {
    records: Vec<Record>,
    /// Errors the watch stream reported (it goes on after each, with backoff).
    errors: Vec<String>,
    /// Complete lists received (the first one included).
    lists: usize,
}

/// Records one kind of object in one namespace from `start` until dropped.
pub struct Timeline {
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Timeline {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Timeline {
    /// Starts recording; returns once the first list is in (objects that exist then are
    /// recorded as `inferred` Added), so nothing that happens after this call is missed.
    pub async fn start<K>(api: Api<K>) -> Timeline
    where
        K: Resource + Digest + Clone + DeserializeOwned + fmt::Debug + Send + 'static,
        K::DynamicType: Default,
    {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
        let record = shared.clone();
        let task = tokio::spawn(async move {
            let mut synced = Some(synced_tx);
            // uid -> the last record of each object believed to exist.
            let mut present: BTreeMap<String, Record> = BTreeMap::new();
            let mut listing: Option<Vec<K>> = None;
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        record.lock().unwrap().errors.push(e.to_string());
                        continue;
                    }
                };
                let mut shared = record.lock().unwrap();
                match event {
                    watcher::Event::Init => listing = Some(Vec::new()),
                    watcher::Event::InitApply(obj) => listing.get_or_insert_default().push(obj),
                    watcher::Event::InitDone => {
                        let listed: Vec<Record> = listing
                            .take()
                            .unwrap_or_default()
                            .iter()
                            .map(|o| Record { inferred: true, ..o.digest(Change::Added) })
                            .collect();
                        let records = reconcile(&mut present, listed);
                        shared.records.extend(records);
                        shared.lists += 1;
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                    }
                    watcher::Event::Apply(obj) => {
                        let mut r = obj.digest(Change::Modified);
                        if !present.contains_key(&r.uid) {
                            r.change = Change::Added;
                        }
                        present.insert(r.uid.clone(), r.clone());
                        shared.records.push(r);
                    }
                    watcher::Event::Delete(obj) => {
                        let r = obj.digest(Change::Deleted);
                        present.remove(&r.uid);
                        shared.records.push(r);
                    }
                }
            }
        });
        let _ = synced_rx.await;
        Timeline { shared, task }
    }

    pub fn records(&self) -> Vec<Record> {
        self.shared.lock().unwrap().records.clone()
    }

    /// Errors the watch survived so far.
    pub fn errors(&self) -> Vec<String> {
        self.shared.lock().unwrap().errors.clone()
    }

    /// Complete lists so far (1 if the watch never had to re-list).
    pub fn lists(&self) -> usize {
        self.shared.lock().unwrap().lists
    }
}

/// Reconciles a fresh list with the objects believed present: records an inferred
/// Deleted for each that is gone, an inferred Added for each new one, and an inferred
/// Modified for each known one that changed. Deletions come first, so a name whose
/// object was replaced during the gap is never shown twice at once.
fn reconcile(present: &mut BTreeMap<String, Record>, listed: Vec<Record>) -> Vec<Record> {
    let mut out = Vec::new();
    let uids: BTreeSet<&str> = listed.iter().map(|r| r.uid.as_str()).collect();
    let gone: Vec<String> = present.keys().filter(|u| !uids.contains(u.as_str())).cloned().collect();
    for uid in gone {
        let last = present.remove(&uid).expect("present");
        out.push(Record { change: Change::Deleted, inferred: true, ..last });
    }
    for r in listed {
        match present.get(&r.uid) {
            None => out.push(r.clone()),
            Some(known) if known.deleting != r.deleting || known.image != r.image || known.revision != r.revision => {
                out.push(Record { change: Change::Modified, ..r.clone() })
            }
            Some(_) => {}
        }
        present.insert(r.uid.clone(), r);
    }
    out
}

/// The identity a name stands for: `<set>-<ordinal>` as (set, ordinal), so that
/// `web-1` and `web-01` are the same identity; any other name is its own identity.
pub fn identity(name: &str) -> (String, Option<u64>) {
    match name.rsplit_once('-') {
        Some((set, ord)) if !ord.is_empty() && ord.bytes().all(|b| b.is_ascii_digit()) => {
            (set.to_string(), ord.parse().ok())
        }
        _ => (name.to_string(), None),
    }
}

/// Never two objects for one identity at once: every Added must find the identity
/// free (its previous object Deleted). Returns one line per violation.
pub fn two_at_once(records: &[Record]) -> Vec<String> {
    let mut alive: BTreeMap<(String, Option<u64>), (usize, &Record)> = BTreeMap::new();
    let mut violations = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let key = identity(&r.name);
        match r.change {
            Change::Added => {
                if let Some((j, other)) = alive.get(&key)
                    && other.uid != r.uid
                {
                    violations.push(format!("record #{i} [{r}] while #{j} [{other}] was not yet deleted"));
                }
                alive.insert(key, (i, r));
            }
            Change::Modified => {
                alive.entry(key).or_insert((i, r));
            }
            Change::Deleted => {
                if alive.get(&key).is_some_and(|(_, o)| o.uid == r.uid) {
                    alive.remove(&key);
                }
            }
        }
    }
    violations
}

/// Claims under `Retain`: none is ever deleted or marked for deletion, and each name
/// keeps the uid it was first created with. `deletable` names the claims the
/// retention policy allowed to go (none for Retain/Retain).
pub fn claims_kept(records: &[Record], deletable: impl Fn(&Record) -> bool) -> Vec<String> {
    let mut first: BTreeMap<&str, &str> = BTreeMap::new();
    let mut violations = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if (r.change == Change::Deleted || r.deleting) && !deletable(r) {
            violations.push(format!("record #{i} [{r}]: a claim went against the retention policy"));
        }
        let uid = first.entry(&r.name).or_insert(&r.uid);
        if *uid != r.uid {
            violations.push(format!("record #{i} [{r}]: claim {} was first created with uid {uid}", r.name));
        }
    }
    violations
}

/// Every pod of `set` ever seen with an ordinal below `partition` ran `image`.
pub fn held_below_partition(records: &[Record], set: &str, partition: u64, image: &str) -> Vec<String> {
    records
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            let (s, ord) = identity(&r.name);
            s == set && ord.is_some_and(|o| o < partition) && r.change != Change::Deleted && r.image != image
        })
        .map(|(i, r)| format!("record #{i} [{r}]: below partition {partition} a pod must keep {image}"))
        .collect()
}

/// The records as numbered lines, for failure messages.
pub fn render(records: &[Record]) -> String {
    records.iter().enumerate().map(|(i, r)| format!("  #{i} {r}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(change: Change, name: &str, uid: &str) -> Record {
        Record {
            change,
            name: name.into(),
            uid: uid.into(),
            deleting: false,
            image: "img:1".into(),
            revision: String::new(),
            inferred: false,
        }
    }
    use Change::*;

    #[test]
    fn a_second_pod_added_before_the_first_is_deleted_is_caught() {
        let h = [rec(Added, "web-0", "a"), rec(Modified, "web-0", "a"), rec(Added, "web-0", "b")];
        let v = two_at_once(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("uid=b") && v[0].contains("uid=a"), "{v:?}");
    }

    #[test]
    fn the_same_ordinal_under_another_spelling_is_caught() {
        let h = [rec(Added, "web-1", "a"), rec(Added, "web-01", "b")];
        assert_eq!(two_at_once(&h).len(), 1);
    }

    #[test]
    fn a_replacement_after_the_deletion_is_fine() {
        let h = [
            rec(Added, "web-0", "a"),
            Record { deleting: true, ..rec(Modified, "web-0", "a") },
            rec(Deleted, "web-0", "a"),
            rec(Added, "web-0", "b"),
            rec(Added, "web-1", "c"),
            rec(Added, "other-0", "d"),
        ];
        assert_eq!(two_at_once(&h), Vec::<String>::new());
    }

    #[test]
    fn a_gap_reconciled_by_a_relist_shows_no_overlap() {
        // The watch missed "a deleted, b added"; the fresh list has b only.
        let mut present = BTreeMap::new();
        let mut h = reconcile(&mut present, vec![Record { inferred: true, ..rec(Added, "web-0", "a") }]);
        h.extend(reconcile(&mut present, vec![Record { inferred: true, ..rec(Added, "web-0", "b") }]));
        assert_eq!(
            h.iter().map(|r| (r.change, r.uid.as_str())).collect::<Vec<_>>(),
            [(Added, "a"), (Deleted, "a"), (Added, "b")]
        );
        assert!(h.iter().all(|r| r.inferred));
        assert_eq!(two_at_once(&h), Vec::<String>::new());
        // A relist that changes nothing records nothing.
        assert!(reconcile(&mut present, vec![rec(Added, "web-0", "b")]).is_empty());
    }

    #[test]
    fn a_deleted_or_replaced_claim_is_caught() {
        let keep = |_: &Record| false;
        assert!(claims_kept(&[rec(Added, "www-web-0", "a"), rec(Modified, "www-web-0", "a")], keep).is_empty());
        assert_eq!(claims_kept(&[rec(Added, "www-web-0", "a"), rec(Deleted, "www-web-0", "a")], keep).len(), 1);
        let marked = Record { deleting: true, ..rec(Modified, "www-web-0", "a") };
        assert_eq!(claims_kept(&[rec(Added, "www-web-0", "a"), marked], keep).len(), 1);
        let v = claims_kept(&[rec(Added, "www-web-0", "a"), rec(Added, "www-web-0", "b")], keep);
        assert_eq!(v.len(), 1);
        assert!(v[0].contains("first created with uid a"), "{v:?}");
        // Allowed by the policy: not a violation.
        assert!(claims_kept(&[rec(Added, "www-web-3", "a"), rec(Deleted, "www-web-3", "a")], |_| true).is_empty());
    }

    #[test]
    fn a_pod_below_the_partition_with_the_new_image_is_caught() {
        let new = Record { image: "img:2".into(), ..rec(Added, "web-1", "b") };
        let h = [rec(Added, "web-0", "a"), new.clone(), Record { image: "img:2".into(), ..rec(Added, "web-2", "c") }];
        assert_eq!(held_below_partition(&h, "web", 2, "img:1").len(), 1);
        assert!(held_below_partition(&h, "web", 1, "img:1").is_empty());
        assert!(held_below_partition(&h, "other", 3, "img:1").is_empty());
    }
}
