//! Decoding that skips what it cannot decode.
//!
//! kube decodes a whole list, or a whole watch line, in one go: a single object the API
//! server accepted but `K` cannot represent (a timestamp past jiff's range, say) fails
//! the list, and the cache of every namespace never fills. [`Lenient`] decodes each
//! object on its own and keeps, for one that fails, what identifies it.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Resource, api::ObjectMeta, runtime::watcher::Event};
use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::{Value, value::RawValue};

/// `K`, or what is known of an object that does not decode as one.
#[derive(Clone, Debug)]
pub enum Lenient<K> {
    Decoded(K),
    Undecodable(Box<Undecodable>),
}

/// An object that does not decode: the metadata read from it leniently (enough to
/// name it, report it and forget it) and why it failed.
#[derive(Clone, Debug)]
pub struct Undecodable {
    pub meta: ObjectMeta,
    pub error: String,
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only the extent of the object is scanned here, and its bytes copied once: a
        // good object (all but a few of thousands of pods) is then decoded as before.
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(match serde_json::from_str(raw.get()) {
            Ok(object) => Lenient::Decoded(object),
            Err(error) => Lenient::Undecodable(Box::new(Undecodable::read::<K>(raw.get(), &error))),
        })
    }
}

impl Undecodable {
    /// Reads each field on its own, so the one that failed `K` cannot hide the others.
    fn read<K: DeserializeOwned>(raw: &str, error: &serde_json::Error) -> Self {
        let object: Value = serde_json::from_str(raw).unwrap_or_default();
        let meta = ObjectMeta {
            name: field(&object, "/metadata/name"),
            namespace: field(&object, "/metadata/namespace"),
            uid: field(&object, "/metadata/uid"),
            // The watcher resumes from the last object's version: without it, it relists.
            resource_version: field(&object, "/metadata/resourceVersion"),
            // What the wake-ups map a vanished pod or claim to its PetSet by.
            labels: field(&object, "/metadata/labels"),
            owner_references: field(&object, "/metadata/ownerReferences"),
            ..ObjectMeta::default()
        };
        Undecodable { meta, error: at_field::<K>(raw).unwrap_or_else(|| error.to_string()) }
    }
}

/// The error again, with the field it is at (`spec.template.metadata.creationTimestamp:
/// ...`), for whoever must fix the object: decoding once more costs nothing next to
/// an object nobody can use until then.
fn at_field<K: DeserializeOwned>(raw: &str) -> Option<String> {
    let error = serde_path_to_error::deserialize::<_, K>(&mut serde_json::Deserializer::from_str(raw)).err()?;
    let (path, inner) = (error.path().to_string(), error.inner().to_string());
    // A field decoded on its own (a template) names the field itself, in full.
    Some(if inner.starts_with(&path) { inner } else { format!("{path}: {inner}") })
}

/// The watch's event with what does not decode reported (through `report`, given the
/// object and the error) and taken out. A list leaves such an object out; a change that
/// makes one undecodable deletes it from the cache, so no sync acts on the spec it had.
pub fn decoded<K>(event: Event<Lenient<K>>, report: &impl Fn(&ObjectReference, &str)) -> Option<Event<K>>
where
    K: Resource + Default,
    K::DynamicType: Default,
{
    // Only its metadata: all the store needs to delete it and the wake-ups to map it.
    let forget = |bad: Box<Undecodable>, reported: bool| {
        let mut object = K::default();
        *object.meta_mut() = bad.meta;
        if reported {
            report(&object.object_ref(&K::DynamicType::default()), &bad.error);
        }
        object
    };
    Some(match event {
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
        Event::InitApply(Lenient::Decoded(object)) => Event::InitApply(object),
        Event::Apply(Lenient::Decoded(object)) => Event::Apply(object),
        Event::Delete(Lenient::Decoded(object)) => Event::Delete(object),
        Event::InitApply(Lenient::Undecodable(bad)) => {
            forget(bad, true);
            return None;
        }
        Event::Apply(Lenient::Undecodable(bad)) => Event::Delete(forget(bad, true)),
        Event::Delete(Lenient::Undecodable(bad)) => Event::Delete(forget(bad, false)),
    })
}

fn field<T: DeserializeOwned>(object: &Value, pointer: &str) -> Option<T> {
    object.pointer(pointer).and_then(|v| T::deserialize(v).ok())
}

