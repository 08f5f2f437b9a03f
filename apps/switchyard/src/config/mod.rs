//! Configuration: built-in defaults, then `switchyard.toml` (if present), then
//! `SWITCHYARD_*` environment variables with `__` between nested keys
//! (`SWITCHYARD_DATABASE__BOUNDARIES__ORDERS__URL`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use orchestration::clock::duration;
use orchestration::{
    DatabaseUrl, Topology,
    database::DatabaseSettings,
    dispatch::DispatcherOptions,
    host::{Policy, Restarts},
};
use serde::Deserialize;

mod settings;

pub use settings::Settings;

/// The whole configuration. An unknown key at any level is refused, naming it, so
/// that a misspelt setting never silently falls back to its default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The HTTP server.
    pub http: HttpConfig,
    /// Where boundaries live.
    pub database: DatabaseConfig,
    /// Order placement.
    pub orders: OrdersConfig,
    /// Hosted workers.
    pub workers: WorkersConfig,
    /// Event delivery from the outbox.
    pub outbox: DispatcherOptions,
    /// Payments and the payment gateway.
    pub payments: PaymentsConfig,
    /// Accounts, logins and sessions.
    pub identity: IdentityConfig,
    /// Notifications and their delivery.
    pub notifications: NotificationsConfig,
    /// The scheduled import of a vendor's product feed.
    pub vendor_sync: VendorSyncConfig,
    /// Logging.
    pub log: LogConfig,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
}

/// Prometheus metrics.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` on this address of its own (e.g. `0.0.0.0:9090`, for a
    /// scraper that must not reach the API); unset, it is served on `http.addr`.
    pub addr: Option<SocketAddr>,
}

/// The HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on; port 0 picks a free port.
    pub addr: SocketAddr,
    /// A request still running after this long is answered with 503.
    #[serde(
        alias = "request_timeout_secs",
        deserialize_with = "duration::deserialize"
    )]
    pub request_timeout: Duration,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// A client must send a request's headers within this long, and a keep-alive
    /// connection idle for this long is closed.
    #[serde(deserialize_with = "duration::deserialize")]
    pub header_read_timeout: Duration,
    /// Connections open at once; more wait until one closes. Keep it well below the
    /// process's open-file limit, which the database files and pools share.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout: Duration::from_secs(30),
            body_limit_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

/// Where boundaries live.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The database of every boundary without an override.
    pub url: String,
    /// Per-boundary placement, by boundary name.
    pub boundaries: BTreeMap<String, BoundaryConfig>,
    /// A prepared transaction whose run never decided is rolled back after this long
    /// (two-phase commit across PostgreSQL databases), or at once when the instance
    /// that prepared it is gone (see `instance_timeout`).
    #[serde(
        alias = "in_doubt_timeout_secs",
        deserialize_with = "duration::deserialize"
    )]
    pub in_doubt_timeout: Duration,
    /// How often in-doubt transactions are looked for.
    #[serde(
        alias = "recovery_interval_secs",
        deserialize_with = "duration::deserialize"
    )]
    pub recovery_interval: Duration,
    /// Connecting to a database fails after this long, naming the cause.
    #[serde(deserialize_with = "duration::deserialize")]
    pub connect_timeout: Duration,
    /// Waiting for a pooled connection fails after this long.
    #[serde(deserialize_with = "duration::deserialize")]
    pub acquire_timeout: Duration,
    /// A statement waiting longer than this for a lock another transaction holds
    /// fails (a saga step retries it) instead of holding its connection.
    #[serde(deserialize_with = "duration::deserialize")]
    pub lock_timeout: Duration,
    /// An instance that has not heartbeaten for this long is taken as gone: its
    /// undecided prepared transactions are rolled back at once.
    #[serde(deserialize_with = "duration::deserialize")]
    pub instance_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        let settings = DatabaseSettings::default();
        Self {
            url: "sqlite://./data".to_owned(),
            boundaries: BTreeMap::new(),
            in_doubt_timeout: Duration::from_secs(60),
            recovery_interval: Duration::from_secs(2),
            connect_timeout: settings.connect_timeout,
            acquire_timeout: settings.acquire_timeout,
            lock_timeout: settings.lock_timeout,
            instance_timeout: settings.instance_timeout,
        }
    }
}

/// One boundary's placement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundaryConfig {
    /// The database that holds the boundary.
    pub url: String,
}

