//! The HTTP/1.1 server loop: hyper under the router, with the limits `axum::serve`
//! does not offer. A client must send a request's headers within
//! `http.header_read_timeout`, and the same timeout closes a keep-alive connection
//! that sits idle between requests; at most `http.max_connections` connections are
//! open at once (more wait in the listen backlog). On shutdown idle connections are
//! closed and in-flight requests finish, within a timeout.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::add_extension::AddExtension;

/// The connection limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How long a client may take to send a request's headers, and how long a
    /// keep-alive connection may wait idle for its next request.
    pub(crate) header_read_timeout: Duration,
    /// Connections open at once.
    pub(crate) max_connections: usize,
}

/// Serves `router` on `listener` until `stop` completes, then stops accepting,
/// closes idle connections and waits up to `drain_timeout` for in-flight requests
/// (abandoning the rest, named in the log). Returns when the stop began.
pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
    drain_timeout: Duration,
) -> tokio::time::Instant {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut stop = std::pin::pin!(stop);
    loop {
        let slot = tokio::select! {
            () = &mut stop => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: wait a moment rather than spin.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Handlers see the client's address (login throttling counts per client).
        let service = TowerToHyperService::new(AddExtension::new(
            router.clone(),
            axum::extract::ConnectInfo(peer),
        ));
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            drop(slot);
        });
    }
    let began = tokio::time::Instant::now();
    drop(listener);
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?drain_timeout, "requests still in flight at the shutdown timeout; abandoning them");
    }
    began
}
