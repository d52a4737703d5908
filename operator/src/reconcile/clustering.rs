//! Keeps the objects a clustered set has besides its pods: the peers ConfigMap, the
//! governing and leader Services, the election Lease. Each is built by `cluster` and
//! applied (server-side) only when the cached object lacks some of what is wanted.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{events::EventType, reflector::ObjectRef},
};
use petset_crd::{Clustering, LeaderPolicy, PetSet};
use serde::Serialize;
use serde_json::Value;

use super::{FIELD_MANAGER, act::Write};
use crate::{Error, cluster, controller::Context};

pub async fn sync(
    set: &PetSet,
    clustering: &Clustering,
    members: &[&Pod],
    leader: Option<&str>,
    ctx: &Context,
) -> Result<(), Error> {
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let text = cluster::peers_text(set, clustering, members, leader);
    let peers = cluster::peers_config_map(set, text);
    let cached = ctx.config_maps.get(&ObjectRef::new(&cluster::peers_config_map_name(&name)).within(&ns));
    apply(set, ctx, Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns), peers, cached.as_deref(), "configmaps")
        .await?;

    let services = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    if clustering.manage_service {
        let wanted = cluster::governing_service(set);
        let service_name = wanted.name_any();
        let cached = ctx.services.get(&ObjectRef::new(&service_name).within(&ns));
        match cached {
            Some(s) => apply(set, ctx, services.clone(), wanted, Some(&s), "services").await?,
            // Not among the Services petset made: one of the same name may exist.
            None => match services.get_opt(&service_name).await? {
                None => apply(set, ctx, services.clone(), wanted, None, "services").await?,
                Some(theirs) if !theirs.owner_references().iter().any(|r| Some(&r.uid) == set.uid().as_ref()) => {
                    let note = format!("Service {service_name} exists and was not created by this PetSet: left alone");
                    ctx.event(
                        set,
                        Some(("Service", &service_name)),
                        EventType::Warning,
                        "ServiceNotManaged",
                        "Sync",
                        note,
                    );
                }
                Some(ours) => apply(set, ctx, services.clone(), wanted, Some(&ours), "services").await?,
            },
        }
    }
    if let Some(leader_spec) = &clustering.leader {
        if leader_spec.service {
            let wanted = cluster::leader_service(set);
            let cached = ctx.services.get(&ObjectRef::new(&wanted.name_any()).within(&ns));
            apply(set, ctx, services, wanted, cached.as_deref(), "services").await?;
        }
        if leader_spec.policy == LeaderPolicy::AppElected
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
    }
    Ok(())
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
