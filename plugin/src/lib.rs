//! `kubectl-petset`: what `kubectl get/describe/rollout` give a StatefulSet, for a
//! PetSet. `status` gathers a set's state into a [`status::Snapshot`] and renders it;
//! `rollout` has kubectl's rollout commands. Gathering talks to the API server;
//! rendering and the rollout verdicts are pure functions, tested without one.

pub mod migrate;
pub mod rollout;
pub mod status;
mod table;

/// How `kubectl` names the resource in its messages.
pub fn resource_name(name: &str) -> String {
    format!("petset.petset.dev/{name}")
}

/// Age as kubectl shows it: the largest unit, e.g. `45s`, `12m`, `3h`, `9d`.
pub fn age(since: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let seconds = now.as_second().saturating_sub(since.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectls() {
        let now: jiff::Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let ago = |s: i64| jiff::Timestamp::from_second(now.as_second() - s).unwrap();
        assert_eq!(age(ago(5), now), "5s");
        assert_eq!(age(ago(600), now), "10m");
        assert_eq!(age(ago(3 * 3600), now), "3h");
        assert_eq!(age(ago(9 * 86400), now), "9d");
        // A clock skewed into the future is no negative age.
        assert_eq!(age(ago(-30), now), "0s");
    }
}