impl<K: Resource> Resource for Lenient<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Lenient::Decoded(object) => object.meta(),
            Lenient::Undecodable(bad) => &bad.meta,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Lenient::Decoded(object) => object.meta_mut(),
            Lenient::Undecodable(bad) => &mut bad.meta,
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use kube::{
        ResourceExt,
        core::{ObjectList, WatchEvent},
    };
    use petset_crd::PetSet;

    use super::*;

    fn pod(name: &str, created: &str) -> String {
        format!(
            r#"{{"metadata": {{"name": "{name}", "namespace": "a", "uid": "u-{name}", "resourceVersion": "7",
                "creationTimestamp": "{created}", "labels": {{"app": "web"}},
                "ownerReferences": [{{"apiVersion": "petset.dev/v1alpha1", "kind": "PetSet", "name": "web",
                                      "uid": "u-web", "controller": true}}]}},
               "spec": {{"containers": [{{"name": "nginx"}}]}}}}"#
        )
    }

    #[test]
    fn a_list_keeps_its_good_objects_and_names_the_bad_one() {
        let list = format!(
            r#"{{"apiVersion": "v1", "kind": "PodList", "metadata": {{"resourceVersion": "9"}},
                "items": [{}, {}]}}"#,
            pod("good", "2026-01-01T00:00:00Z"),
            pod("bad", "9999-12-31T00:00:00Z"),
        );
        let list: ObjectList<Lenient<Pod>> = serde_json::from_str(&list).unwrap();
        assert_eq!(list.metadata.resource_version.as_deref(), Some("9"));
        let Lenient::Decoded(good) = &list.items[0] else { panic!("the good pod did not decode: {:?}", list.items[0]) };
        assert_eq!(good.spec.as_ref().unwrap().containers[0].name, "nginx");
        let Lenient::Undecodable(bad) = &list.items[1] else { panic!("the bad pod decoded") };
        assert!(bad.error.contains("timestamp"), "{}", bad.error);
        assert_eq!(bad.meta.name.as_deref(), Some("bad"));
        assert_eq!(bad.meta.namespace.as_deref(), Some("a"));
        assert_eq!(bad.meta.uid.as_deref(), Some("u-bad"));
        assert_eq!(bad.meta.resource_version.as_deref(), Some("7"));
        assert_eq!(bad.meta.labels.as_ref().unwrap()["app"], "web");
        assert_eq!(bad.meta.owner_references.as_ref().unwrap()[0].name, "web");
        let reference = list.items[1].object_ref(&());
        assert_eq!((reference.kind.as_deref(), reference.api_version.as_deref()), (Some("Pod"), Some("v1")));
    }

    #[test]
    fn a_watch_line_with_a_bad_object_decodes() {
        let line = format!(r#"{{"type": "MODIFIED", "object": {}}}"#, pod("bad", "9999-12-31T00:00:00Z"));
        let event: WatchEvent<Lenient<Pod>> = serde_json::from_str(&line).unwrap();
        let WatchEvent::Modified(Lenient::Undecodable(bad)) = event else { panic!("{event:?}") };
        assert_eq!(bad.meta.name.as_deref(), Some("bad"));
    }

    #[test]
    fn a_petset_whose_template_cannot_be_decoded_is_named() {
        let set = r#"{"apiVersion": "petset.dev/v1alpha1", "kind": "PetSet",
            "metadata": {"name": "far", "namespace": "x", "resourceVersion": "3"},
            "spec": {"selector": {"matchLabels": {"app": "far"}},
                     "template": {"metadata": {"creationTimestamp": "9999-12-31T00:00:00Z"}}}}"#;
        let Lenient::Undecodable(bad) = serde_json::from_str::<Lenient<PetSet>>(set).unwrap() else {
            panic!("decoded")
        };
        assert_eq!(bad.meta.name.as_deref(), Some("far"));
        assert!(bad.error.starts_with("spec.template.metadata.creationTimestamp: "), "{}", bad.error);
        assert_eq!(Lenient::<PetSet>::kind(&()), "PetSet");
        assert_eq!(Lenient::<PetSet>::plural(&()), "petsets");
    }

    #[test]
    fn what_does_not_decode_is_reported_and_left_out_or_deleted() {
        let bad = || serde_json::from_str::<Lenient<Pod>>(&pod("bad", "9999-12-31T00:00:00Z")).unwrap();
        let good = serde_json::from_str::<Lenient<Pod>>(&pod("good", "2026-01-01T00:00:00Z")).unwrap();
        let reports = std::cell::RefCell::new(Vec::new());
        let report = |o: &ObjectReference, error: &str| {
            reports.borrow_mut().push((o.kind.clone(), o.namespace.clone(), o.name.clone(), o.uid.clone(), error.len()))
        };
        assert!(
            matches!(decoded(Event::InitApply(good), &report), Some(Event::InitApply(p)) if p.name_any() == "good")
        );
        assert!(reports.borrow().is_empty());
        assert!(decoded(Event::InitApply(bad()), &report).is_none());
        let Some(Event::Delete(gone)) = decoded(Event::Apply(bad()), &report) else { panic!("not a delete") };
        assert_eq!((gone.name_any(), gone.namespace()), ("bad".to_string(), Some("a".to_string())));
        assert_eq!(gone.owner_references()[0].name, "web");
        assert!(matches!(decoded(Event::Delete(bad()), &report), Some(Event::Delete(_))));
        let seen = reports.borrow();
        assert_eq!(seen.len(), 2, "a deleted object is not reported: {seen:?}");
        let named = (Some("Pod".into()), Some("a".into()), Some("bad".into()), Some("u-bad".into()));
        assert_eq!((seen[0].0.clone(), seen[0].1.clone(), seen[0].2.clone(), seen[0].3.clone()), named);
        assert!(seen[0].4 > 0);
    }

    #[test]
    fn what_is_not_an_object_is_undecodable_and_nameless() {
        let Lenient::Undecodable(bad) = serde_json::from_str::<Lenient<Pod>>("[1]").unwrap() else { panic!() };
        assert_eq!(bad.meta, ObjectMeta::default());
    }
}
