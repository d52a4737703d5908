//! Leader election through a coordination.k8s.io Lease, as client-go does it, with
//! what the write fence needs: the moment of every successful renewal.
//!
//! Every write of the Lease is a replace with the resourceVersion last read, so two
//! replicas can never both believe their write won. Whether another holder's Lease has
//! expired is judged on this replica's monotonic clock, from when it first saw that
//! holder's record unchanged, never by comparing its wall clock with the holder's
//! `renewTime`. So a standby takes over no sooner than `duration` after the holder
//! sent its last renewal, while the holder stops writing `margin` before that.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::time::{Instant, MissedTickBehavior, interval, interval_at};

use crate::{Error, fence::Fence};

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The last record of another holder and when this replica first saw it.
    observed: Option<(LeaseSpec, Instant)>,
}

impl Elector {
    /// `client` must not share the controller's request budget: a renewal that waits
    /// behind the syncs' writes loses the Lease to a standby with nothing wrong.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            observed: None,
        }
    }

    /// Attempts (and renewals) per lease duration: a few failed ones in a row are
    /// survived.
    fn period(&self) -> Duration {
        self.duration / 5
    }

    /// How long before the standbys may take over this replica stops writing: covers
    /// the time between the fence's check and the request reaching the server.
    fn margin(&self) -> Duration {
        self.duration / 4
    }

    /// Waits until this replica holds the Lease; returns the fence its writes go through.
    pub async fn acquire(&mut self) -> Fence {
        let mut tick = interval(self.period());
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.try_hold().await {
                Ok(Some(sent)) => return Fence::until(sent + self.duration - self.margin()),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "reading or taking the leader Lease"),
            }
        }
    }

    /// Renews the Lease until this replica is no longer sure it holds it; the fence
    /// closes at that moment, before this returns why.
    pub async fn hold(&mut self, fence: &Fence) -> Error {
        let mut tick = interval_at(Instant::now() + self.period(), self.period());
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let lost = loop {
            let renewal = async {
                tick.tick().await;
                // After a pause the tick and the deadline come due together: a renewal
                // sent then would be a write from a replica that may have lost the Lease.
                if fence.allows_writes() { Some(self.try_hold().await) } else { None }
            };
            // A renewal that hangs must not hold the exit back past the deadline.
            let attempt = tokio::select! {
                biased;
                _ = fence.closed() => break Error::LeaseLost("no renewal succeeded before the deadline".into()),
                attempt = renewal => attempt,
            };
            match attempt {
                Some(Ok(Some(sent))) => fence.extend(sent + self.duration - self.margin()),
                Some(Ok(None)) => break Error::LeaseLost("another replica wrote it".into()),
                Some(Err(error)) => tracing::warn!(%error, "renewing the leader Lease"),
                None => {}
            }
        };
        fence.close();
        lost
    }

    /// Hands the Lease over at a clean shutdown, so a standby need not wait for it to
    /// expire. The caller has closed the fence: nothing is written after this.
    pub async fn release(&self) -> Result<(), Error> {
        let mut lease = self.api.get(&self.name).await.map_err(Error::Lease)?;
        let Some(spec) = lease.spec.as_mut().filter(|s| s.holder_identity.as_deref() == Some(&self.identity)) else {
            return Ok(());
        };
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        self.api.replace(&self.name, &PostParams::default(), &lease).await.map_err(Error::Lease)?;
        Ok(())
    }

    /// One attempt to take or renew the Lease. `Some(when the winning request was
    /// sent)` if this replica holds it now, `None` if another replica does.
    async fn try_hold(&mut self) -> Result<Option<Instant>, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(self.record(None)),
            };
            let sent = Instant::now();
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Some(sent)),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.take().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(&self.identity);
        if !ours && !self.expired(&spec) {
            return Ok(None);
        }
        lease.spec = Some(self.record(Some(&spec)));
        let sent = Instant::now();
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(Some(sent)),
            // Someone wrote the Lease since it was read: read it again next time.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Whether another holder's record may be taken over: nobody holds it, or it has
    /// not changed for its holder's lease duration as this replica has watched it.
    fn expired(&mut self, spec: &LeaseSpec) -> bool {
        let now = Instant::now();
        if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
            return true;
        }
        let first_seen = match &self.observed {
            Some((seen, at)) if seen == spec => *at,
            _ => {
                self.observed = Some((spec.clone(), now));
                now
            }
        };
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(1).unsigned_abs().into());
        now >= first_seen + duration
    }

    /// The record this replica writes: a renewal keeps `acquireTime`, a takeover counts
    /// one more transition.
    fn record(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let renewal = previous.filter(|p| p.holder_identity.as_deref() == Some(&self.identity));
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().try_into().unwrap_or(i32::MAX)),
            acquire_time: renewal.and_then(|p| p.acquire_time.clone()).or_else(|| Some(now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(if renewal.is_some() || previous.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }
    }
}
