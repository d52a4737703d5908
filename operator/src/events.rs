//! What a sync reports in events: its writes summed up per reason and kind, within a
//! budget per PetSet.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

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

/// Normal events per PetSet: a burst of 25, then one per 5 minutes; client-go's event
/// correlator gives each StatefulSet the same. Without it, events are a write per pod
/// created or replaced, as many as the pods and claims themselves; warnings always go out.
pub fn event_budget() -> DefaultKeyedRateLimiter<String> {
    const BURST: NonZeroU32 = NonZeroU32::new(25).unwrap();
    const ONE_PER_FIVE_MINUTES: NonZeroU32 = NonZeroU32::new(12).unwrap();
    RateLimiter::keyed(Quota::per_hour(ONE_PER_FIVE_MINUTES).allow_burst(BURST))
}

#[cfg(test)]
mod tests {
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
}
