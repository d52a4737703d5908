//! Keeps the objects a clustered set has besides its pods: the peers ConfigMap, the
//! governing and leader Services, the election Lease. Each is built by `cluster` and
//! applied (server-side) only when the cached object lacks some of what is wanted.
//!
//! Petset writes only objects the set controls, or orphans labelled as made for it. An
//! object of the name that is someone else's is left as it is: a user's ConfigMap or
//! Service, or the governing Service of another PetSet with the same `serviceName`
//! (the first set to make it owns it, and it goes with that set, by the garbage
//! collector; another set that names it reports the conflict on every sync until then,
//! and makes its own once it is gone).

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{events::EventType, reflector::ObjectRef},
};
use petset_crd::{Clustering, LeaderPolicy, PetSet};
use serde::Serialize;
use serde_json::Value;

use super::{FIELD_MANAGER, act::Write, status::OBJECT_CONFLICT};
use crate::{Conflict, Error, cluster, controller::Context};

pub async fn sync(
    set: &PetSet,
    clustering: &Clustering,
    members: &[&Pod],
    leader: Option<&str>,
    formed_at: Option<&Time>,
    ctx: &Context,
) -> Result<(), Error> {
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let mut conflicts = Vec::new();
    let text = cluster::peers_text(set, clustering, members, leader);
    let peers = cluster::peers_config_map(set, text, formed_at);
    let cached = ctx.config_maps.get(&ObjectRef::new(&cluster::peers_config_map_name(&name)).within(&ns));
    let config_maps = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns);
    conflicts.extend(keep(set, ctx, config_maps, peers, cached, "configmaps").await?);

    let services = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    let mut wanted_services = Vec::new();
    if clustering.manage_service {
        wanted_services.push(cluster::governing_service(set));
    }
    if clustering.leader.as_ref().is_some_and(|l| l.service) {
        wanted_services.push(cluster::leader_service(set));
    }
    for wanted in wanted_services {
        let cached = ctx.services.get(&ObjectRef::new(&wanted.name_any()).within(&ns));
        conflicts.extend(keep(set, ctx, services.clone(), wanted, cached, "services").await?);
    }
    if clustering.leader.as_ref().is_some_and(|l| l.policy == LeaderPolicy::AppElected)
        && ctx.leases.get(&ObjectRef::new(&name).within(&ns)).is_none()
    {
        // Created once; from then on it belongs to the pods that compete for it.
        let lease = cluster::election_lease(set);
        let leases = Api::<Lease>::namespaced(ctx.client.clone(), &ns);
        let w = Write {
            verb: "create",
            resource: "leases",
            kind: "Lease",
            name: &name,
            nothing_to_do: &[409],
            done: None,
            failed: Some("FailedCreate"),
        };
        w.send(set, ctx, leases.create(&PostParams::default(), &lease)).await?;
    }
    if conflicts.is_empty() { Ok(()) } else { Err(Error::NotOurs(conflicts)) }
}

/// Keeps `wanted` as the set has it, unless the object of its name is someone else's
/// (a user's, another PetSet's): that one is never written, only reported and returned.
async fn keep<K>(
    set: &PetSet,
    ctx: &Context,
    api: Api<K>,
    wanted: K,
    cached: Option<Arc<K>>,
    resource: &'static str,
) -> Result<Option<Conflict>, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    // Only objects labelled as made for a set are cached: one of the same name may
    // exist without the label.
    let fetched;
    let existing = match &cached {
        Some(cached) => Some(cached.as_ref()),
        None => {
            fetched = api.get_opt(&wanted.name_any()).await?;
            fetched.as_ref()
        }
    };
    if let Some(theirs) = existing.filter(|e| !cluster::ours_or_adoptable(*e, set)) {
        let conflict = Conflict::of(theirs);
        let related = Some((conflict.kind.as_str(), conflict.name.as_str()));
        ctx.event(set, related, EventType::Warning, OBJECT_CONFLICT, "Sync", conflict.to_string());
        return Ok(Some(conflict));
    }
    apply(set, ctx, api, wanted, existing, resource).await?;
    Ok(None)
}

/// Applies `wanted` unless `cached` already has every field it sets (what the server
/// defaults or others add is left alone; a changed field is put back).
async fn apply<K>(
    set: &PetSet,
    ctx: &Context,
    api: Api<K>,
    wanted: K,
    cached: Option<&K>,
    resource: &'static str,
) -> Result<(), Error>
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let mut body = serde_json::to_value(&wanted).unwrap_or_default();
    if let Some(cached) = cached {
        let have = serde_json::to_value(cached).unwrap_or_default();
        if contains(&have, &body) {
            return Ok(());
        }
    }
    let name = wanted.name_any();
    body["apiVersion"] = K::api_version(&Default::default()).into();
    body["kind"] = K::kind(&Default::default()).into();
    let kind = K::kind(&Default::default()).to_string();
    let w = Write {
        verb: "patch",
        resource,
        kind: &kind,
        name: &name,
        nothing_to_do: &[],
        done: None,
        failed: Some("FailedApply"),
    };
    w.send(set, ctx, api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))).await?;
    Ok(())
}

/// Whether `have` has every field of `want` with the same value.
fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w.iter().all(|(k, v)| h.get(k).is_some_and(|hv| contains(hv, v))),
        (Value::Array(h), Value::Array(w)) => h.len() == w.len() && h.iter().zip(w).all(|(hv, wv)| contains(hv, wv)),
        (h, w) => h == w,
    }
}
