//! The configuration checked and converted, once, before any I/O: every value that
//! can be wrong is refused here naming its key, and what the app builds from the
//! configuration (pools, the dispatcher, the placement saga) takes these ready-made
//! values.

use std::time::Duration;

use orchestration::database::DatabaseSettings;
use orchestration::dispatch::DispatcherOptions;
use orchestration::saga::RetryPolicy;
use payments::{PaymentPolicy, SimulatedGatewayOptions};
use workflows::LoginSettings;

use super::{Config, ConfigError};

/// What the app runs with, derived from a [`Config`] by [`Config::settings`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// How the fabric connects and how long it waits; `create_missing` is on (a
    /// command that only reads turns it off).
    pub database: DatabaseSettings,
    /// How old an undecided prepared transaction must be before recovery rolls it back.
    pub in_doubt_timeout: Duration,
    /// How often in-doubt transactions are looked for.
    pub recovery_interval: Duration,
    /// A request still running after this long is answered 503.
    pub request_timeout: Duration,
    /// How long a placement request waits before answering `202 Accepted`.
    pub placement_wait: Duration,
    /// How long stock stays held for a placement.
    pub order_hold: chrono::Duration,
    /// How long after placing an order its customer may refund it.
    pub refund_window: chrono::Duration,
    /// The rule for unverified customers.
    pub payment_policy: PaymentPolicy,
    /// The simulated gateway's behaviour.
    pub gateway: SimulatedGatewayOptions,
    /// How calls to the gateway are timed out and retried.
    pub charge_retry: RetryPolicy,
    /// How the outbox dispatcher claims, delivers, retries and prunes.
    pub dispatcher: DispatcherOptions,
    /// How logins are checked and what they start.
    pub login: LoginSettings,
    /// How notifications are delivered and retried.
    pub delivery: workflows::DeliveryPolicy,
    /// How registrations are hashed and throttled.
    pub registration: workflows::RegistrationSettings,
    /// The registration mails' link and token lifetime.
    pub mail: workflows::MailSettings,
    /// What delivers notifications.
    pub sender: std::sync::Arc<dyn notifications::Sender>,
}

fn invalid(key: &str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{key}: {reason}"))
}

fn positive(key: &str, value: Duration) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        return Err(invalid(key, "must be longer than zero"));
    }
    Ok(value)
}

