//! The caches the syncs read: one store per kind, fed by a watch per watched namespace
//! (or one of them all).
//!
//! Between the watches and the store, objects that do not decode are reported and left
//! out ([`lenient`]), so one bad object cannot fail a list; and each namespace's lists
//! replace that namespace's objects only ([`merge`]).

mod lenient;
mod merge;

use std::{fmt::Debug, hash::Hash, time::Duration};

use futures::{Stream, StreamExt, future, stream};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api, Client, Resource,
    core::NamespaceResourceScope,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;

use lenient::{Lenient, decoded};
use merge::Merge;

/// A store of `K` in `namespaces` (all of them if empty), and the objects its changes
/// touch, a stream which fills the store as it is polled. `report` is told of every
/// object that does not decode (its reference and the error).
pub fn reflect<K, R>(
    client: &Client,
    namespaces: &[String],
    config: watcher::Config,
    report: R,
) -> (Store<K>, impl Stream<Item = watcher::Result<K>> + Send + 'static)
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Default + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
    R: Fn(&ObjectReference, &str) + Clone + Send + 'static,
{
    let scopes: Vec<Option<String>> =
        if namespaces.is_empty() { vec![None] } else { namespaces.iter().cloned().map(Some).collect() };
    let watches: Vec<_> = scopes
        .iter()
        .enumerate()
        .map(|(scope, namespace)| {
            let api: Api<Lenient<K>> = match namespace {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            let report = report.clone();
            watcher(api, config.clone())
                .backoff(backoff())
                .filter_map(move |event| future::ready(event.map(|e| decoded(e, &report)).transpose()))
                // managedFields are most of a pod's bytes and no sync reads them; upstream's
                // controller-manager drops them from its caches too.
                .modify(|o| o.meta_mut().managed_fields = None)
                .map(move |event| (scope, event))
                .boxed()
        })
        .collect();
    let (store, writer) = reflector::store();
    let mut merge = Merge::new(scopes, store.clone());
    let events = stream::select_all(watches).flat_map(move |(scope, event)| {
        stream::iter(match event {
            Ok(event) => merge.step(scope, event).into_iter().map(Ok).collect(),
            Err(error) => vec![Err(error)],
        })
    });
    (store, reflector::reflector(writer, events).touched_objects())
}

/// Retries capped lower than kube's default (30 s, doubled by jitter), so the operator
/// recovers within seconds once a missing permission or an API outage is fixed.
fn backoff() -> watcher::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .into()
}
