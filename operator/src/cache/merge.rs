//! One store fed by one watch per namespace.
//!
//! A reflector's writer takes a watch's (re)list, `Init`, `InitApply`..., `InitDone`,
//! as the whole truth and replaces the store with it: fed by several watches, the last
//! namespace to list would wipe the others. [`Merge`] turns each namespace's lists into
//! changes to that namespace alone, and gives the writer a single list of its own once
//! every namespace has listed, so the store becomes ready only then.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
};

use kube::{
    Resource, ResourceExt,
    runtime::{
        reflector::{ObjectRef, Store},
        watcher::Event,
    },
};

pub struct Merge<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash,
{
    /// Each watch's namespace; `None` for a watch of all of them.
    scopes: Vec<Option<String>>,
    store: Store<K>,
    state: State<K>,
}

enum State<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash,
{
    /// Until every watch has listed once: each one's objects as far as known, and
    /// whether its list is complete.
    Listing(Vec<(bool, HashMap<ObjectRef<K>, K>)>),
    /// Afterwards: for each watch in a relist, the objects listed so far.
    Watching(Vec<Option<HashSet<ObjectRef<K>>>>),
}

impl<K> Merge<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    /// `store` must be the reader of the writer this feeds: a relist deletes what it
    /// holds of that namespace and the relist did not show.
    pub fn new(scopes: Vec<Option<String>>, store: Store<K>) -> Self {
        let state = State::Listing(scopes.iter().map(|_| (false, HashMap::new())).collect());
        Merge { scopes, store, state }
    }

    /// The events for the writer that follow from `event` of watch `scope`.
    pub fn step(&mut self, scope: usize, event: Event<K>) -> Vec<Event<K>> {
        match &mut self.state {
            State::Listing(watches) => {
                let (listed, objects) = &mut watches[scope];
                match event {
                    Event::Init => {
                        *listed = false;
                        objects.clear();
                    }
                    Event::InitApply(object) | Event::Apply(object) => {
                        objects.insert(ObjectRef::from_obj(&object), object);
                    }
                    Event::Delete(object) => {
                        objects.remove(&ObjectRef::from_obj(&object));
                    }
                    Event::InitDone => *listed = true,
                }
                if !watches.iter().all(|(listed, _)| *listed) {
                    return Vec::new();
                }
                let all = watches.iter_mut().flat_map(|(_, objects)| objects.drain().map(|(_, o)| Event::InitApply(o)));
                let events = [Event::Init].into_iter().chain(all).chain([Event::InitDone]).collect();
                self.state = State::Watching(self.scopes.iter().map(|_| None).collect());
                events
            }
            State::Watching(relists) => match event {
                Event::Init => {
                    relists[scope] = Some(HashSet::new());
                    Vec::new()
                }
                Event::InitApply(object) => {
                    if let Some(seen) = &mut relists[scope] {
                        seen.insert(ObjectRef::from_obj(&object));
                    }
                    vec![Event::Apply(object)]
                }
                Event::InitDone => {
                    let Some(seen) = relists[scope].take() else { return Vec::new() };
                    let namespace = self.scopes[scope].as_deref();
                    // Whole stores are walked, but only at a relist, which is rare.
                    self.store
                        .state()
                        .into_iter()
                        .filter(|o| namespace.is_none_or(|ns| o.namespace().as_deref() == Some(ns)))
                        .filter(|o| !seen.contains(&ObjectRef::from_obj(o.as_ref())))
                        .map(|gone| Event::Delete(K::clone(&gone)))
                        .collect()
                }
                change @ (Event::Apply(_) | Event::Delete(_)) => vec![change],
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::{api::ObjectMeta, runtime::reflector};

    use super::*;

    fn cm(ns: &str, name: &str, version: &str) -> ConfigMap {
        let meta = ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            resource_version: Some(version.into()),
            ..ObjectMeta::default()
        };
        ConfigMap { metadata: meta, ..ConfigMap::default() }
    }

    /// A merge feeding a real writer, as the caches run it.
    struct Fed {
        merge: Merge<ConfigMap>,
        writer: reflector::store::Writer<ConfigMap>,
        store: Store<ConfigMap>,
    }

    impl Fed {
        fn new(scopes: &[Option<&str>]) -> Self {
            let (store, writer) = reflector::store();
            let merge = Merge::new(scopes.iter().map(|s| s.map(String::from)).collect(), store.clone());
            Fed { merge, writer, store }
        }

        fn feed(&mut self, scope: usize, events: Vec<Event<ConfigMap>>) {
            for event in events {
                for out in self.merge.step(scope, event) {
                    self.writer.apply_watcher_event(&out);
                }
            }
        }

        fn held(&self) -> Vec<(String, String, String)> {
            let mut held: Vec<_> = self
                .store
                .state()
                .iter()
                .map(|o| (o.namespace().unwrap(), o.name_any(), o.resource_version().unwrap()))
                .collect();
            held.sort();
            held
        }

        fn ready(&self) -> bool {
            self.store.wait_until_ready().now_or_never().is_some()
        }
    }

    fn list(objects: Vec<ConfigMap>) -> Vec<Event<ConfigMap>> {
        [Event::Init].into_iter().chain(objects.into_iter().map(Event::InitApply)).chain([Event::InitDone]).collect()
    }

    fn held(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        list.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect()
    }

    #[test]
    fn the_store_is_ready_with_every_namespace_once_each_has_listed() {
        let mut fed = Fed::new(&[Some("a"), Some("b")]);
        fed.feed(0, list(vec![cm("a", "x", "1"), cm("a", "y", "1")]));
        // What changes in a listed namespace while another still lists is kept.
        fed.feed(0, vec![Event::Apply(cm("a", "z", "2")), Event::Delete(cm("a", "y", "1"))]);
        assert!(!fed.ready());
        assert!(fed.held().is_empty());
        // A list broken off and started again replaces what the first attempt showed.
        fed.feed(1, vec![Event::Init, Event::InitApply(cm("b", "old", "1")), Event::Init]);
        fed.feed(1, vec![Event::InitApply(cm("b", "x", "3")), Event::InitDone]);
        assert!(fed.ready());
        assert_eq!(fed.held(), held(&[("a", "x", "1"), ("a", "z", "2"), ("b", "x", "3")]));
    }

    #[test]
    fn a_relist_replaces_its_own_namespace_only() {
        let mut fed = Fed::new(&[Some("a"), Some("b")]);
        fed.feed(0, list(vec![cm("a", "x", "1"), cm("a", "y", "1")]));
        fed.feed(1, list(vec![cm("b", "x", "1"), cm("b", "y", "1")]));
        // a's watch expired (410 Gone); while it was away, y was deleted and x changed.
        fed.feed(0, list(vec![cm("a", "x", "5")]));
        assert_eq!(fed.held(), held(&[("a", "x", "5"), ("b", "x", "1"), ("b", "y", "1")]));
        fed.feed(1, vec![Event::Apply(cm("b", "z", "6")), Event::Delete(cm("b", "x", "1"))]);
        assert_eq!(fed.held(), held(&[("a", "x", "5"), ("b", "y", "1"), ("b", "z", "6")]));
        // An empty relist empties the namespace.
        fed.feed(1, list(Vec::new()));
        assert_eq!(fed.held(), held(&[("a", "x", "5")]));
    }

    #[test]
    fn a_watch_of_all_namespaces_relists_them_all() {
        let mut fed = Fed::new(&[None]);
        fed.feed(0, list(vec![cm("a", "x", "1"), cm("b", "x", "1")]));
        fed.feed(0, list(vec![cm("b", "x", "2")]));
        assert_eq!(fed.held(), held(&[("b", "x", "2")]));
    }
}
