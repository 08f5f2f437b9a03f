//! Configuration: built-in defaults, then `switchyard.toml` (if present), then
//! `SWITCHYARD_*` environment variables with `__` between nested keys
//! (`SWITCHYARD_DATABASE__BOUNDARIES__ORDERS__URL`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use orchestration::{
    DatabaseUrl, Topology,
    backoff::Backoff,
    database::DatabaseSettings,
    dispatch::DispatcherOptions,
    host::{Policy, Restarts},
};
use serde::{Deserialize, Deserializer};

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
    pub outbox: OutboxConfig,
    /// Payments and the payment gateway.
    pub payments: PaymentsConfig,
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
    /// A request still running after this many seconds is answered with 503.
    pub request_timeout_secs: u64,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// A client must send a request's headers within this long, and a keep-alive
    /// connection idle for this long is closed.
    pub header_read_timeout: ConfigDuration,
    /// Connections open at once; more wait until one closes. Keep it well below the
    /// process's open-file limit, which the database files and pools share.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout_secs: 30,
            body_limit_bytes: 64 * 1024,
            header_read_timeout: ConfigDuration(Duration::from_secs(10)),
            max_connections: 512,
        }
    }
}

impl HttpConfig {
    /// The request timeout.
    #[must_use]
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
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
    /// A prepared transaction whose run never decided is rolled back after this many
    /// seconds (two-phase commit across PostgreSQL databases), or at once when the
    /// instance that prepared it is gone (see `instance_timeout`).
    pub in_doubt_timeout_secs: u64,
    /// How often in-doubt transactions are looked for, in seconds.
    pub recovery_interval_secs: u64,
    /// Connecting to a database fails after this long, naming the cause.
    pub connect_timeout: ConfigDuration,
    /// Waiting for a pooled connection fails after this long.
    pub acquire_timeout: ConfigDuration,
    /// A statement waiting longer than this for a lock another transaction holds
    /// fails (a saga step retries it) instead of holding its connection.
    pub lock_timeout: ConfigDuration,
    /// An instance that has not heartbeaten for this long is taken as gone: its
    /// undecided prepared transactions are rolled back at once.
    pub instance_timeout: ConfigDuration,
}

impl DatabaseConfig {
    /// How old an undecided prepared transaction must be before recovery rolls it back.
    #[must_use]
    pub fn in_doubt_timeout(&self) -> Duration {
        Duration::from_secs(self.in_doubt_timeout_secs)
    }

    /// How the fabric connects and how long it waits; `create_missing` says whether it
    /// may create databases, schemas and files (not for commands that only read).
    ///
    /// # Errors
    /// A zero timeout, naming the key.
    pub fn settings(&self, create_missing: bool) -> Result<DatabaseSettings, ConfigError> {
        for (key, value) in [
            ("connect_timeout", self.connect_timeout),
            ("acquire_timeout", self.acquire_timeout),
            ("lock_timeout", self.lock_timeout),
            ("instance_timeout", self.instance_timeout),
        ] {
            if value.0.is_zero() {
                return Err(ConfigError(format!(
                    "database.{key}: must be longer than zero"
                )));
            }
        }
        Ok(DatabaseSettings {
            connect_timeout: self.connect_timeout.0,
            acquire_timeout: self.acquire_timeout.0,
            lock_timeout: self.lock_timeout.0,
            instance_timeout: self.instance_timeout.0,
            create_missing,
        })
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        let settings = DatabaseSettings::default();
        Self {
            url: "sqlite://./data".to_owned(),
            boundaries: BTreeMap::new(),
            in_doubt_timeout_secs: 60,
            recovery_interval_secs: 2,
            connect_timeout: ConfigDuration(settings.connect_timeout),
            acquire_timeout: ConfigDuration(settings.acquire_timeout),
            lock_timeout: ConfigDuration(settings.lock_timeout),
            instance_timeout: ConfigDuration(settings.instance_timeout),
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
    /// How long stock stays held for a placement, in minutes; an expired hold whose
    /// placement is over goes back to available stock.
    pub hold_minutes: u32,
    /// How long `POST /api/orders` waits for the placement before answering
    /// `202 Accepted` with a status URL.
    pub placement_wait: ConfigDuration,
    /// How often expired holds are looked for.
    pub release_holds_every: ConfigDuration,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            hold_minutes: 15,
            placement_wait: ConfigDuration(Duration::from_secs(5)),
            release_holds_every: ConfigDuration(Duration::from_secs(60)),
        }
    }
}

