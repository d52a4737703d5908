//! The petset controller. `controller` wires the watches; `reconcile` is one sync
//! (observe -> plan -> act -> status), with `plan` the pure heart; `identity`,
//! `revision` and `health` are the small pure helpers `plan` uses.

mod cache;
pub mod cluster;
pub mod controller;
mod error;
mod events;
pub mod fence;
pub mod health;
pub mod identity;
pub mod lease;
pub mod metrics;
pub mod reconcile;
mod retry;
pub mod revision;
#[cfg(test)]
mod testing;
pub mod throttle;
pub mod time;
mod unseen;

pub use error::{Conflict, Error, message};
