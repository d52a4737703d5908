//! Template revisions: the name a pod template gets in the `controller-revision-hash`
//! label. The hash must depend on nothing but the template and the collision count, so
//! a restarted or upgraded operator never rolls pods whose template did not change.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// Upstream's alphabet for hashes in names: no vowels (no words), no look-alikes.
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `<set>-<hash>`, the way apps/v1 names ControllerRevisions.
pub fn revision_name(set: &str, template: &PodTemplateSpec, collision_count: i32) -> String {
    format!("{set}-{}", template_hash(template, collision_count))
}

/// FNV-1a (32 bits) over the template's JSON and the collision count, written as the
/// decimal digits of the hash mapped onto the safe alphabet (upstream's encoding).
pub fn template_hash(template: &PodTemplateSpec, collision_count: i32) -> String {
    // Serialization of a typed template is deterministic: fields in declaration order,
    // maps sorted, absent optionals left out (so new, unset API fields change nothing).
    let mut bytes = serde_json::to_vec(template).expect("a pod template serializes");
    if collision_count > 0 {
        bytes.extend_from_slice(&collision_count.to_le_bytes());
    }
    let hash = fnv1a32(&bytes);
    hash.to_string().bytes().map(|d| SAFE[d as usize % SAFE.len()] as char).collect()
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| (h ^ *b as u32).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::petset;

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn hash_is_stable_across_operator_versions() {
        // Pinned: a change here would make every running pod look outdated after an
        // operator upgrade and roll every PetSet in the cluster.
        let set = petset("web", 3);
        assert_eq!(revision_name("web", &set.spec.template, 0), "web-6c8ffc4f57");
    }

    #[test]
    fn collisions_and_template_changes_give_new_names() {
        let set = petset("web", 3);
        let base = template_hash(&set.spec.template, 0);
        assert_ne!(base, template_hash(&set.spec.template, 1));
        let mut changed = set.spec.template.clone();
        changed.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        assert_ne!(base, template_hash(&changed, 0));
    }
}
