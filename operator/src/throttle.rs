//! A client-side request budget (queries per second with a burst), as client-go's
//! `--kube-api-qps` and `--kube-api-burst`: kube has none. Every request through the
//! client waits for a token first, so a large burst of syncs cannot flood the API
//! server. Tokens go to requests in the order they came, as client-go's token bucket
//! gives them: governor alone lets a late waiter overtake, and under a small budget
//! one set's next pod could wait behind other sets' requests for a minute and more.
//! Budgets kept per PetSet (events, status writes) are keyed limiters, pruned here.

use std::{
    hash::Hash,
    num::NonZeroU32,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use governor::{
    DefaultDirectRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::keyed::DefaultKeyedStateStore,
};
use tokio::sync::Mutex;
use tower::{Layer, Service};

#[derive(Clone)]
pub struct ThrottleLayer {
    limiter: Arc<DefaultDirectRateLimiter>,
    /// The line of requests waiting for a token: tokio's Mutex is first come, first served.
    queue: Arc<Mutex<()>>,
}

impl ThrottleLayer {
    /// `qps` requests per second on average, up to `burst` at once.
    pub fn new(qps: NonZeroU32, burst: NonZeroU32) -> Self {
        let limiter = Arc::new(RateLimiter::direct(Quota::per_second(qps).allow_burst(burst)));
        ThrottleLayer { limiter, queue: Arc::default() }
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Throttle<S> {
        Throttle { inner, limiter: self.limiter.clone(), queue: self.queue.clone() }
    }
}

pub struct Throttle<S> {
    inner: S,
    limiter: Arc<DefaultDirectRateLimiter>,
    queue: Arc<Mutex<()>>,
}

impl<S, R> Service<R> for Throttle<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let (limiter, queue) = (self.limiter.clone(), self.queue.clone());
        // The client's response future does nothing until polled: waiting for the
        // token before polling it holds the request back.
        let response = self.inner.call(request);
        Box::pin(async move {
            {
                let _turn = queue.lock().await;
                limiter.until_ready().await;
            }
            response.await
        })
    }
}

/// A limiter per key on `clock`: a bucket of tokens for each key seen.
pub type Keyed<K, C = DefaultClock> =
    RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Drops the buckets of keys not used lately (a bucket full again is one that would be
/// made afresh): one per PetSet ever synced would otherwise stay for the life of the
/// process, as sets come and go.
pub fn prune<K: Hash + Eq + Clone, C: Clock>(limiter: &Keyed<K, C>) {
    limiter.retain_recent();
    limiter.shrink_to_fit();
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;

    /// Records the order in which requests reach the server: when their future is
    /// first polled, as a real client's sends then.
    #[derive(Clone, Default)]
    struct Recorder(Arc<StdMutex<Vec<u32>>>);

    impl Service<u32> for Recorder {
        type Response = ();
        type Error = ();
        type Future = BoxFuture<'static, Result<(), ()>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: u32) -> Self::Future {
            let log = self.0.clone();
            Box::pin(async move {
                log.lock().unwrap().push(request);
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn requests_get_their_tokens_in_the_order_they_came() {
        let layer = ThrottleLayer::new(NonZeroU32::new(200).unwrap(), NonZeroU32::new(1).unwrap());
        let server = Recorder::default();
        let mut client = layer.layer(server.clone());
        let waiting: Vec<_> = (0..20).map(|i| client.call(i)).collect();
        let handles: Vec<_> = waiting.into_iter().map(tokio::spawn).collect();
        for handle in handles {
            handle.await.unwrap().unwrap();
        }
        assert_eq!(*server.0.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }
}
