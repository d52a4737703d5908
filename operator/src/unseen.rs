//! Pods and claims this operator created that its caches have not shown yet. A sync
//! can start before the watch delivers what the previous one created (woken by another
//! watch, or by a timer), and would create the same object again: refused as a
//! conflict, but a request spent. Until the cache shows it, a create of the same name
//! is skipped; after a while the mark lapses, in case the object went before it was seen.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// How long a created object may stay unseen before it is created again if wanted.
const AT_MOST: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Unseen(Mutex<HashMap<String, Instant>>);

impl Unseen {
    pub fn created(&self, kind: &str, ns: &str, name: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(key(kind, ns, name), Instant::now());
    }

    /// Whether `name` was created and has not been seen in the cache since.
    pub fn pending(&self, kind: &str, ns: &str, name: &str) -> bool {
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(&key(kind, ns, name)).is_some_and(|at| at.elapsed() < AT_MOST)
    }

    /// How soon the first mark in namespace `ns` lapses. A sync that skipped a create
    /// for a mark must come back by then: the object may have come and gone between two
    /// syncs (a pod deleted before a sync saw it), and nothing else would wake the set.
    pub fn lapses_in(&self, ns: &str) -> Option<Duration> {
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.iter()
            .filter(|(key, _)| key.split('/').nth(1) == Some(ns))
            .map(|(_, at)| AT_MOST.saturating_sub(at.elapsed()))
            // Lapsed: the next sync's look at the cache drops it.
            .filter(|left| !left.is_zero())
            .min()
    }

    /// Marks what a sync found in the cache as seen.
    pub fn seen(&self, kind: &str, ns: &str, names: impl Iterator<Item = String>) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if all.is_empty() {
            return;
        }
        for name in names {
            all.remove(&key(kind, ns, &name));
        }
        all.retain(|_, at| at.elapsed() < AT_MOST);
    }
}

fn key(kind: &str, ns: &str, name: &str) -> String {
    format!("{kind}/{ns}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_object_is_pending_until_seen() {
        let unseen = Unseen::default();
        assert!(!unseen.pending("Pod", "ns", "web-0"));
        unseen.created("Pod", "ns", "web-0");
        assert!(unseen.pending("Pod", "ns", "web-0"));
        assert!(!unseen.pending("Pod", "other", "web-0"));
        assert!(!unseen.pending("PersistentVolumeClaim", "ns", "web-0"));
        unseen.seen("Pod", "ns", ["web-0".to_string()].into_iter());
        assert!(!unseen.pending("Pod", "ns", "web-0"));
    }

    #[test]
    fn a_mark_says_when_it_lapses_in_its_namespace_only() {
        let unseen = Unseen::default();
        assert_eq!(unseen.lapses_in("ns"), None);
        unseen.created("Pod", "ns", "web-0");
        assert!(unseen.lapses_in("ns").is_some_and(|d| d <= AT_MOST && d > AT_MOST / 2));
        assert_eq!(unseen.lapses_in("other"), None);
    }
}