/// Order placement.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersConfig {
    /// How long stock stays held for a placement; an expired hold whose placement is
    /// over goes back to available stock.
    #[serde(deserialize_with = "duration::deserialize")]
    pub hold: Duration,
    /// How long `POST /api/orders` waits for the placement before answering
    /// `202 Accepted` with a status URL.
    #[serde(deserialize_with = "duration::deserialize")]
    pub placement_wait: Duration,
    /// How often expired holds are looked for.
    #[serde(deserialize_with = "duration::deserialize")]
    pub release_holds_every: Duration,
    /// How long after placing an order its customer may refund it (staff with
    /// `orders.refund` may at any time).
    #[serde(deserialize_with = "duration::deserialize")]
    pub refund_window: Duration,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            hold: Duration::from_secs(15 * 60),
            placement_wait: Duration::from_secs(5),
            release_holds_every: Duration::from_secs(60),
            refund_window: Duration::from_secs(14 * 24 * 60 * 60),
        }
    }
}

/// The `vendor_sync` job: a product feed imported on a schedule, as
/// `switchyard import products` does (an unchanged feed is skipped).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VendorSyncConfig {
    /// The feed: a path, or an `http://` or `https://` URL; without it the job does not
    /// run.
    pub feed: Option<String>,
    /// How often the feed is looked at (unless `cron` is set).
    #[serde(deserialize_with = "duration::deserialize")]
    pub every: Duration,
    /// When the feed is looked at, as a cron expression in UTC (five fields, or six
    /// with seconds first), instead of `every`.
    pub cron: Option<String>,
    /// Rows per transaction.
    pub chunk_size: u32,
}

impl Default for VendorSyncConfig {
    fn default() -> Self {
        Self {
            feed: None,
            every: Duration::from_secs(60 * 60),
            cron: None,
            chunk_size: 10_000,
        }
    }
}

/// Notifications: where the file sender writes them, and how delivery is retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// How notifications leave: `file` (one `<id>.eml` file each under `dir`) or
    /// `smtp` (through the relay `smtp.host`:`smtp.port`).
    pub sender: SenderName,
    /// The directory the file sender writes to.
    pub dir: std::path::PathBuf,
    /// The SMTP relay, for `sender = "smtp"`.
    pub smtp: SmtpConfig,
    /// How often due notifications are looked for.
    #[serde(deserialize_with = "duration::deserialize")]
    pub deliver_every: Duration,
    /// How long one delivery attempt may take.
    #[serde(deserialize_with = "duration::deserialize")]
    pub attempt_timeout: Duration,
    /// The wait before the second attempt; it doubles with each failure.
    #[serde(deserialize_with = "duration::deserialize")]
    pub backoff_initial: Duration,
    /// The longest wait between attempts.
    #[serde(deserialize_with = "duration::deserialize")]
    pub backoff_max: Duration,
    /// Attempts before a notification is given up (dead).
    pub max_attempts: u32,
    /// Where clients reach the API, for the links in mails.
    pub public_url: String,
}

/// Which sender delivers notifications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderName {
    /// Files under `notifications.dir`.
    #[default]
    File,
    /// SMTP through `notifications.smtp`.
    Smtp,
}

/// An SMTP relay: plain SMTP, no TLS or authentication (a local relay or a sidecar).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// The relay's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The sender mailbox: `Name <address>` or `address`.
    pub from: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 25,
            from: "Switchyard <switchyard@localhost>".to_owned(),
        }
    }
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        let policy = workflows::DeliveryPolicy::default();
        Self {
            sender: SenderName::File,
            smtp: SmtpConfig::default(),
            dir: std::path::PathBuf::from("data/mail"),
            deliver_every: Duration::from_secs(1),
            attempt_timeout: policy.attempt_timeout,
            backoff_initial: policy.backoff_initial,
            backoff_max: policy.backoff_max,
            max_attempts: policy.max_attempts,
            public_url: workflows::MailSettings::default().public_url,
        }
    }
}

/// Logins and sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// How long a session lasts from its login.
    #[serde(deserialize_with = "duration::deserialize")]
    pub session_ttl: Duration,
    /// How long the TOTP step may follow the password step.
    #[serde(deserialize_with = "duration::deserialize")]
    pub challenge_ttl: Duration,
    /// Failed logins per email (with or without an account) within `failure_window`
    /// before its logins are refused for the rest of the window.
    pub max_failures_per_email: u32,
    /// Failed logins per client address within `failure_window`.
    pub max_failures_per_client: u32,
    /// The window failed logins are counted in.
    #[serde(deserialize_with = "duration::deserialize")]
    pub failure_window: Duration,
    /// The argon2id cost of password hashes; stored hashes below it are renewed at
    /// login.
    pub password: PasswordConfig,
    /// How long a registration's verification token works; a registration not
    /// verified by then is removed.
    #[serde(deserialize_with = "duration::deserialize")]
    pub verification_ttl: Duration,
    /// Registrations per client address in an hour.
    pub max_registrations_per_client: u32,
}

