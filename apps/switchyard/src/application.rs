//! The application: a connected fabric, the workflows, and the HTTP server on a bound
//! listener, so tests can start the real thing on port 0.

use std::net::SocketAddr;
use std::time::Duration;

use orchestration::{Boundary, Fabric, FabricError, RecoveryError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use workflows::PlaceOrder;

use crate::config::{Config, ConfigError};
use crate::http;

/// How `serve` starts.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Migrate every boundary before serving.
    pub migrate: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self { migrate: true }
    }
}

/// The app could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A database could not be connected, prepared or migrated.
    #[error(transparent)]
    Fabric(#[from] FabricError),
    /// The topology places a workflow's boundaries where they cannot commit together.
    #[error("the database topology does not work for `{workflow}`: {source}")]
    Topology {
        /// The workflow.
        workflow: &'static str,
        /// Why its boundaries cannot commit together.
        source: orchestration::UnitOfWorkError,
    },
    /// In-doubt transactions could not be recovered at start-up.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// A built application, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    fabric: Fabric,
    router: axum::Router,
    /// Resolves in-doubt two-phase commits while the app runs.
    recovery: JoinHandle<()>,
}

impl Application {
    /// Connects the fabric, migrates (unless told not to) and binds the listener.
    ///
    /// # Errors
    /// Invalid configuration, an unreachable or unmigratable database, or an address
    /// that cannot be bound.
    pub async fn build(config: &Config, options: ServeOptions) -> Result<Self, StartError> {
        let boundaries = crate::boundaries();
        let names: Vec<&str> = boundaries.iter().map(Boundary::name).collect();
        let topology = config.topology(&names)?;
        let fabric = Fabric::connect(&topology, boundaries).await?;
        if options.migrate {
            for state in fabric.migrate().await? {
                tracing::info!(
                    boundary = state.boundary,
                    database = %state.database,
                    applied = state.applied.len(),
                    "migrated"
                );
            }
        }
        // A topology under which a workflow could never commit is a configuration
        // error: refuse it now rather than fail every request.
        fabric
            .plan(&PlaceOrder::BOUNDARIES)
            .map_err(|source| StartError::Topology {
                workflow: "place_order",
                source,
            })?;
        let report = fabric
            .recover_in_doubt(config.database.in_doubt_timeout())
            .await?;
        if !report.is_empty() {
            tracing::warn!(%report, "resolved in-doubt two-phase commits left by an earlier crash");
        }
        let listener = TcpListener::bind(config.http.addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.http.addr,
                source,
            })?;
        let state = http::AppState::new(
            fabric.clone(),
            PlaceOrder::new(fabric.clone(), config.order_hold()),
        );
        let router = http::router(state, &config.http);
        let recovery = tokio::spawn(recover_periodically(
            fabric.clone(),
            config.database.in_doubt_timeout(),
            Duration::from_secs(config.database.recovery_interval_secs.max(1)),
        ));
        Ok(Self {
            listener,
            fabric,
            router,
            recovery,
        })
    }

    /// The address the server listens on.
    ///
    /// # Panics
    /// If the bound socket has no local address, which does not happen for TCP.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// The port the server listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The connected fabric.
    #[must_use]
    pub fn fabric(&self) -> &Fabric {
        &self.fabric
    }

    /// Serves until SIGINT or SIGTERM, then drains in-flight requests and closes the
    /// database pools.
    ///
    /// # Errors
    /// The server failed.
    pub async fn run_until_stopped(self) -> Result<(), StartError> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes, then drains in-flight requests and closes
    /// the database pools.
    ///
    /// # Errors
    /// The server failed.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(StartError::Serve);
        tracing::info!("stopped accepting requests; closing database pools");
        self.recovery.abort();
        self.fabric.close().await;
        served
    }
}

/// Looks for in-doubt two-phase commits every `interval` (a crash of another instance
/// can leave some at any time).
async fn recover_periodically(fabric: Fabric, timeout: Duration, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // The first tick is immediate; start-up already recovered.
    loop {
        ticks.tick().await;
        match fabric.recover_in_doubt(timeout).await {
            Ok(report) if !report.is_empty() => {
                tracing::warn!(%report, "resolved in-doubt two-phase commits")
            }
            Ok(_) => {}
            Err(err) => {
                tracing::error!(error = %err, "recovering in-doubt two-phase commits failed")
            }
        }
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}
