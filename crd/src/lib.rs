//! The PetSet API (`petset.dev/v1alpha1`): the types, their defaults, and the
//! CustomResourceDefinition with its admission rules. No client and no runtime, so
//! anything may depend on it.

mod quantities;
mod schema;
mod types;

pub use schema::{MAX_NAME_LEN, crd, crd_yaml};
pub use types::*;