/// The argon2id cost of password hashes (default: OWASP's recommendation).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    /// Memory per hash, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        let policy = identity::PasswordPolicy::default();
        Self {
            memory_kib: policy.memory_kib,
            iterations: policy.iterations,
            parallelism: policy.parallelism,
        }
    }
}

impl Default for IdentityConfig {
    fn default() -> Self {
        let login = workflows::LoginSettings::default();
        let std = |d: chrono::Duration| d.to_std().expect("the defaults are positive");
        Self {
            session_ttl: std(login.session_ttl),
            challenge_ttl: std(login.challenge_ttl),
            max_failures_per_email: login.per_email.max_failures,
            max_failures_per_client: login.per_client.max_failures,
            failure_window: std(login.per_email.window),
            password: PasswordConfig::default(),
            verification_ttl: Duration::from_secs(24 * 3600),
            max_registrations_per_client: 10,
        }
    }
}

/// Payments: the rule for unverified customers and the (simulated) gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsConfig {
    /// The largest amount, in minor units, an unverified customer may pay.
    pub verification_threshold_minor: i64,
    /// The simulated payment gateway.
    pub gateway: GatewayConfig,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            verification_threshold_minor: payments::PaymentPolicy::default()
                .verification_threshold_minor,
            gateway: GatewayConfig::default(),
        }
    }
}

/// The simulated payment gateway's behaviour, and how calls to it are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// How long each request takes.
    #[serde(deserialize_with = "duration::deserialize")]
    pub latency: Duration,
    /// The share of requests (0 to 1) that fail as if the gateway were unavailable,
    /// half of them after taking effect (a lost response).
    pub failure_rate: f64,
    /// The share of charges (0 to 1) that are declined.
    pub decline_rate: f64,
    /// How long one charge or refund may take before it counts as failed (and is
    /// retried under the same idempotency key).
    #[serde(deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
    /// Attempts at a charge (or a refund) before the placement gives up: a charge
    /// is then undone, a refund left to an operator.
    pub max_attempts: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let retry = orchestration::saga::RetryPolicy::default();
        Self {
            latency: Duration::ZERO,
            failure_rate: 0.0,
            decline_rate: 0.0,
            timeout: retry.timeout,
            max_attempts: retry.max_attempts,
        }
    }
}

/// Hosted workers: the shutdown timeout, and per worker (by name) how it is
/// supervised: `[workers.two_phase_recovery] policy = "stop_host"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WorkersConfig {
    /// How long shutdown waits for workers to stop before abandoning them.
    #[serde(deserialize_with = "duration::deserialize")]
    pub shutdown_timeout: Duration,
    /// Supervision overrides by worker name.
    #[serde(skip)]
    pub workers: BTreeMap<String, WorkerConfig>,
    /// The `workers.<name>` tables as read; [`Config::load`] parses each one on its
    /// own, so that an error names the worker (serde's `flatten` loses the path).
    #[serde(flatten)]
    unparsed: BTreeMap<String, figment::value::Value>,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            shutdown_timeout: Duration::from_secs(30),
            workers: BTreeMap::new(),
            unparsed: BTreeMap::new(),
        }
    }
}

/// One worker's supervision; unset keys keep the worker's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// `restart` (with backoff) or `stop_host` (its failure stops the process).
    pub policy: Option<PolicyName>,
    /// Delay before the first restart; it doubles with each restart in the window.
    #[serde(default, deserialize_with = "duration::deserialize_option")]
    pub initial_backoff: Option<Duration>,
    /// Longest delay between restarts.
    #[serde(default, deserialize_with = "duration::deserialize_option")]
    pub max_backoff: Option<Duration>,
    /// Most restarts within `restart_window` before the worker is given up on.
    pub max_restarts: Option<u32>,
    /// The window over which restarts are counted.
    #[serde(default, deserialize_with = "duration::deserialize_option")]
    pub restart_window: Option<Duration>,
}

/// A worker's failure policy, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyName {
    /// Restart with backoff.
    Restart,
    /// Stop the host; the process exits non-zero.
    StopHost,
}

