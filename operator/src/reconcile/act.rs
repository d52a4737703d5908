//! Carries out a plan against the API server. Every write is idempotent: names are
//! deterministic, so a create that finds the object (AlreadyExists) or a delete that
//! finds it gone (NotFound) has nothing left to do, and a crash between two writes
//! leaves a state the next sync plans from.

use std::future::Future;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
    core::{Selector, SelectorExt},
    runtime::events::EventType,
};
use petset_crd::PetSet;
use serde_json::json;

use super::plan::{Action, DeleteReason, Plan, Step};
use super::status::OBJECT_CONFLICT;
use crate::{Conflict, Error, cluster, controller::Context, events::Done, identity, revision::RevisionAction};

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

/// One write: what it is, for metrics, events and errors.
pub(super) struct Write<'a> {
    pub verb: &'static str,
    pub resource: &'static str,
    pub kind: &'a str,
    pub name: &'a str,
    /// Status codes that mean there was nothing left to do.
    pub nothing_to_do: &'static [u16],
    /// The event reason and note when it happened; None for no event.
    pub done: Option<(&'static str, String)>,
    /// The event reason when it failed; None for no event.
    pub failed: Option<&'static str>,
}

impl Write<'_> {
    /// Sends the request, counts it, reports it. Ok(true) when it happened, Ok(false)
    /// when the server said there was nothing to do.
    pub async fn send<T>(
        self,
        set: &PetSet,
        ctx: &Context,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<bool, Error> {
        let result = request.await;
        // A write the fence refused never left: the fence counts it.
        if !result.as_ref().is_err_and(|e| crate::error::fenced(e).is_some()) {
            ctx.metrics.write(self.verb, self.resource);
        }
        let related = Some((self.kind, self.name));
        match result {
            Ok(_) => {
                if let Some((reason, note)) = self.done {
                    let (kind, name) = (self.kind.to_string(), self.name.to_string());
                    ctx.done(set, Done { reason, verb: self.verb, kind, name, note });
                }
                Ok(true)
            }
            Err(kube::Error::Api(status)) if self.nothing_to_do.contains(&status.code) => Ok(false),
            Err(e) => {
                if let Some(reason) = self.failed {
                    let note = format!(
                        "{} {} {} in PetSet {} failed error: {}",
                        self.verb,
                        self.kind,
                        self.name,
                        set.name_any(),
                        crate::message(&e)
                    );
                    ctx.event(set, related, EventType::Warning, reason, self.verb, note);
                }
                Err(Error::write(self.verb, self.kind, self.name, e))
            }
        }
    }
}

