//! Supervision: running one worker, and restarting it by its policy when it fails.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::{HostFailure, Policy, Registered, WorkerContext, WorkerState};

/// Aborts a task when dropped, so that aborting a supervisor aborts its worker's run.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a worker, restarting it by its policy, until it stops, fails for good, or the
/// host shuts down.
pub(super) async fn supervise(
    registered: Registered,
    context: WorkerContext,
    failure: Arc<watch::Sender<Option<HostFailure>>>,
) {
    let Registered {
        name,
        worker,
        policy,
        health,
    } = registered;
    let mut recent_restarts: VecDeque<Instant> = VecDeque::new();
    loop {
        health.set(WorkerState::Starting);
        let run = tokio::spawn(
            Arc::clone(&worker)
                .run_boxed(context.clone())
                .in_current_span(),
        );
        let _abort = AbortOnDrop(run.abort_handle());
        let error = match run.await {
            Ok(Ok(())) => {
                tracing::info!("worker stopped");
                health.set(WorkerState::Stopped);
                return;
            }
            Ok(Err(error)) => error_chain(error.as_ref()),
            Err(join) => match join.try_into_panic() {
                Ok(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
                // Cancelled: only the host aborts runs, and then it is stopping.
                Err(_) => return,
            },
        };
        metrics::counter!("switchyard_worker_failures_total", "worker" => name.clone())
            .increment(1);
        if context.shutdown.is_cancelled() {
            tracing::error!(error = %error, "worker failed while stopping");
            health.set(WorkerState::Failed { error });
            return;
        }
        match policy {
            Policy::StopHost => {
                tracing::error!(error = %error, "worker failed; its policy stops the host");
                health.set(WorkerState::Failed {
                    error: error.clone(),
                });
                failure.send_replace(Some(HostFailure {
                    worker: name.clone(),
                    error,
                }));
                return;
            }
            Policy::Restart(restarts) => {
                let now = Instant::now();
                while recent_restarts
                    .front()
                    .is_some_and(|at| now.duration_since(*at) >= restarts.window)
                {
                    recent_restarts.pop_front();
                }
                let recent = u32::try_from(recent_restarts.len()).unwrap_or(u32::MAX);
                if recent >= restarts.max_restarts {
                    tracing::error!(
                        error = %error,
                        restarts = recent,
                        window = ?restarts.window,
                        "worker failed too often; giving up on it"
                    );
                    health.set(WorkerState::Failed { error });
                    return;
                }
                let delay = restarts.backoff.delay(recent.saturating_add(1));
                tracing::warn!(error = %error, delay = ?delay, "worker failed; restarting after a delay");
                health.set(WorkerState::BackingOff {
                    last_error: error,
                    next_attempt: context.clock.now() + delay,
                });
                if !context.sleep(delay).await {
                    health.set(WorkerState::Stopped);
                    return;
                }
                recent_restarts.push_back(Instant::now());
                health.restarted();
                metrics::counter!("switchyard_worker_restarts_total", "worker" => name.clone())
                    .increment(1);
            }
        }
    }
}

/// An error and its sources, joined with `: ` (a source already quoted in its
/// parent's message is not repeated).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}