impl OrdersConfig {
    /// How long a placement request waits before answering `202 Accepted`.
    ///
    /// # Errors
    /// A wait the HTTP request timeout would cut short, naming the key.
    pub fn placement_wait(&self, http: &HttpConfig) -> Result<Duration, ConfigError> {
        let timeout = http.request_timeout();
        if self.placement_wait.0 >= timeout {
            return Err(ConfigError(format!(
                "orders.placement_wait: {:?} must be shorter than http.request_timeout_secs ({timeout:?})",
                self.placement_wait.0
            )));
        }
        Ok(self.placement_wait.0)
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
    pub latency: ConfigDuration,
    /// The share of requests (0 to 1) that fail as if the gateway were unavailable,
    /// half of them after taking effect (a lost response).
    pub failure_rate: f64,
    /// The share of charges (0 to 1) that are declined.
    pub decline_rate: f64,
    /// How long one charge or refund may take before it counts as failed (and is
    /// retried under the same idempotency key).
    pub timeout: ConfigDuration,
    /// Attempts at a charge (or a refund) before the placement gives up: a charge
    /// is then undone, a refund left to an operator.
    pub max_attempts: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let retry = orchestration::saga::RetryPolicy::default();
        Self {
            latency: ConfigDuration::default(),
            failure_rate: 0.0,
            decline_rate: 0.0,
            timeout: ConfigDuration(retry.timeout),
            max_attempts: retry.max_attempts,
        }
    }
}

impl PaymentsConfig {
    /// The payments rule.
    ///
    /// # Errors
    /// A negative threshold, naming the key.
    pub fn policy(&self) -> Result<payments::PaymentPolicy, ConfigError> {
        if self.verification_threshold_minor < 0 {
            return Err(ConfigError(format!(
                "payments.verification_threshold_minor: {} must not be negative",
                self.verification_threshold_minor
            )));
        }
        Ok(payments::PaymentPolicy {
            verification_threshold_minor: self.verification_threshold_minor,
        })
    }

    /// The simulated gateway's options.
    ///
    /// # Errors
    /// A rate outside 0 to 1, naming the key.
    pub fn gateway(&self) -> Result<payments::SimulatedGatewayOptions, ConfigError> {
        for (key, rate) in [
            ("failure_rate", self.gateway.failure_rate),
            ("decline_rate", self.gateway.decline_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(ConfigError(format!(
                    "payments.gateway.{key}: {rate} must be between 0 and 1"
                )));
            }
        }
        Ok(payments::SimulatedGatewayOptions {
            latency: self.gateway.latency.0,
            failure_rate: self.gateway.failure_rate,
            decline_rate: self.gateway.decline_rate,
        })
    }

    /// How calls to the gateway are timed out and retried.
    ///
    /// # Errors
    /// No attempt allowed, or no time for one, naming the key.
    pub fn charge_retry(&self) -> Result<orchestration::saga::RetryPolicy, ConfigError> {
        if self.gateway.max_attempts == 0 {
            return Err(ConfigError(
                "payments.gateway.max_attempts: must be at least 1".to_owned(),
            ));
        }
        if self.gateway.timeout.0.is_zero() {
            return Err(ConfigError(
                "payments.gateway.timeout: must be longer than zero".to_owned(),
            ));
        }
        Ok(orchestration::saga::RetryPolicy {
            max_attempts: self.gateway.max_attempts,
            timeout: self.gateway.timeout.0,
            ..orchestration::saga::RetryPolicy::default()
        })
    }
}