impl WorkersConfig {
    /// The policy for `worker`: its `default`, with this configuration's overrides.
    #[must_use]
    pub fn policy(&self, worker: &str, default: Policy) -> Policy {
        let Some(config) = self.workers.get(worker) else {
            return default;
        };
        let mut restarts = match default {
            Policy::Restart(restarts) => restarts,
            Policy::StopHost => Restarts::default(),
        };
        if let Some(initial) = config.initial_backoff {
            restarts.backoff.initial = initial;
        }
        if let Some(max) = config.max_backoff {
            restarts.backoff.max = max;
        }
        if let Some(max_restarts) = config.max_restarts {
            restarts.max_restarts = max_restarts;
        }
        if let Some(window) = config.restart_window {
            restarts.window = window;
        }
        let stops_host = config
            .policy
            .map_or(default == Policy::StopHost, |p| p == PolicyName::StopHost);
        if stops_host {
            Policy::StopHost
        } else {
            Policy::Restart(restarts)
        }
    }

    /// Checks that every configured worker exists.
    ///
    /// # Errors
    /// A `workers.<name>` table for a worker that is not registered, naming the key.
    pub fn check_names(&self, known: &[&str]) -> Result<(), ConfigError> {
        match self
            .workers
            .keys()
            .find(|name| !known.contains(&name.as_str()))
        {
            Some(name) => Err(ConfigError(format!(
                "workers.{name}: there is no worker named `{name}` (workers: {})",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter such as `info,switchyard=debug`; `RUST_LOG` wins if set.
    pub filter: String,
    /// `auto` (text at a terminal, JSON lines otherwise), `json` or `text`.
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Text at a terminal, JSON lines otherwise.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Text for a person.
    Text,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info,sqlx=warn".to_owned(),
            format: LogFormat::Auto,
        }
    }
}

fn parse_url(key: &str, url: &str) -> Result<DatabaseUrl, ConfigError> {
    url.parse::<DatabaseUrl>()
        .map_err(|e| ConfigError(format!("{key}: {e}")))
}

/// The configuration is invalid. The message names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

/// `SWITCHYARD_*` variables that are not configuration keys: the configuration
/// file's path (read by the command line) and the test harness's own.
fn is_config_variable(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key != "config" && !key.starts_with("test_")
}

impl Config {
    /// Loads defaults, then `file` if it exists, then `SWITCHYARD_*` variables, and
    /// checks every value that can be checked without a database.
    ///
    /// # Errors
    /// A value of the wrong type, an unknown key or an invalid value, named in the
    /// message.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = Figment::new()
            .merge(Toml::file(file))
            .merge(
                Env::prefixed("SWITCHYARD_")
                    .filter(|key| is_config_variable(key.as_str()))
                    .split("__"),
            )
            .extract()
            .map_err(|e| ConfigError(e.to_string()))?;
        for (name, value) in std::mem::take(&mut config.workers.unparsed) {
            let worker = value
                .deserialize()
                .map_err(|e| ConfigError(format!("workers.{name}: {e}")))?;
            config.workers.workers.insert(name, worker);
        }
        config.settings()?;
        Ok(config)
    }

    /// [`Config::load`] from a file that must exist (one named on the command line
    /// or in `SWITCHYARD_CONFIG`).
    ///
    /// # Errors
    /// The file does not exist, or as [`Config::load`].
    pub fn load_required(file: &Path) -> Result<Self, ConfigError> {
        if !file.is_file() {
            return Err(ConfigError(format!(
                "the configuration file {} does not exist",
                file.display()
            )));
        }
        Self::load(file)
    }

    /// Every database URL parses (which boundaries exist is checked by
    /// [`Config::topology`]).
    fn database_urls(&self) -> Result<(), ConfigError> {
        parse_url("database.url", &self.database.url)?;
        for (name, placement) in &self.database.boundaries {
            parse_url(&format!("database.boundaries.{name}.url"), &placement.url)?;
        }
        Ok(())
    }

    /// The placement of the `known` boundaries described by `database`.
    ///
    /// # Errors
    /// An unparsable URL or an override for a boundary that does not exist, naming
    /// the key.
    pub fn topology(&self, known: &[&str]) -> Result<Topology, ConfigError> {
        let parse = parse_url;
        let mut topology = Topology::new(parse("database.url", &self.database.url)?);
        for (name, placement) in &self.database.boundaries {
            let key = format!("database.boundaries.{name}.url");
            if !known.contains(&name.as_str()) {
                return Err(ConfigError(format!(
                    "{key}: there is no boundary named `{name}` (boundaries: {})",
                    known.join(", ")
                )));
            }
            topology = topology.with_override(name.clone(), parse(&key, &placement.url)?);
        }
        Ok(topology)
    }
}

#[cfg(test)]
mod tests;
