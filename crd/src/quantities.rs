//! Resource quantities written as YAML numbers (`cpu: 0.25`, `memory: 1e9`).
//!
//! apps/v1 accepts them: Go's `resource.Quantity` decodes a JSON number. A CRD cannot say
//! "a number or a string": `x-kubernetes-int-or-string` refuses `0.25`, and the API
//! server cannot type a CEL rule on a field without a type, so in the pod and claim
//! templates a quantity's schema accepts any value. Decoding turns a number into its
//! decimal text, which the API server canonicalises on the pods and claims exactly as it
//! does a StatefulSet's, and names the field of anything that is not a number or a
//! string (the PetSet is then reported as undecodable, with that message).

use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::{Value, json};

/// Fields of a pod or claim spec that map resource names to quantities.
const QUANTITY_MAPS: [&str; 3] = ["limits", "requests", "overhead"];
/// Fields of a pod spec that hold one quantity (an emptyDir's size, a resource
/// field reference's divisor).
const QUANTITIES: [&str; 2] = ["sizeLimit", "divisor"];

/// `spec.template`, with numeric quantities read as their text.
pub(crate) fn template<'de, D: Deserializer<'de>, T: DeserializeOwned>(deserializer: D) -> Result<T, D::Error> {
    decode(deserializer, "spec.template")
}

/// `spec.volumeClaimTemplates`, with numeric quantities read as their text.
pub(crate) fn claim_templates<'de, D: Deserializer<'de>, T: DeserializeOwned>(deserializer: D) -> Result<T, D::Error> {
    decode(deserializer, "spec.volumeClaimTemplates")
}

fn decode<'de, D: Deserializer<'de>, T: DeserializeOwned>(deserializer: D, path: &str) -> Result<T, D::Error> {
    let mut value = Value::deserialize(deserializer)?;
    stringify(&mut value, path).map_err(serde::de::Error::custom)?;
    // Decoded apart from the object around it, so the field an error is at is named
    // here, in full, for whoever must fix the object.
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let at = match inner.as_str() {
            "." => path.to_string(),
            index if index.starts_with('[') => format!("{path}{index}"),
            field => format!("{path}.{field}"),
        };
        serde::de::Error::custom(format!("{at}: {}", e.inner()))
    })
}

fn stringify(node: &mut Value, path: &str) -> Result<(), String> {
    match node {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let here = format!("{path}.{key}");
                if QUANTITY_MAPS.contains(&key.as_str()) {
                    if let Value::Object(quantities) = child {
                        for (resource, quantity) in quantities.iter_mut() {
                            to_text(quantity, &format!("{here}[{resource}]"))?;
                        }
                        continue;
                    }
                } else if QUANTITIES.contains(&key.as_str()) {
                    to_text(child, &here)?;
                    continue;
                }
                stringify(child, &here)?;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                stringify(item, &format!("{path}[{i}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn to_text(quantity: &mut Value, path: &str) -> Result<(), String> {
    match quantity {
        Value::Number(n) => *quantity = Value::String(n.to_string()),
        Value::String(_) | Value::Null => {}
        other => return Err(format!("{path} must be a quantity such as '500m', 0.5 or '2Gi', not {other}")),
    }
    Ok(())
}

/// A resource quantity written as a string, as Kubernetes parses one ("500m", "1Gi",
/// "1e3"). apps/v1 refuses a StatefulSet whose template holds "abc" for a quantity;
/// the pattern refuses it at admission too (it applies to strings only).
const QUANTITY: &str =
    r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+))?$";

/// Rewrites, in a template's schema, every quantity (an `x-kubernetes-int-or-string`
/// under one of the fields above) into a field that also takes a fractional number.
pub(crate) fn widen_schema(node: &mut Value) {
    let Value::Object(map) = node else { return };
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        for (key, child) in props.iter_mut() {
            if QUANTITY_MAPS.contains(&key.as_str()) && is_int_or_string(&child["additionalProperties"]) {
                child["additionalProperties"] = quantity_schema();
            } else if QUANTITIES.contains(&key.as_str()) && is_int_or_string(child) {
                *child = quantity_schema();
            }
        }
    }
    for child in map.values_mut() {
        match child {
            Value::Array(items) => items.iter_mut().for_each(widen_schema),
            other => widen_schema(other),
        }
    }
}

fn quantity_schema() -> Value {
    json!({"x-kubernetes-preserve-unknown-fields": true, "pattern": QUANTITY})
}

fn is_int_or_string(schema: &Value) -> bool {
    schema["x-kubernetes-int-or-string"] == json!(true)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PodTemplateSpec};

    use super::*;

    #[test]
    fn numbers_become_the_text_of_the_number() {
        let template = json!({"spec": {
            "containers": [{"name": "c", "resources": {"requests": {"cpu": 0.25, "memory": "1Gi"}, "limits": {"cpu": 2}}}],
            "overhead": {"cpu": 0.1},
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": 1e9}}],
        }});
        let t: PodTemplateSpec = super::template(template).unwrap();
        let spec = t.spec.unwrap();
        let resources = spec.containers[0].resources.clone().unwrap();
        assert_eq!(resources.requests.unwrap()["cpu"].0, "0.25");
        assert_eq!(resources.limits.unwrap()["cpu"].0, "2");
        assert_eq!(spec.overhead.unwrap()["cpu"].0, "0.1");
        let size = spec.volumes.unwrap()[0].empty_dir.clone().unwrap().size_limit.unwrap();
        assert_eq!(size.0, "1000000000.0");
    }

    #[test]
    fn claim_requests_too() {
        let claim = json!({"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": 1073741824}}}});
        let c: PersistentVolumeClaim = super::template(claim).unwrap();
        assert_eq!(c.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0, "1073741824");
    }

    #[test]
    fn other_numbers_stay_numbers() {
        // A port is an int-or-string, not a quantity: 8080 must not become "8080".
        let template = json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"port": 8080}}}]}});
        let t: PodTemplateSpec = super::template(template).unwrap();
        let probe = t.spec.unwrap().containers[0].readiness_probe.clone().unwrap();
        assert_eq!(probe.http_get.unwrap().port, k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080));
    }

    #[test]
    fn what_is_no_quantity_is_named() {
        let claims = json!([{"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": [1]}}}}]);
        let error = claim_templates::<_, Vec<PersistentVolumeClaim>>(claims).unwrap_err().to_string();
        assert_eq!(
            error,
            "spec.volumeClaimTemplates[0].spec.resources.requests[storage] must be a quantity such as '500m', 0.5 or '2Gi', not [1]"
        );
    }

    #[test]
    fn other_errors_name_their_field_in_full() {
        let template = json!({"metadata": {"creationTimestamp": "9999-12-31T00:00:00Z"}});
        let error = super::template::<_, PodTemplateSpec>(template).unwrap_err().to_string();
        assert!(error.starts_with("spec.template.metadata.creationTimestamp: "), "{error}");
        let claims = json!([{"metadata": {"name": "data"}, "spec": {"accessModes": 5}}]);
        let error = claim_templates::<_, Vec<PersistentVolumeClaim>>(claims).unwrap_err().to_string();
        assert!(error.starts_with("spec.volumeClaimTemplates[0].spec.accessModes: "), "{error}");
    }
}