/// Event delivery: how the outbox dispatcher claims, delivers, retries and prunes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Messages claimed at once per database.
    pub batch_size: u32,
    /// Deliveries running at once per database (one key's events run one at a time).
    pub concurrency: usize,
    /// Deliveries of one event to one subscriber before it is dead.
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles per failure, with jitter.
    pub initial_backoff: ConfigDuration,
    /// Longest delay between retries.
    pub max_backoff: ConfigDuration,
    /// How long a claim holds its messages; a crashed claimer's messages are taken
    /// over after it. Must exceed `handler_timeout` × `batch_size` / `concurrency`
    /// (rounded up): the time a claimed batch may take.
    pub lease: ConfigDuration,
    /// A delivery still running after this long counts as failed.
    pub handler_timeout: ConfigDuration,
    /// How often to look for due messages when nothing wakes the dispatcher.
    pub poll_interval: ConfigDuration,
    /// Wake on PostgreSQL `LISTEN/NOTIFY` (polling remains the fallback).
    pub listen: bool,
    /// How long delivered events and inbox records are kept.
    pub retention: ConfigDuration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        let options = DispatcherOptions::default();
        Self {
            batch_size: options.batch_size,
            concurrency: options.concurrency,
            max_attempts: options.max_attempts,
            initial_backoff: ConfigDuration(options.backoff.initial),
            max_backoff: ConfigDuration(options.backoff.max),
            lease: ConfigDuration(options.lease),
            handler_timeout: ConfigDuration(options.handler_timeout),
            poll_interval: ConfigDuration(options.poll_interval),
            listen: options.listen,
            retention: ConfigDuration(options.retention),
        }
    }
}

impl OutboxConfig {
    /// The dispatcher's options.
    ///
    /// # Errors
    /// A value that would deliver twice or never, naming the key.
    pub fn dispatcher(&self) -> Result<DispatcherOptions, ConfigError> {
        let options = DispatcherOptions {
            batch_size: self.batch_size,
            concurrency: self.concurrency,
            max_attempts: self.max_attempts,
            backoff: Backoff::new(
                self.initial_backoff.0,
                self.max_backoff.0.max(self.initial_backoff.0),
            ),
            lease: self.lease.0,
            handler_timeout: self.handler_timeout.0,
            poll_interval: self.poll_interval.0,
            listen: self.listen,
            retention: self.retention.0,
            ..DispatcherOptions::default()
        };
        options
            .validate()
            .map_err(|e| ConfigError(format!("outbox.{}: {}", e.option, e.reason)))?;
        Ok(options)
    }
}

