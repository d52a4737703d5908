//! What a sync reports in events: its writes summed up per reason and kind, within a
//! budget per PetSet and, for warnings, per reason.

use std::num::NonZeroU32;

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};
use kube::runtime::events::EventType;

use crate::throttle::{Keyed, prune};

/// A write a sync made, to be reported in an event when the sync ends.
pub struct Done {
    pub reason: &'static str,
    pub verb: &'static str,
    pub kind: String,
    pub name: String,
    pub note: String,
}

/// An event to publish: the (kind, name) of the object if there is only one, reason,
/// action, note.
pub type Summary = (Option<(String, String)>, &'static str, &'static str, String);

/// One event per reason and kind.
pub fn summarize(done: Vec<Done>, set: &str) -> Vec<Summary> {
    let mut groups: Vec<Vec<Done>> = Vec::new();
    for d in done {
        match groups.iter_mut().find(|g| g[0].reason == d.reason && g[0].kind == d.kind) {
            Some(group) => group.push(d),
            None => groups.push(vec![d]),
        }
    }
    groups
        .into_iter()
        .map(|mut group| {
            if group.len() == 1 {
                let d = group.remove(0);
                return (Some((d.kind, d.name)), d.reason, d.verb, d.note);
            }
            let names: Vec<&str> = group.iter().map(|d| d.name.as_str()).collect();
            let first = &group[0];
            let note = format!("{} {}s {} in PetSet {set} successful", first.verb, first.kind, names.join(", "));
            (None, first.reason, first.verb, note)
        })
        .collect()
}

/// The events a PetSet may still publish: a burst of 25, then one per 5 minutes, as
/// client-go's event correlator gives each object (its spam filter). Normal events share
/// one budget per set: without it they are a write per pod created or replaced, as many
/// as the pods themselves. Warnings have a budget per set and reason, so one failure
/// repeated at every sync (a pod the API server refuses) cannot drown out another, nor
/// write an event per sync for as long as it lasts. Repeats within the budget are folded
/// by kube's Recorder into one Event whose `series.count` counts them.
pub struct EventBudget<C: Clock = DefaultClock> {
    normal: Keyed<String, C>,
    warnings: Keyed<(String, String), C>,
}

impl Default for EventBudget {
    fn default() -> Self {
        EventBudget::with_clock(DefaultClock::default())
    }
}

impl<C: Clock + Clone> EventBudget<C> {
    pub fn with_clock(clock: C) -> Self {
        const BURST: NonZeroU32 = NonZeroU32::new(25).unwrap();
        const ONE_PER_FIVE_MINUTES: NonZeroU32 = NonZeroU32::new(12).unwrap();
        let quota = Quota::per_hour(ONE_PER_FIVE_MINUTES).allow_burst(BURST);
        EventBudget {
            normal: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
            warnings: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock),
        }
    }

    /// Whether the set with uid `set` may publish an event of this type and reason now;
    /// if so, it is counted.
    pub fn allows(&self, set: &str, type_: EventType, reason: &str) -> bool {
        match type_ {
            EventType::Normal => self.normal.check_key(&set.to_string()).is_ok(),
            EventType::Warning => self.warnings.check_key(&(set.to_string(), reason.to_string())).is_ok(),
        }
    }

    pub fn prune(&self) {
        prune(&self.normal);
        prune(&self.warnings);
    }

    /// The keys held now, for the tests of pruning.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.normal.len() + self.warnings.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn done(reason: &'static str, kind: &str, name: &str) -> Done {
        let note = format!("{reason} {name}");
        Done { reason, verb: "create", kind: kind.into(), name: name.into(), note }
    }

    #[test]
    fn a_syncs_writes_of_one_reason_and_kind_share_an_event() {
        let events = summarize(
            vec![
                done("SuccessfulCreate", "Pod", "web-0"),
                done("SuccessfulCreate", "Pod", "web-1"),
                done("SuccessfulDelete", "Pod", "web-5"),
                done("SuccessfulCreate", "Pod", "web-2"),
            ],
            "web",
        );
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].0, None);
        assert_eq!(events[0].3, "create Pods web-0, web-1, web-2 in PetSet web successful");
        assert_eq!(events[1].0, Some(("Pod".into(), "web-5".into())));
        assert_eq!(events[1].3, "SuccessfulDelete web-5");
        assert!(summarize(Vec::new(), "web").is_empty());
    }

    #[test]
    fn a_warning_repeated_at_every_sync_is_published_25_times_then_once_per_five_minutes() {
        let clock = FakeRelativeClock::default();
        let budget = EventBudget::with_clock(clock.clone());
        let published = |n| (0..n).filter(|_| budget.allows("uid-a", EventType::Warning, "FailedCreate")).count();
        assert_eq!(published(100), 25);
        // Another reason, another set, and the set's Normal events have budgets of their own.
        assert!(budget.allows("uid-a", EventType::Warning, "FailedDelete"));
        assert!(budget.allows("uid-b", EventType::Warning, "FailedCreate"));
        assert!(budget.allows("uid-a", EventType::Normal, "SuccessfulCreate"));

        clock.advance(Duration::from_secs(299));
        assert_eq!(published(10), 0);
        clock.advance(Duration::from_secs(1));
        assert_eq!(published(10), 1);
        clock.advance(Duration::from_secs(3600));
        assert_eq!(published(100), 12);
    }

    #[test]
    fn the_budgets_of_sets_not_heard_from_lately_are_dropped() {
        let clock = FakeRelativeClock::default();
        let budget = EventBudget::with_clock(clock.clone());
        for i in 0..100_000 {
            let set = format!("uid-{i}");
            budget.allows(&set, EventType::Normal, "SuccessfulCreate");
            budget.allows(&set, EventType::Warning, "FailedCreate");
        }
        assert_eq!(budget.len(), 200_000);
        budget.prune();
        assert_eq!(budget.len(), 200_000, "pruned budgets still in use");

        // A bucket used once is full again after 5 minutes, and dropped once it has been
        // full for as long again.
        clock.advance(Duration::from_secs(601));
        budget.allows("uid-7", EventType::Warning, "FailedCreate");
        budget.prune();
        assert_eq!(budget.len(), 1, "only the budget used just now is kept");
        // Dropped means fresh, not forgotten as spent: a set back later has its burst.
        assert!((0..25).all(|_| budget.allows("uid-8", EventType::Warning, "FailedCreate")));
    }
}