impl Config {
    /// Checks every value and converts those the app builds from. [`Config::load`]
    /// calls it, so a configuration that loaded converts without error.
    ///
    /// # Errors
    /// The first invalid value, naming its key.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let http = &self.http;
        if http.body_limit_bytes == 0 {
            return Err(invalid(
                "http.body_limit_bytes",
                "must be more than zero (0 refuses every request body)",
            ));
        }
        positive("http.header_read_timeout", http.header_read_timeout)?;
        if http.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        let request_timeout = positive("http.request_timeout", http.request_timeout)?;
        let placement_wait = self.orders.placement_wait;
        if placement_wait >= request_timeout {
            return Err(invalid(
                "orders.placement_wait",
                format!(
                    "{placement_wait:?} must be shorter than http.request_timeout ({request_timeout:?})"
                ),
            ));
        }
        let order_hold = chrono::Duration::from_std(positive("orders.hold", self.orders.hold)?)
            .map_err(|err| invalid("orders.hold", err))?;
        positive("vendor_sync.every", self.vendor_sync.every)?;
        if !(1..=50_000).contains(&self.vendor_sync.chunk_size) {
            return Err(invalid(
                "vendor_sync.chunk_size",
                format!("{} must be from 1 to 50000", self.vendor_sync.chunk_size),
            ));
        }
        let refund_window = chrono::Duration::from_std(self.orders.refund_window)
            .map_err(|err| invalid("orders.refund_window", err))?;
        let payments = &self.payments;
        if payments.verification_threshold_minor < 0 {
            return Err(invalid(
                "payments.verification_threshold_minor",
                format!(
                    "{} must not be negative",
                    payments.verification_threshold_minor
                ),
            ));
        }
        let gateway = &payments.gateway;
        for (key, rate) in [
            ("failure_rate", gateway.failure_rate),
            ("decline_rate", gateway.decline_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(invalid(
                    &format!("payments.gateway.{key}"),
                    format!("{rate} must be between 0 and 1"),
                ));
            }
        }
        if gateway.max_attempts == 0 {
            return Err(invalid(
                "payments.gateway.max_attempts",
                "must be at least 1",
            ));
        }
        let charge_retry = RetryPolicy {
            max_attempts: gateway.max_attempts,
            timeout: positive("payments.gateway.timeout", gateway.timeout)?,
            ..RetryPolicy::default()
        };
        let mut dispatcher = self.outbox.clone();
        dispatcher.backoff.max = dispatcher.backoff.max.max(dispatcher.backoff.initial);
        dispatcher
            .validate()
            .map_err(|e| invalid(&format!("outbox.{}", e.option), e.reason))?;
        let database = &self.database;
        let database_settings = DatabaseSettings {
            connect_timeout: positive("database.connect_timeout", database.connect_timeout)?,
            acquire_timeout: positive("database.acquire_timeout", database.acquire_timeout)?,
            lock_timeout: positive("database.lock_timeout", database.lock_timeout)?,
            instance_timeout: positive("database.instance_timeout", database.instance_timeout)?,
            create_missing: true,
            clock: orchestration::clock::Clock::system(),
        };
        self.database_urls()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.filter)
            .map_err(|e| invalid("log.filter", format!("`{}`: {e}", self.log.filter)))?;
        if self.metrics.addr == Some(http.addr) && http.addr.port() != 0 {
            return Err(invalid(
                "metrics.addr",
                format!(
                    "{} is http.addr; leave it unset to serve /metrics there",
                    http.addr
                ),
            ));
        }
        let login = self.login_settings()?;
        let registrations_per_client = self.identity.max_registrations_per_client;
        if registrations_per_client == 0 {
            return Err(invalid(
                "identity.max_registrations_per_client",
                "must be at least 1",
            ));
        }
        let notices = &self.notifications;
        positive("notifications.deliver_every", notices.deliver_every)?;
        if notices.max_attempts == 0 {
            return Err(invalid("notifications.max_attempts", "must be at least 1"));
        }
        let delivery = workflows::DeliveryPolicy {
            batch: 50,
            attempt_timeout: positive("notifications.attempt_timeout", notices.attempt_timeout)?,
            backoff_initial: positive("notifications.backoff_initial", notices.backoff_initial)?,
            backoff_max: notices.backoff_max.max(notices.backoff_initial),
            max_attempts: notices.max_attempts,
        };
        let sender: std::sync::Arc<dyn notifications::Sender> = match notices.sender {
            super::SenderName::File => {
                std::sync::Arc::new(notifications::FileSender::new(&notices.dir))
            }
            super::SenderName::Smtp => {
                let smtp = &notices.smtp;
                if smtp.host.trim().is_empty() {
                    return Err(invalid("notifications.smtp.host", "must not be empty"));
                }
                std::sync::Arc::new(
                    notifications::SmtpSender::new(
                        &smtp.host,
                        smtp.port,
                        &smtp.from,
                        delivery.attempt_timeout,
                    )
                    .map_err(|err| invalid("notifications.smtp.from", err))?,
                )
            }
        };
        Ok(Settings {
            database: database_settings,
            in_doubt_timeout: database.in_doubt_timeout,
            recovery_interval: positive("database.recovery_interval", database.recovery_interval)?,
            request_timeout,
            placement_wait,
            order_hold,
            refund_window,
            payment_policy: PaymentPolicy {
                verification_threshold_minor: payments.verification_threshold_minor,
            },
            gateway: SimulatedGatewayOptions {
                latency: gateway.latency,
                failure_rate: gateway.failure_rate,
                decline_rate: gateway.decline_rate,
            },
            charge_retry,
            dispatcher,
            registration: workflows::RegistrationSettings {
                password: login.password,
                per_client: identity::ThrottlePolicy {
                    max_failures: registrations_per_client,
                    window: chrono::Duration::hours(1),
                },
            },
            mail: workflows::MailSettings {
                public_url: notices.public_url.trim_end_matches('/').to_owned(),
                verification_ttl: chrono::Duration::from_std(positive(
                    "identity.verification_ttl",
                    self.identity.verification_ttl,
                )?)
                .map_err(|err| invalid("identity.verification_ttl", err))?,
            },
            login,
            delivery,
            sender,
        })
    }

    fn login_settings(&self) -> Result<LoginSettings, ConfigError> {
        let identity = &self.identity;
        let span = |key: &str, value: Duration| {
            chrono::Duration::from_std(positive(key, value)?).map_err(|err| invalid(key, err))
        };
        let at_least_one = |key: &str, value: u32| {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
            Ok(value)
        };
        let window = span("identity.failure_window", identity.failure_window)?;
        let password = identity::PasswordPolicy {
            memory_kib: identity.password.memory_kib,
            iterations: identity.password.iterations,
            parallelism: identity.password.parallelism,
        };
        password
            .check()
            .map_err(|err| invalid("identity.password", err))?;
        Ok(LoginSettings {
            password,
            session_ttl: span("identity.session_ttl", identity.session_ttl)?,
            challenge_ttl: span("identity.challenge_ttl", identity.challenge_ttl)?,
            per_email: identity::ThrottlePolicy {
                max_failures: at_least_one(
                    "identity.max_failures_per_email",
                    identity.max_failures_per_email,
                )?,
                window,
            },
            per_client: identity::ThrottlePolicy {
                max_failures: at_least_one(
                    "identity.max_failures_per_client",
                    identity.max_failures_per_client,
                )?,
                window,
            },
        })
    }
}