async fn run(set: &PetSet, action: &Action, ctx: &Context) -> Result<(), Error> {
    let ns = set.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let set_name = set.name_any();
    let patch = PatchParams::default();
    match action {
        Action::AdoptPod { name, uid } => {
            // Adopt only for the set that exists now: the cached one may have been
            // deleted and recreated under the same name.
            let fresh = Api::<PetSet>::namespaced(ctx.client.clone(), &ns).get(&set_name).await?;
            if fresh.uid() != set.uid() || fresh.metadata.deletion_timestamp.is_some() {
                return Ok(());
            }
            let body = json!({"metadata": {"uid": uid, "ownerReferences": [identity::controller_ref(set)]}});
            // A pod replaced (409) or taken by another controller (422) since the plan
            // is not ours: the rest of the plan counted it as a member, so the sync
            // stops here and plans again from what the caches then hold.
            ownership(name, &[404]).send(set, ctx, pods.patch(name, &patch, &Patch::Strategic(&body))).await?;
        }
        Action::ReleasePod { name, uid } => {
            let body = json!({"metadata": {"uid": uid, "ownerReferences": [{"$patch": "delete", "uid": set.uid()}]}});
            ownership(name, &[404, 409, 422])
                .send(set, ctx, pods.patch(name, &patch, &Patch::Strategic(&body)))
                .await?;
        }
        Action::CreateClaim { claim } => {
            let name = claim.name_any();
            if ctx.unseen.pending("PersistentVolumeClaim", &ns, &name) {
                return Ok(());
            }
            // No event: the pod created next in the same step reports it, and an event
            // per claim would be as many writes as the claims themselves.
            let w = Write {
                verb: "create",
                resource: "persistentvolumeclaims",
                kind: "PersistentVolumeClaim",
                name: &name,
                nothing_to_do: &[409],
                done: None,
                failed: Some("FailedCreate"),
            };
            if w.send(set, ctx, claims.create(&PostParams::default(), claim)).await? {
                ctx.unseen.created("PersistentVolumeClaim", &ns, &name);
                ctx.metrics.claims_created.inc();
            }
        }
        Action::CreatePod { pod } => {
            let name = pod.name_any();
            if ctx.unseen.pending("Pod", &ns, &name) {
                return Ok(());
            }
            let claims = claim_names(pod);
            let note = if claims.is_empty() {
                format!("create Pod {name} in PetSet {set_name} successful")
            } else {
                format!("create Pod {name} with Claims {} in PetSet {set_name} successful", claims.join(", "))
            };
            let done = Some(("SuccessfulCreate", note));
            let w = Write {
                verb: "create",
                resource: "pods",
                kind: "Pod",
                name: &name,
                nothing_to_do: &[409],
                done,
                failed: Some("FailedCreate"),
            };
            if w.send(set, ctx, pods.create(&PostParams::default(), pod)).await? {
                ctx.unseen.created("Pod", &ns, &name);
                ctx.metrics.pods_created.inc();
            } else {
                name_taken(set, ctx, &pods, &name).await?;
            }
        }
        Action::DeletePod { name, uid, reason } => {
            let (event, note) = match reason {
                DeleteReason::Failed => {
                    ("RecreatingFailedPod", format!("PetSet {ns}/{set_name} is recreating failed Pod {name}"))
                }
                DeleteReason::Succeeded => {
                    ("RecreatingTerminatedPod", format!("PetSet {ns}/{set_name} is recreating terminated Pod {name}"))
                }
                DeleteReason::ScaleDown => {
                    ("SuccessfulDelete", format!("delete Pod {name} in PetSet {set_name} successful"))
                }
                DeleteReason::Update => {
                    ("UpdatingPod", format!("delete Pod {name} in PetSet {set_name} for the rolling update"))
                }
                DeleteReason::Stuck => (
                    "ReplacingStuckPod",
                    format!(
                        "delete Pod {name} in PetSet {set_name}: at an old revision and not Ready for replaceUnhealthyAfterSeconds"
                    ),
                ),
            };
            let params = DeleteParams {
                preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                ..DeleteParams::default()
            };
            // 404: already gone; 409: the uid precondition failed, it is another pod now.
            let w = Write {
                verb: "delete",
                resource: "pods",
                kind: "Pod",
                name,
                nothing_to_do: &[404, 409],
                done: Some((event, note)),
                failed: Some("FailedDelete"),
            };
            if w.send(set, ctx, pods.delete(name, &params)).await? {
                ctx.metrics.pods_deleted.inc();
            }
        }
        Action::FixPodIdentity { pod } => fix_identity(set, ctx, &pods, pod).await?,
        Action::SetRole { name, role } => {
            let body = json!({"metadata": {"labels": {cluster::ROLE_LABEL: role}}});
            let done =
                Some(("SetRole", format!("label Pod {name} of PetSet {set_name} {}={role}", cluster::ROLE_LABEL)));
            let w = Write {
                verb: "patch",
                resource: "pods",
                kind: "Pod",
                name,
                nothing_to_do: &[404],
                done,
                failed: Some("FailedUpdate"),
            };
            w.send(set, ctx, pods.patch(name, &patch, &Patch::Merge(&body))).await?;
        }
        Action::SetClaimOwners { name, pod, owners } => {
            let body = json!({"metadata": {"ownerReferences": owners}});
            let done =
                Some(("SuccessfulUpdate", format!("update Claim {name} Pod {pod} in PetSet {set_name} success")));
            let w = Write {
                verb: "patch",
                resource: "persistentvolumeclaims",
                kind: "PersistentVolumeClaim",
                name,
                nothing_to_do: &[404],
                done,
                failed: Some("FailedUpdate"),
            };
            w.send(set, ctx, claims.patch(name, &patch, &Patch::Merge(&body))).await?;
        }
    }
    Ok(())
}

