//! What a pod's status means to a StatefulSet: the predicates upstream's controller
//! uses (isRunningAndReady, isRunningAndAvailable, isTerminating, ...).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Failed or Succeeded: the pod will not run again and is replaced.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Failed" | "Succeeded")
}

pub fn is_pending(pod: &Pod) -> bool {
    phase(pod) == "Pending"
}

/// When the pod's Ready condition last became True, if it is True now.
fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let ready = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| ready.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && ready_since(pod).is_some()
}

/// How long until a Ready pod counts as Available: zero when it already does, None when
/// it is not Running and Ready at all.
pub fn until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    if phase(pod) != "Running" {
        return None;
    }
    let since = ready_since(pod)?;
    if min_ready_seconds <= 0 {
        return Some(Duration::ZERO);
    }
    // A Ready condition with no transition time cannot be timed; count it as Available
    // rather than hold the set forever.
    let Some(since) = since else { return Some(Duration::ZERO) };
    Some(crate::time::until(crate::time::after(since, crate::time::seconds(min_ready_seconds)), now))
}

pub fn is_running_and_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    until_available(pod, min_ready_seconds, now) == Some(Duration::ZERO)
}

/// Since when a pod that is not Ready has been so: the Ready condition's last
/// transition, or the pod's creation when it never had one. None when it is Ready.
pub fn not_ready_since(pod: &Pod) -> Option<Timestamp> {
    if is_running_and_ready(pod) {
        return None;
    }
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let ready =
        pod.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    ready.and_then(|c| c.last_transition_time.as_ref().map(|t| t.0)).or(created).or(Some(Timestamp::UNIX_EPOCH))
}

/// Running, Ready and not being deleted.
pub fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, pod_with};

    #[test]
    fn availability_waits_min_ready_seconds_after_ready() {
        let pod = pod_with("web-0", "Running", true, Some(at(100)));
        assert_eq!(until_available(&pod, 10, at(105)), Some(Duration::from_secs(5)));
        assert_eq!(until_available(&pod, 10, at(110)), Some(Duration::ZERO));
        assert!(is_running_and_available(&pod, 0, at(100)));
        let late = pod_with("web-0", "Running", true, Some("9999-12-30T00:00:00Z".parse().unwrap()));
        assert!(until_available(&late, i32::MAX, at(100)).is_some(), "no overflow at the end of time");
        let pending = pod_with("web-0", "Pending", false, None);
        assert_eq!(until_available(&pending, 10, at(200)), None);
    }
}
