//! Volumes for the default StorageClass. The simulated nodes have no storage, but the
//! scheduler and the PV binder are real: a claim must be Bound before its pod can be
//! scheduled. This gives every claim of a class whose provisioner is
//! `petset.dev/sim-provisioner` a PersistentVolume pre-bound to it (the binder in
//! kube-controller-manager does the binding), and deletes a Released volume whose
//! reclaim policy is Delete, as a real provisioner would.

use std::{collections::BTreeMap, sync::Arc};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ObjectMeta, PostParams},
    runtime::{Controller, controller::Action, watcher},
};

use crate::{Ctx, Result, retry};

const PROVISIONER: &str = "petset.dev/sim-provisioner";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// Provisions and reclaims until the process ends.
pub async fn run(client: Client) {
    let ctx = Arc::new(Ctx { client: client.clone() });
    let claims = Controller::new(Api::<PersistentVolumeClaim>::all(client.clone()), watcher::Config::default())
        .run(provision, retry, ctx.clone())
        .for_each(|_| async {});
    let volumes = Controller::new(Api::<PersistentVolume>::all(client), watcher::Config::default())
        .run(reclaim, retry, ctx)
        .for_each(|_| async {});
    tokio::join!(claims, volumes);
}

async fn provision(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action> {
    let spec = pvc.spec.clone().unwrap_or_default();
    if spec.volume_name.is_some() || pvc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(class) = spec.storage_class_name.as_deref() else {
        return Ok(Action::await_change());
    };
    let class = Api::<StorageClass>::all(ctx.client.clone()).get_opt(class).await?;
    if class.is_none_or(|c| c.provisioner != PROVISIONER) {
        return Ok(Action::await_change());
    }
    let name = format!("pvc-{}", pvc.uid().unwrap_or_default());
    let capacity = spec.resources.and_then(|r| r.requests).and_then(|r| r.get("storage").cloned());
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some(BTreeMap::from([(PROVISIONED_BY.into(), PROVISIONER.into())])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes,
            capacity: capacity.map(|c| BTreeMap::from([("storage".into(), c)])),
            storage_class_name: spec.storage_class_name,
            volume_mode: spec.volume_mode,
            persistent_volume_reclaim_policy: Some("Delete".into()),
            // Never mounted: the nodes are simulated.
            host_path: Some(HostPathVolumeSource { path: format!("/var/lib/petset-sim/{name}"), type_: None }),
            claim_ref: Some(ObjectReference {
                namespace: pvc.namespace(),
                name: Some(pvc.name_any()),
                uid: pvc.uid(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    match Api::<PersistentVolume>::all(ctx.client.clone()).create(&PostParams::default(), &pv).await {
        Ok(_) => tracing::info!(volume = name, claim = %pvc.name_any(), "provisioned"),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    Ok(Action::await_change())
}

async fn reclaim(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action> {
    let ours = pv.annotations().get(PROVISIONED_BY).is_some_and(|p| p == PROVISIONER);
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = pv.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Delete");
    if ours && released && delete {
        match Api::<PersistentVolume>::all(ctx.client.clone()).delete(&pv.name_any(), &DeleteParams::default()).await {
            Ok(_) => tracing::info!(volume = %pv.name_any(), "deleted released volume"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Action::await_change())
}