/// Rewrites the identity labels of `pod` (as it should be) on the pod of its uid.
async fn fix_identity(set: &PetSet, ctx: &Context, pods: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let name = pod.name_any();
    let labels: serde_json::Map<_, _> =
        identity::IDENTITY_LABELS.iter().map(|k| (k.to_string(), json!(pod.labels().get(*k)))).collect();
    let body = json!({"metadata": {"uid": pod.uid(), "labels": labels}});
    let note = format!("update Pod {name} in PetSet {} successful", set.name_any());
    let w = Write {
        verb: "patch",
        resource: "pods",
        kind: "Pod",
        name: &name,
        nothing_to_do: &[404],
        done: Some(("SuccessfulUpdate", note)),
        failed: Some("FailedUpdate"),
    };
    w.send(set, ctx, pods.patch(&name, &PatchParams::default(), &Patch::Merge(&body))).await?;
    Ok(())
}

/// A member's pod could not be created: a pod of its name exists that the caches do not
/// show as a member. The pod watch selects on an identity label, so a pod of the set
/// (or an orphan it may adopt) that lost one is invisible: it gets them back, as
/// upstream's updateIdentity does, and the set sees it again. A pod that is someone
/// else's is left alone and reported until it goes.
async fn name_taken(set: &PetSet, ctx: &Context, pods: &Api<Pod>, name: &str) -> Result<(), Error> {
    // Gone since: the next sync creates it.
    let Some(existing) = pods.get_opt(name).await? else { return Ok(()) };
    let ordinal = identity::ordinal_of(&set.name_any(), name).unwrap_or_default();
    let matches = Selector::try_from(set.spec.selector.clone()).is_ok_and(|s| s.matches(existing.labels()));
    let adoptable = identity::controller_of(&existing).is_none() && matches;
    if identity::controlled_by(&existing, set) || adoptable {
        if !identity::identity_matches(set, &existing, ordinal) {
            let mut fixed = existing;
            identity::set_identity_labels(set, &mut fixed, ordinal);
            fix_identity(set, ctx, pods, &fixed).await?;
        }
        return Ok(());
    }
    let conflict = Conflict::of(&existing);
    ctx.event(set, Some(("Pod", name)), EventType::Warning, OBJECT_CONFLICT, "Create", conflict.to_string());
    Err(Error::NotOurs(vec![conflict]))
}

/// Adopting or releasing a pod: the `uid` in the patch is a precondition, so the pod
/// may be gone (404), replaced (409) or owned by someone else by now (422).
fn ownership<'a>(name: &'a str, nothing_to_do: &'static [u16]) -> Write<'a> {
    Write { verb: "patch", resource: "pods", kind: "Pod", name, nothing_to_do, done: None, failed: None }
}

/// Runs the revision actions, one after the other.
pub async fn revisions(set: &PetSet, actions: &[RevisionAction], ctx: &Context) -> Result<(), Error> {
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    let patch = PatchParams::default();
    let resource = "controllerrevisions";
    let kind = "ControllerRevision";
    for action in actions {
        match action {
            RevisionAction::Adopt { name, uid } => {
                let body = json!({"metadata": {"uid": uid, "ownerReferences": [identity::controller_ref(set)]}});
                let w = Write {
                    verb: "patch",
                    resource,
                    kind,
                    name,
                    nothing_to_do: &[404, 409, 422],
                    done: None,
                    failed: None,
                };
                w.send(set, ctx, api.patch(name, &patch, &Patch::Merge(&body))).await?;
            }
            RevisionAction::Create(revision) => {
                let name = revision.name_any();
                let w = Write {
                    verb: "create",
                    resource,
                    kind,
                    name: &name,
                    nothing_to_do: &[409],
                    done: None,
                    failed: Some("FailedCreate"),
                };
                w.send(set, ctx, api.create(&PostParams::default(), revision.as_ref())).await?;
            }
            RevisionAction::Renumber { name, revision } => {
                let body = json!({"revision": revision});
                let w = Write { verb: "patch", resource, kind, name, nothing_to_do: &[404], done: None, failed: None };
                w.send(set, ctx, api.patch(name, &patch, &Patch::Merge(&body))).await?;
            }
            RevisionAction::Delete { name, uid } => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                    ..DeleteParams::default()
                };
                let w = Write {
                    verb: "delete",
                    resource,
                    kind,
                    name,
                    nothing_to_do: &[404, 409],
                    done: None,
                    failed: None,
                };
                w.send(set, ctx, api.delete(name, &params)).await?;
            }
        }
    }
    Ok(())
}

/// The claims a pod mounts.
fn claim_names(pod: &Pod) -> Vec<&str> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    volumes.filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.as_str())).collect()
}
