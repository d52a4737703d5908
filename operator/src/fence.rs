//! The write fence: one writer under leader election. The Lease only says who may
//! write; nothing on the API server stops a leader that was paused (a stopped process,
//! a long GC pause, a partitioned node) from sending the writes it had queued after a
//! standby took over. So the leader refuses its own writes from the moment it is not
//! sure it still holds the Lease: when it sees the Lease lost, or when its own deadline
//! (measured on the monotonic clock from its last successful renewal) passes, whether
//! or not any task has noticed yet. Reads and watches go through: they harm no one.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use http::{Method, Request};
use prometheus_client::metrics::counter::Counter;
use tokio::{sync::watch, time::Instant};
use tower::{BoxError, Layer, Service};

use crate::Error;

/// Until when this replica may write. Once closed (lost, or its deadline passed), it
/// stays closed: the process then exits and comes back as a fresh standby.
#[derive(Clone)]
pub struct Fence {
    /// `Some(deadline)`: writes allowed before it; `None`: closed for good.
    until: Arc<watch::Sender<Option<Instant>>>,
}

impl Fence {
    /// A fence open until `deadline`.
    pub fn until(deadline: Instant) -> Self {
        Fence { until: Arc::new(watch::Sender::new(Some(deadline))) }
    }

    /// Whether a write may be sent now.
    pub fn allows_writes(&self) -> bool {
        self.until.borrow().is_some_and(|deadline| Instant::now() < deadline)
    }

    /// Moves the deadline to `deadline` after a renewal, unless the fence has already
    /// closed: a renewal that comes back after the deadline passed cannot undo the
    /// moment when another replica may have started to write.
    pub fn extend(&self, deadline: Instant) {
        self.until.send_if_modified(|until| match until {
            Some(current) if Instant::now() < *current => {
                *current = deadline.max(*current);
                true
            }
            Some(_) => {
                *until = None;
                true
            }
            None => false,
        });
    }

    pub fn close(&self) {
        self.until.send_replace(None);
    }

    /// Resolves when the fence closes: at `close`, or when the deadline passes.
    pub async fn closed(&self) {
        let mut until = self.until.subscribe();
        loop {
            let Some(deadline) = *until.borrow_and_update() else { return };
            if Instant::now() >= deadline {
                self.close();
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = until.changed() => {}
            }
        }
    }
}

/// Puts a [`Fence`] in front of a client's service. It must sit below the request
/// budget (added to the client builder before the throttle): a write that waited for
/// its token is checked when it is finally sent, not when it joined the line.
pub struct FenceLayer {
    fence: Fence,
    /// Counts the writes refused.
    refused: Counter,
}

impl FenceLayer {
    pub fn new(fence: Fence, refused: Counter) -> Self {
        FenceLayer { fence, refused }
    }
}

impl<S> Layer<S> for FenceLayer {
    type Service = Fenced<S>;

    fn layer(&self, inner: S) -> Fenced<S> {
        Fenced { inner, fence: self.fence.clone(), refused: self.refused.clone() }
    }
}

pub struct Fenced<S> {
    inner: S,
    fence: Fence,
    refused: Counter,
}

impl<S, B> Service<Request<B>> for Fenced<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let write = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        let refused = write
            .then(|| Error::Fenced { method: request.method().to_string(), path: request.uri().path().to_string() });
        let (fence, counter) = (self.fence.clone(), self.refused.clone());
        // The client's response future sends nothing until polled, so the check at
        // the first poll comes before the request leaves.
        let response = self.inner.call(request);
        Box::pin(async move {
            match refused {
                Some(error) if !fence.allows_writes() => {
                    counter.inc();
                    Err(error.into())
                }
                _ => response.await.map_err(Into::into),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Mutex, time::Duration};

    use super::*;

    /// Records the requests that reach the server, as a real client sends them: when
    /// their future is first polled.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl Service<Request<()>> for Recorder {
        type Response = ();
        type Error = BoxError;
        type Future = BoxFuture<'static, Result<(), BoxError>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<()>) -> Self::Future {
            let log = self.0.clone();
            Box::pin(async move {
                log.lock().unwrap().push(format!("{} {}", request.method(), request.uri()));
                Ok(())
            })
        }
    }

    fn request(method: Method, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    const PODS: &str = "/api/v1/namespaces/ns/pods";

    #[tokio::test(start_paused = true)]
    async fn writes_pass_before_the_deadline_and_are_refused_after_it_reads_always_pass() {
        let fence = Fence::until(Instant::now() + Duration::from_secs(3));
        let server = Recorder::default();
        let refused = Counter::default();
        let mut client = FenceLayer::new(fence.clone(), refused.clone()).layer(server.clone());

        client.call(request(Method::POST, PODS)).await.unwrap();
        // Queued before the deadline, sent after it: refused.
        let late = client.call(request(Method::DELETE, &format!("{PODS}/web-0")));
        tokio::time::advance(Duration::from_secs(3)).await;
        let error = late.await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "refused DELETE /api/v1/namespaces/ns/pods/web-0: this replica is not sure it holds the leader Lease"
        );
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(client.call(request(method, PODS)).await.is_err());
        }
        client.call(request(Method::GET, PODS)).await.unwrap();
        client.call(request(Method::GET, &format!("{PODS}?watch=true"))).await.unwrap();
        assert_eq!(refused.get(), 5, "the refused writes are counted, and only they");

        assert_eq!(
            *server.0.lock().unwrap(),
            [format!("POST {PODS}"), format!("GET {PODS}"), format!("GET {PODS}?watch=true")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_moves_the_deadline_but_never_reopens_a_closed_fence() {
        let start = Instant::now();
        let fence = Fence::until(start + Duration::from_secs(3));
        fence.extend(start + Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(fence.allows_writes());

        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!fence.allows_writes());
        fence.extend(Instant::now() + Duration::from_secs(3));
        assert!(!fence.allows_writes(), "a late renewal reopened the fence");

        let lost = Fence::until(Instant::now() + Duration::from_secs(3));
        lost.close();
        lost.extend(Instant::now() + Duration::from_secs(3));
        assert!(!lost.allows_writes());
    }

    #[tokio::test(start_paused = true)]
    async fn closed_resolves_at_the_deadline_as_extended_or_at_close() {
        let start = Instant::now();
        let fence = Fence::until(start + Duration::from_secs(3));
        let renewed = fence.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            renewed.extend(Instant::now() + Duration::from_secs(3));
        });
        fence.closed().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(5));

        let lost = Fence::until(Instant::now() + Duration::from_secs(60));
        let closer = lost.clone();
        tokio::spawn(async move { closer.close() });
        tokio::time::timeout(Duration::from_secs(1), lost.closed()).await.expect("closed at close");
    }
}
