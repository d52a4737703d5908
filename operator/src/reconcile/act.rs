//! Carries out a plan against the API server. Every write is idempotent: names are
//! deterministic, so a create that finds the object (AlreadyExists) or a delete that
//! finds it gone (NotFound) has nothing left to do, and a crash between two writes
//! leaves a state the next sync plans from.

use futures::future::join_all;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
    runtime::events::EventType,
};
use petset_crd::PetSet;
use serde_json::json;

use super::plan::{Action, DeleteReason, Plan, Step};
use crate::{Error, controller::Context, identity};

/// Runs the batches in order, the steps of a batch concurrently; stops after the first
/// batch in which something failed, and returns that failure.
pub async fn execute(set: &PetSet, plan: &Plan, ctx: &Context) -> Result<(), Error> {
    for batch in &plan.batches {
        let results = join_all(batch.iter().map(|step| run_step(set, step, ctx))).await;
        if let Some(err) = results.into_iter().find_map(Result::err) {
            return Err(err);
        }
    }
    Ok(())
}

async fn run_step(set: &PetSet, step: &Step, ctx: &Context) -> Result<(), Error> {
    for action in step {
        run(set, action, ctx).await?;
    }
    Ok(())
}

async fn run(set: &PetSet, action: &Action, ctx: &Context) -> Result<(), Error> {
    let ns = set.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let set_name = set.name_any();
    match action {
        Action::AdoptPod { name, uid } => {
            // Adopt only for the set that exists now: the cached one may have been
            // deleted and recreated under the same name.
            let fresh = Api::<PetSet>::namespaced(ctx.client.clone(), &ns).get(&set_name).await?;
            if fresh.uid() != set.uid() || fresh.metadata.deletion_timestamp.is_some() {
                return Ok(());
            }
            let patch = json!({"metadata": {"uid": uid, "ownerReferences": [identity::controller_ref(set)]}});
            let result = pods.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await;
            ctx.metrics.write("patch", "pods");
            ignore(result, &[404, 409, 422]).map_err(|e| Error::write("adopt", "Pod", name, e))?;
        }
        Action::ReleasePod { name, uid } => {
            let patch = json!({"metadata": {"uid": uid, "ownerReferences": [{"$patch": "delete", "uid": set.uid()}]}});
            let result = pods.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await;
            ctx.metrics.write("patch", "pods");
            ignore(result, &[404, 409, 422]).map_err(|e| Error::write("release", "Pod", name, e))?;
        }
        Action::CreateClaim { claim, pod } => {
            let name = claim.name_any();
            let result = claims.create(&PostParams::default(), claim).await;
            ctx.metrics.write("create", "persistentvolumeclaims");
            match ignore(result, &[409]) {
                Ok(created) => {
                    if created {
                        ctx.metrics.claims_created.inc();
                        ctx.event(
                            set,
                            Some(("PersistentVolumeClaim", &name)),
                            EventType::Normal,
                            "SuccessfulCreate",
                            "Create",
                            format!("create Claim {name} Pod {pod} in PetSet {set_name} success"),
                        )
                        .await;
                    }
                }
                Err(e) => {
                    ctx.event(
                        set,
                        Some(("PersistentVolumeClaim", &name)),
                        EventType::Warning,
                        "FailedCreate",
                        "Create",
                        format!(
                            "create Claim {name} for Pod {pod} in PetSet {set_name} failed error: {}",
                            crate::message(&e)
                        ),
                    )
                    .await;
                    return Err(Error::write("create", "PersistentVolumeClaim", &name, e));
                }
            }
        }
        Action::CreatePod { pod } => {
            let name = pod.name_any();
            let result = pods.create(&PostParams::default(), pod).await;
            ctx.metrics.write("create", "pods");
            match ignore(result, &[409]) {
                Ok(created) => {
                    if created {
                        ctx.metrics.pods_created.inc();
                        ctx.event(
                            set,
                            Some(("Pod", &name)),
                            EventType::Normal,
                            "SuccessfulCreate",
                            "Create",
                            format!("create Pod {name} in PetSet {set_name} successful"),
                        )
                        .await;
                    }
                }
                Err(e) => {
                    ctx.event(
                        set,
                        Some(("Pod", &name)),
                        EventType::Warning,
                        "FailedCreate",
                        "Create",
                        format!("create Pod {name} in PetSet {set_name} failed error: {}", crate::message(&e)),
                    )
                    .await;
                    return Err(Error::write("create", "Pod", &name, e));
                }
            }
        }
        Action::DeletePod { name, uid, reason } => {
            match reason {
                DeleteReason::Failed => {
                    ctx.event(
                        set,
                        Some(("Pod", name)),
                        EventType::Warning,
                        "RecreatingFailedPod",
                        "Delete",
                        format!("PetSet {ns}/{set_name} is recreating failed Pod {name}"),
                    )
                    .await
                }
                DeleteReason::Succeeded => {
                    ctx.event(
                        set,
                        Some(("Pod", name)),
                        EventType::Normal,
                        "RecreatingTerminatedPod",
                        "Delete",
                        format!("PetSet {ns}/{set_name} is recreating terminated Pod {name}"),
                    )
                    .await
                }
                DeleteReason::ScaleDown | DeleteReason::Update => {}
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                ..DeleteParams::default()
            };
            let result = pods.delete(name, &params).await.map(|_| ());
            ctx.metrics.write("delete", "pods");
            // 404: already gone; 409: the uid precondition failed, it is another pod now.
            match ignore(result, &[404, 409]) {
                Ok(deleted) => {
                    if deleted {
                        ctx.metrics.pods_deleted.inc();
                        ctx.event(
                            set,
                            Some(("Pod", name)),
                            EventType::Normal,
                            "SuccessfulDelete",
                            "Delete",
                            format!("delete Pod {name} in PetSet {set_name} successful"),
                        )
                        .await;
                    }
                }
                Err(e) => {
                    ctx.event(
                        set,
                        Some(("Pod", name)),
                        EventType::Warning,
                        "FailedDelete",
                        "Delete",
                        format!("delete Pod {name} in PetSet {set_name} failed error: {}", crate::message(&e)),
                    )
                    .await;
                    return Err(Error::write("delete", "Pod", name, e));
                }
            }
        }
        Action::FixPodIdentity { pod } => {
            let name = pod.name_any();
            let labels: serde_json::Map<_, _> = [identity::POD_NAME_LABEL, identity::POD_INDEX_LABEL]
                .iter()
                .map(|k| (k.to_string(), json!(pod.labels().get(*k))))
                .collect();
            let patch = json!({"metadata": {"uid": pod.uid(), "labels": labels}});
            let result = pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ());
            ctx.metrics.write("patch", "pods");
            ignore(result, &[404]).map_err(|e| Error::write("update", "Pod", &name, e))?;
            ctx.event(
                set,
                Some(("Pod", &name)),
                EventType::Normal,
                "SuccessfulUpdate",
                "Update",
                format!("update Pod {name} in PetSet {set_name} successful"),
            )
            .await;
        }
        Action::SetClaimOwners { name, pod, owners } => {
            let patch = json!({"metadata": {"ownerReferences": owners}});
            let result = claims.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ());
            ctx.metrics.write("patch", "persistentvolumeclaims");
            ignore(result, &[404]).map_err(|e| Error::write("update", "PersistentVolumeClaim", name, e))?;
            ctx.event(
                set,
                Some(("PersistentVolumeClaim", name)),
                EventType::Normal,
                "SuccessfulUpdate",
                "Update",
                format!("update Claim {name} Pod {pod} in PetSet {set_name} success"),
            )
            .await;
        }
    }
    Ok(())
}

/// Ok(true) when the write happened, Ok(false) when an ignorable status code said there
/// was nothing to do.
fn ignore<T>(result: Result<T, kube::Error>, codes: &[u16]) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if codes.contains(&status.code) => Ok(false),
        Err(e) => Err(e),
    }
}