/// Hosted workers: the shutdown timeout, and per worker (by name) how it is
/// supervised: `[workers.two_phase_recovery] policy = "stop_host"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WorkersConfig {
    /// How long shutdown waits for workers to stop before abandoning them.
    pub shutdown_timeout: ConfigDuration,
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
            shutdown_timeout: ConfigDuration(Duration::from_secs(30)),
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
    pub initial_backoff: Option<ConfigDuration>,
    /// Longest delay between restarts.
    pub max_backoff: Option<ConfigDuration>,
    /// Most restarts within `restart_window` before the worker is given up on.
    pub max_restarts: Option<u32>,
    /// The window over which restarts are counted.
    pub restart_window: Option<ConfigDuration>,
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
            restarts.backoff.initial = initial.0;
        }
        if let Some(max) = config.max_backoff {
            restarts.backoff.max = max.0;
        }
        if let Some(max_restarts) = config.max_restarts {
            restarts.max_restarts = max_restarts;
        }
        if let Some(window) = config.restart_window {
            restarts.window = window.0;
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

/// A duration in configuration: a number of seconds (`30`, `0.5`) or a number with a
/// unit (`500ms`, `30s`, `2m`, `1h`, `7d`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// Parses `30`, `0.5`, `500ms`, `30s`, `2m`, `1h` or `7d`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a duration such as 30s, 500ms, 2m or 1h"))?;
        let seconds = match unit.trim() {
            "" | "s" => number,
            "ms" => number / 1000.0,
            "m" | "min" => number * 60.0,
            "h" => number * 3600.0,
            "d" => number * 86_400.0,
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{text}` (use ms, s, m, h or d)"
                ));
            }
        };
        Duration::try_from_secs_f64(seconds)
            .map(Self)
            .map_err(|e| format!("`{text}`: {e}"))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(f64),
            Text(String),
        }
        let parsed = match Raw::deserialize(deserializer)? {
            Raw::Seconds(seconds) => Duration::try_from_secs_f64(seconds)
                .map(Self)
                .map_err(|e| format!("{seconds}: {e}")),
            Raw::Text(text) => Self::parse(&text),
        };
        parsed.map_err(serde::de::Error::custom)
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
        config.validate()?;
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

    /// Checks every value that does not need a database, so that a bad one stops the
    /// app before it connects.
    ///
    /// # Errors
    /// The first invalid value, naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.http.body_limit_bytes == 0 {
            return Err(ConfigError(
                "http.body_limit_bytes: must be more than zero (0 refuses every request body)"
                    .to_owned(),
            ));
        }
        if self.http.header_read_timeout.0.is_zero() {
            return Err(ConfigError(
                "http.header_read_timeout: must be longer than zero".to_owned(),
            ));
        }
        if self.http.max_connections == 0 {
            return Err(ConfigError(
                "http.max_connections: must be at least 1".to_owned(),
            ));
        }
        if self.http.request_timeout_secs == 0 {
            return Err(ConfigError(
                "http.request_timeout_secs: must be more than zero".to_owned(),
            ));
        }
        self.orders.placement_wait(&self.http)?;
        self.payments.policy()?;
        self.payments.gateway()?;
        self.payments.charge_retry()?;
        self.outbox.dispatcher()?;
        self.database.settings(true)?;
        self.database_urls()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.filter)
            .map_err(|e| ConfigError(format!("log.filter: `{}`: {e}", self.log.filter)))?;
        if self.metrics.addr == Some(self.http.addr) && self.http.addr.port() != 0 {
            return Err(ConfigError(format!(
                "metrics.addr: {} is http.addr; leave it unset to serve /metrics there",
                self.http.addr
            )));
        }
        Ok(())
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

    /// How long stock stays reserved for a pending order.
    #[must_use]
    pub fn order_hold(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.orders.hold_minutes))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // The closure signature is figment::Jail's.
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_file_and_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "switchyard.toml",
                "[http]\naddr = \"0.0.0.0:9000\"\nrequest_timeout_secs = 20\n",
            )?;
            jail.set_env("SWITCHYARD_HTTP__ADDR", "127.0.0.1:7000");
            jail.set_env(
                "SWITCHYARD_DATABASE__BOUNDARIES__ORDERS__URL",
                "sqlite://./orders",
            );
            let config = Config::load(Path::new("switchyard.toml")).unwrap();
            assert_eq!(config.http.addr.to_string(), "127.0.0.1:7000");
            assert_eq!(config.http.request_timeout_secs, 20);
            assert_eq!(config.database.url, "sqlite://./data");
            let topology = config.topology(&["inventory", "orders"]).unwrap();
            assert_eq!(topology.url_of("orders").to_string(), "sqlite://./orders");
            assert_eq!(topology.url_of("inventory").to_string(), "sqlite://./data");
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SWITCHYARD_HTTP__ADDR", "not-an-address");
            let err = Config::load(Path::new("none.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.to_lowercase().contains("http.addr"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("SWITCHYARD_HTTP__PORT", "80");
            let err = Config::load(Path::new("none.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("port"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("SWITCHYARD_DATABASE__URL", "redis://localhost");
            let err = Config::load(Path::new("none.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("database.url"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "SWITCHYARD_DATABASE__BOUNDARIES__BILLING__URL",
                "sqlite://./b",
            );
            let config = Config::load(Path::new("none.toml")).unwrap();
            let err = config.topology(&["inventory"]).unwrap_err().to_string();
            assert!(err.contains("database.boundaries.billing.url"), "{err}");
            Ok(())
        });
    }

    /// Loads with `variables` set; the error, if any.
    fn load_error(file: Option<&str>, variables: &[(&str, &str)]) -> Option<String> {
        let mut error = None;
        figment::Jail::expect_with(|jail| {
            if let Some(file) = file {
                jail.create_file("switchyard.toml", file)?;
            }
            for (name, value) in variables {
                jail.set_env(name, value);
            }
            error = Config::load(Path::new("switchyard.toml"))
                .err()
                .map(|e| e.to_string());
            Ok(())
        });
        error
    }

    #[test]
    fn unknown_keys_are_refused_at_every_level_naming_the_key() {
        for (file, variable, key) in [
            (None, Some("SWITCHYARD_DATABSE__URL"), "databse"),
            (None, Some("SWITCHYARD_HTTPP__ADDR"), "httpp"),
            (
                None,
                Some("SWITCHYARD_DATABASE__LOCK_TIMOUT"),
                "lock_timout",
            ),
            (Some("[databse]\nurl = \"sqlite://./x\"\n"), None, "databse"),
            (Some("[outbox]\nbatch = 3\n"), None, "batch"),
        ] {
            let variables: Vec<(&str, &str)> = variable.map(|v| (v, "1")).into_iter().collect();
            let err = load_error(file, &variables)
                .unwrap_or_else(|| panic!("{file:?} {variable:?} was accepted"));
            assert!(err.contains(key), "{err}");
        }
        // The file's path and the test harness's variables are not configuration.
        assert_eq!(
            load_error(
                None,
                &[
                    ("SWITCHYARD_CONFIG", "other.toml"),
                    ("SWITCHYARD_TEST_POSTGRES_URL", "postgres://x@y/z"),
                ]
            ),
            None
        );
    }

    #[test]
    fn values_that_cannot_work_are_refused_at_load_naming_the_key() {
        for (variable, value, key) in [
            (
                "SWITCHYARD_HTTP__BODY_LIMIT_BYTES",
                "0",
                "http.body_limit_bytes",
            ),
            ("SWITCHYARD_LOG__FILTER", "info,[[[", "log.filter"),
            (
                "SWITCHYARD_DATABASE__LOCK_TIMEOUT",
                "0s",
                "database.lock_timeout",
            ),
            (
                "SWITCHYARD_DATABASE__CONNECT_TIMEOUT",
                "0",
                "database.connect_timeout",
            ),
            ("SWITCHYARD_OUTBOX__CONCURRENCY", "0", "outbox.concurrency"),
            (
                "SWITCHYARD_PAYMENTS__GATEWAY__FAILURE_RATE",
                "2",
                "payments.gateway.failure_rate",
            ),
        ] {
            let err = load_error(None, &[(variable, value)])
                .unwrap_or_else(|| panic!("{variable}={value} was accepted"));
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn a_named_configuration_file_must_exist() {
        figment::Jail::expect_with(|_jail| {
            let err = Config::load_required(Path::new("missing.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("missing.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_database_password_never_appears_in_an_error() {
        for url in [
            "postgres://postgres:secretpw@127.0.0.1:99999/x",
            "postgres://postgres:secretpw@127.0.0.1:5432",
            "redis://postgres:secretpw@127.0.0.1",
        ] {
            let err = load_error(None, &[("SWITCHYARD_DATABASE__URL", url)])
                .unwrap_or_else(|| panic!("{url} was accepted"));
            assert!(!err.contains("secretpw"), "{err}");
            assert!(err.contains("database.url"), "{err}");
        }
    }

    #[test]
    fn worker_settings_come_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SWITCHYARD_WORKERS__SHUTDOWN_TIMEOUT", "5");
            jail.set_env(
                "SWITCHYARD_WORKERS__TWO_PHASE_RECOVERY__POLICY",
                "stop_host",
            );
            jail.set_env("SWITCHYARD_WORKERS__OUTBOX__INITIAL_BACKOFF", "250ms");
            jail.set_env("SWITCHYARD_WORKERS__OUTBOX__MAX_RESTARTS", "3");
            let config = Config::load(Path::new("none.toml")).unwrap();
            assert_eq!(config.workers.shutdown_timeout.0, Duration::from_secs(5));
            assert_eq!(
                config
                    .workers
                    .policy("two_phase_recovery", Policy::default()),
                Policy::StopHost
            );
            let Policy::Restart(backoff) = config.workers.policy("outbox", Policy::default())
            else {
                panic!("outbox keeps its restart policy");
            };
            assert_eq!(backoff.backoff.initial, Duration::from_millis(250));
            assert_eq!(backoff.max_restarts, 3);
            assert_eq!(backoff.backoff.max, Restarts::default().backoff.max);
            let err = config
                .workers
                .check_names(&["two_phase_recovery"])
                .unwrap_err()
                .to_string();
            assert!(err.contains("workers.outbox"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "SWITCHYARD_WORKERS__TWO_PHASE_RECOVERY__POLICY",
                "sometimes",
            );
            let err = Config::load(Path::new("none.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("workers.two_phase_recovery") && err.contains("sometimes"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn gateway_calls_are_retried_as_configured() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SWITCHYARD_PAYMENTS__GATEWAY__TIMEOUT", "2s");
            jail.set_env("SWITCHYARD_PAYMENTS__GATEWAY__MAX_ATTEMPTS", "2");
            let config = Config::load(Path::new("none.toml")).unwrap();
            let retry = config.payments.charge_retry().unwrap();
            assert_eq!(
                (retry.timeout, retry.max_attempts),
                (Duration::from_secs(2), 2)
            );
            assert_eq!(
                retry.backoff.max,
                orchestration::saga::RetryPolicy::default().backoff.max
            );
            Ok(())
        });
        let defaults = PaymentsConfig::default().charge_retry().unwrap();
        assert_eq!(defaults, orchestration::saga::RetryPolicy::default());
        for (gateway, key) in [
            (
                GatewayConfig {
                    max_attempts: 0,
                    ..GatewayConfig::default()
                },
                "payments.gateway.max_attempts",
            ),
            (
                GatewayConfig {
                    timeout: ConfigDuration(Duration::ZERO),
                    ..GatewayConfig::default()
                },
                "payments.gateway.timeout",
            ),
        ] {
            let config = PaymentsConfig {
                gateway,
                ..PaymentsConfig::default()
            };
            let err = config.charge_retry().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn outbox_settings_that_would_deliver_twice_or_never_are_refused_naming_the_key() {
        let config = OutboxConfig::default();
        let options = config.dispatcher().unwrap();
        assert_eq!(options.lease, Duration::from_secs(60));
        for (change, key) in [
            (
                (|c: &mut OutboxConfig| c.lease = ConfigDuration(Duration::from_secs(40)))
                    as fn(&mut OutboxConfig),
                "outbox.lease",
            ),
            (
                |c: &mut OutboxConfig| c.concurrency = 0,
                "outbox.concurrency",
            ),
            (
                |c: &mut OutboxConfig| c.max_attempts = 0,
                "outbox.max_attempts",
            ),
            (
                |c: &mut OutboxConfig| c.poll_interval = ConfigDuration(Duration::ZERO),
                "outbox.poll_interval",
            ),
        ] {
            let mut bad = OutboxConfig::default();
            change(&mut bad);
            let err = bad.dispatcher().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn durations_read_as_seconds_or_with_a_unit() {
        for (text, expected) in [
            ("30", Duration::from_secs(30)),
            ("0.5", Duration::from_millis(500)),
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("7d", Duration::from_secs(7 * 86_400)),
            ("1h", Duration::from_secs(3600)),
        ] {
            assert_eq!(
                ConfigDuration::parse(text),
                Ok(ConfigDuration(expected)),
                "{text}"
            );
        }
        for bad in ["", "fast", "5 weeks", "-1s"] {
            assert!(ConfigDuration::parse(bad).is_err(), "{bad}");
        }
        figment::Jail::expect_with(|jail| {
            jail.set_env("SWITCHYARD_WORKERS__SHUTDOWN_TIMEOUT", "soon");
            let err = Config::load(Path::new("none.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.to_lowercase().contains("workers.shutdown_timeout"),
                "{err}"
            );
            Ok(())
        });
    }
}
