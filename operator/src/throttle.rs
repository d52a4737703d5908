//! A client-side request budget (queries per second with a burst), as client-go's
//! `--kube-api-qps` and `--kube-api-burst`: kube has none. Every request through the
//! client waits for a token first, so a large burst of syncs cannot flood the API
//! server.

use std::{
    num::NonZeroU32,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tower::{Layer, Service};

#[derive(Clone)]
pub struct ThrottleLayer {
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl ThrottleLayer {
    /// `qps` requests per second on average, up to `burst` at once.
    pub fn new(qps: NonZeroU32, burst: NonZeroU32) -> Self {
        ThrottleLayer { limiter: Arc::new(RateLimiter::direct(Quota::per_second(qps).allow_burst(burst))) }
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Throttle<S> {
        Throttle { inner, limiter: self.limiter.clone() }
    }
}

pub struct Throttle<S> {
    inner: S,
    limiter: Arc<DefaultDirectRateLimiter>,
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
        let limiter = self.limiter.clone();
        // The client's response future does nothing until polled: waiting for the
        // token before polling it holds the request back.
        let response = self.inner.call(request);
        Box::pin(async move {
            limiter.until_ready().await;
            response.await
        })
    }
}
