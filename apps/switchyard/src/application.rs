//! The application: a connected fabric, the workflows, the worker host and the HTTP
//! server on a bound listener, so tests can start the real thing on port 0.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use orchestration::database::DatabaseSettings;
use orchestration::{
    Boundary, Fabric, FabricError,
    dispatch::Dispatcher,
    host::{Host, HostError, HostFailure, Policy, Schedule},
    saga::{SagaRecovery, SagaRecoveryOptions},
    two_phase::{InDoubtRecovery, RecoveryError},
};
use payments::SimulatedGateway;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use workflows::{
    PlaceOrder, PlaceOrderSettings, RefundOrder, RefundOrderSettings, ReleaseExpiredHolds,
};

use crate::config::{Config, ConfigError, Settings};
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
    /// A saga run could not be found or changed (the `runs` commands).
    #[error(transparent)]
    Saga(#[from] orchestration::saga::SagaError),
    /// In-doubt transactions could not be recovered at start-up.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// The handlers for SIGINT and SIGTERM could not be installed.
    #[error("cannot listen for SIGINT and SIGTERM: {0}")]
    Signal(#[source] std::io::Error),
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A worker could not be registered (a duplicate name, an invalid schedule).
    #[error(transparent)]
    Workers(#[from] HostError),
    /// A worker whose policy stops the host failed; the app stopped.
    #[error(transparent)]
    WorkerFailed(#[from] HostFailure),
    /// A command was refused or failed (the `accounts` commands), saying why.
    #[error("{0}")]
    Command(String),
}

/// A built application, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    fabric: Fabric,
    router: axum::Router,
    /// `/metrics` on its own listener, if `metrics.addr` is set.
    metrics: Option<(TcpListener, axum::Router)>,
    /// The background workers, started with the server.
    host: Host,
    /// How long shutdown waits for in-flight requests (and then for the workers).
    shutdown_timeout: Duration,
    /// Per-connection limits of the HTTP server.
    limits: http::server::Limits,
}

impl Application {
    /// Connects the fabric, migrates (unless told not to) and binds the listener.
    ///
    /// # Errors
    /// Invalid configuration, an unreachable or unmigratable database, or an address
    /// that cannot be bound.
    pub async fn build(config: &Config, options: ServeOptions) -> Result<Self, StartError> {
        let settings = config.settings()?;
        let fabric = connect_with(config, &settings, true).await?;
        if options.migrate {
            for state in fabric.databases().migrate().await? {
                tracing::info!(
                    boundary = state.boundary,
                    database = %state.database,
                    applied = state.applied.len(),
                    "migrated"
                );
            }
        }
        // Registering the saga checks that each of its steps can commit with its
        // checkpoint on this topology: a configuration error, refused now rather
        // than on every request.
        let workflows = workflows(&settings, &fabric)?;
        let report = orchestration::two_phase::recover_in_doubt(
            fabric.databases(),
            settings.in_doubt_timeout,
        )
        .await?;
        if report.resolved_any() {
            tracing::warn!(%report, "resolved in-doubt two-phase commits left by an earlier crash");
        }
        let listener = TcpListener::bind(config.http.addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.http.addr,
                source,
            })?;
        let host = workers(config, &settings, &fabric)?;
        let state = http::AppState::new(
            fabric.clone(),
            workflows,
            settings.placement_wait,
            host.health(),
            options.migrate,
        );
        let metrics = match config.metrics.addr {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?;
                Some((listener, http::metrics_router(state.clone())))
            }
            None => None,
        };
        // Installed before the first request, so that every metric is recorded.
        http::metrics::handle();
        let router = http::router(state, config);
        Ok(Self {
            listener,
            fabric,
            router,
            metrics,
            host,
            shutdown_timeout: config.workers.shutdown_timeout,
            limits: http::server::Limits {
                header_read_timeout: config.http.header_read_timeout,
                max_connections: config.http.max_connections,
            },
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

    /// The address `/metrics` is served on: its own (`metrics.addr`) or the API's.
    ///
    /// # Panics
    /// If a bound socket has no local address, which does not happen for TCP.
    #[must_use]
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.as_ref().map_or_else(
            || self.local_addr(),
            |(listener, _)| {
                listener
                    .local_addr()
                    .expect("a bound TCP listener has an address")
            },
        )
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

    /// Serves and runs the workers until SIGINT or SIGTERM (or until a worker whose
    /// policy stops the host fails), then stops as [`Application::run_until`] does.
    /// A process that must not die of a signal during start-up installs a
    /// [`ShutdownSignal`] before building the application, and runs until it.
    ///
    /// # Errors
    /// The signal handlers could not be installed, the server failed, or a stop-host
    /// worker failed.
    pub async fn run_until_stopped(self) -> Result<(), StartError> {
        let signal = ShutdownSignal::install().map_err(StartError::Signal)?;
        self.run_until(signal.received()).await
    }

    /// Serves and runs the workers until `shutdown` completes or a worker whose
    /// policy stops the host fails. Then: stop accepting connections, drain in-flight
    /// requests and stop the workers, each within `workers.shutdown_timeout`, and
    /// close the pools within a few seconds more (what is stuck is named in the log).
    ///
    /// # Errors
    /// The server failed, or a stop-host worker failed ([`StartError::WorkerFailed`]).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let addr = self.local_addr();
        let host = self.host.start();
        let failed = host.failed();
        let stop = async move {
            tokio::select! {
                () = shutdown => {}
                failure = failed => tracing::error!(%failure, "shutting down"),
            }
        };
        tracing::info!(%addr, "serving");
        // The HTTP drain and then the workers share one `workers.shutdown_timeout`
        // from when the stop began.
        let timeout = self.shutdown_timeout;
        let stopped = CancellationToken::new();
        let mut background = tokio::task::JoinSet::new();
        background.spawn(upkeep(stopped.clone()));
        if let Some((listener, router)) = self.metrics {
            let metrics_addr = listener.local_addr().ok();
            tracing::info!(addr = ?metrics_addr, "serving /metrics");
            let done = stopped.clone().cancelled_owned();
            background.spawn(async move {
                http::server::serve(listener, router, self.limits, done, timeout).await;
            });
        }
        let began =
            http::server::serve(self.listener, self.router, self.limits, stop, timeout).await;
        stopped.cancel();
        // Their ends are not errors of the app: the upkeep has nothing to report, and
        // a metrics server that failed has logged why.
        while background.join_next().await.is_some() {}
        tracing::info!("stopped accepting requests; stopping workers");
        // What is left of the timeout, but never less than a moment for the workers
        // to see the cancellation.
        let left = (began + timeout).saturating_duration_since(tokio::time::Instant::now());
        let report = host
            .shutdown_within(left.max(Duration::from_millis(500)))
            .await;
        tracing::info!(%report, "workers stopped; closing database pools");
        self.fabric.close().await;
        match report.failure {
            Some(failure) => Err(failure.into()),
            None => Ok(()),
        }
    }
}

/// Folds histogram samples into their buckets every few seconds, so that memory stays
/// bounded when nobody scrapes `/metrics`.
async fn upkeep(stopped: CancellationToken) {
    let mut every = tokio::time::interval(http::metrics::UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            () = stopped.cancelled() => return,
            _ = every.tick() => http::metrics::handle().run_upkeep(),
        }
    }
}

/// Connects every boundary the app composes, placed as `config` says, with the
/// workflows' event subscribers. Databases, schemas and files that are missing are
/// created only if `create_missing`.
pub(crate) async fn connect(config: &Config, create_missing: bool) -> Result<Fabric, StartError> {
    connect_with(config, &config.settings()?, create_missing).await
}

async fn connect_with(
    config: &Config,
    settings: &Settings,
    create_missing: bool,
) -> Result<Fabric, StartError> {
    let boundaries = migrations::all();
    let names: Vec<&str> = boundaries.iter().map(Boundary::name).collect();
    let topology = config.topology(&names)?;
    let database = DatabaseSettings {
        create_missing,
        ..settings.database.clone()
    };
    let fabric = Fabric::connect_with(&topology, &database, boundaries).await?;
    workflows::subscribe(&fabric, &settings.mail)?;
    Ok(fabric)
}

/// The workflows the HTTP API runs: the order sagas (placement and refund, with the
/// simulated payment gateway on the payments boundary's database), login and
/// registration.
pub(crate) fn workflows(
    settings: &Settings,
    fabric: &Fabric,
) -> Result<http::Workflows, StartError> {
    let gateway: Arc<dyn payments::PaymentGateway> = Arc::new(SimulatedGateway::new(
        fabric.connection(payments::SCHEMA)?.clone(),
        settings.gateway,
    ));
    let placement = PlaceOrderSettings {
        hold: settings.order_hold,
        gateway: Arc::clone(&gateway),
        policy: settings.payment_policy,
        charge_retry: settings.charge_retry,
    };
    let refund = RefundOrderSettings {
        gateway,
        customer_window: settings.refund_window,
        retry: settings.charge_retry,
    };
    Ok(http::Workflows {
        place_order: PlaceOrder::register(fabric, placement)?,
        refund_order: RefundOrder::register(fabric, refund)?,
        login: workflows::Login::new(fabric, settings.login),
        registration: workflows::Registration::new(fabric, settings.registration),
    })
}

/// The app's background workers, each supervised by its default policy unless
/// `workers.<name>` in the configuration says otherwise.
fn workers(config: &Config, settings: &Settings, fabric: &Fabric) -> Result<Host, StartError> {
    let mut host = Host::new(fabric.databases()).shutdown_timeout(config.workers.shutdown_timeout);
    // A crash of any instance can leave in-doubt two-phase commits at any time. Every
    // instance looks (see `InDoubtRecovery` for why it is no singleton).
    let recovery_interval = settings.recovery_interval;
    host.add_job(
        InDoubtRecovery::new(fabric.databases(), settings.in_doubt_timeout),
        Schedule::every(recovery_interval),
        config
            .workers
            .policy(InDoubtRecovery::NAME, Policy::default()),
    )?;
    // Delivers events from every database's outbox; every instance runs it.
    host.add(
        Dispatcher::new(fabric.events(), settings.dispatcher.clone()),
        config.workers.policy(Dispatcher::NAME, Policy::default()),
    )?;
    // Resumes saga runs whose instance died; every instance runs it.
    host.add(
        SagaRecovery::new(fabric.sagas(), SagaRecoveryOptions::default()),
        config.workers.policy(SagaRecovery::NAME, Policy::default()),
    )?;
    // Gives back stock held by placements that are over.
    host.add_job(
        ReleaseExpiredHolds::new(fabric, 100),
        Schedule::every(
            config
                .orders
                .release_holds_every
                .max(Duration::from_secs(1)),
        )
        .singleton(),
        config
            .workers
            .policy(ReleaseExpiredHolds::NAME, Policy::default()),
    )?;
    // Delivers queued notifications; every instance runs it (each notification is
    // claimed by one).
    let notifications = &config.notifications;
    host.add_job(
        workflows::DeliverNotifications::new(
            fabric,
            Arc::clone(&settings.sender),
            settings.delivery,
        ),
        Schedule::every(notifications.deliver_every),
        config
            .workers
            .policy(workflows::DeliverNotifications::NAME, Policy::default()),
    )?;
    // Removes registrations never verified.
    host.add_job(
        workflows::ExpireRegistrations::new(fabric, settings.mail.verification_ttl, 100),
        Schedule::every(Duration::from_secs(60)).singleton(),
        config
            .workers
            .policy(workflows::ExpireRegistrations::NAME, Policy::default()),
    )?;
    // Imports the vendor's product feed, when one is configured.
    if let Some(feed) = &config.vendor_sync.feed {
        let schedule = match &config.vendor_sync.cron {
            Some(expression) => Schedule::cron(expression.clone()),
            None => Schedule::every(config.vendor_sync.every),
        };
        host.add_job(
            crate::import::VendorSync::new(
                fabric,
                crate::import::FeedSource::parse(feed),
                config.vendor_sync.chunk_size as usize,
            ),
            schedule.singleton(),
            config
                .workers
                .policy(crate::import::VendorSync::NAME, Policy::default()),
        )?;
    }
    config.workers.check_names(&host.names())?;
    Ok(host)
}

/// SIGINT and SIGTERM, listened for from the moment it is installed: a signal that
/// arrives while the app is still starting is kept and stops it as soon as it serves,
/// instead of killing the process.
#[derive(Debug)]
pub struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Installs the handlers now (on Unix; elsewhere Ctrl-C is listened for when
    /// awaited). Call it inside the runtime, before anything slow.
    ///
    /// # Errors
    /// The operating system refused a handler.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Completes when a signal arrives (or arrived since [`ShutdownSignal::install`]).
    pub async fn received(self) {
        #[cfg(unix)]
        {
            let Self {
                mut interrupt,
                mut terminate,
            } = self;
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
                _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            tracing::info!("Ctrl-C received; shutting down");
        }
    }
}
