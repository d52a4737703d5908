//! The end of a graceful pod deletion. Once a deleted pod's containers have stopped, its
//! kubelet deletes it for good with a grace period of 0 and a precondition on its uid.
//! The simulated nodes have no kubelet, and KWOK's own delete stage deletes by name
//! only: under load it acts on old watch events, so it deleted the new pod a controller
//! had just created under the same name (a StatefulSet's or a PetSet's replacement in a
//! rolling update), again and again. This does the kubelet's part, uid and all.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, PartialObjectMeta, Preconditions},
    runtime::{Controller, controller::Action, watcher},
};

use crate::{Ctx, Result, retry};

/// Finishes every graceful pod deletion until the process ends. Only the pods' metadata
/// is watched and kept.
pub async fn run(client: Client) {
    let ctx = Arc::new(Ctx { client: client.clone() });
    Controller::new(Api::<PartialObjectMeta<Pod>>::all(client), watcher::Config::default())
        .run(finish, retry, ctx)
        .for_each(|_| async {})
        .await;
}

async fn finish(pod: Arc<PartialObjectMeta<Pod>>, ctx: Arc<Ctx>) -> Result<Action> {
    if pod.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
        ..Default::default()
    };
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => tracing::debug!(pod = %pod.name_any(), "deleted"),
        // Gone already, or the name is a new pod's now.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => return Err(e),
    }
    Ok(Action::await_change())
}
