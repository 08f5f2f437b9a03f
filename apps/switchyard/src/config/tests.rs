//! The configuration's tests: loading, errors that name the key, and the checks made
//! before any I/O.
#![allow(clippy::result_large_err)] // The closure signature is figment::Jail's.
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
        assert_eq!(config.http.request_timeout, Duration::from_secs(20));
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
        (
            "SWITCHYARD_IDENTITY__PASSWORD__MEMORY_KIB",
            "1",
            "identity.password",
        ),
        (
            "SWITCHYARD_IDENTITY__MAX_FAILURES_PER_EMAIL",
            "0",
            "identity.max_failures_per_email",
        ),
        (
            "SWITCHYARD_NOTIFICATIONS__MAX_ATTEMPTS",
            "0",
            "notifications.max_attempts",
        ),
        (
            "SWITCHYARD_NOTIFICATIONS__SENDER",
            "pigeon",
            "NOTIFICATIONS.SENDER",
        ),
    ] {
        let err = load_error(None, &[(variable, value)])
            .unwrap_or_else(|| panic!("{variable}={value} was accepted"));
        assert!(err.contains(key), "{err}");
    }
}

#[test]
fn an_smtp_sender_needs_a_mailbox_to_send_from() {
    let err = load_error(
        None,
        &[
            ("SWITCHYARD_NOTIFICATIONS__SENDER", "smtp"),
            ("SWITCHYARD_NOTIFICATIONS__SMTP__FROM", "not a mailbox"),
        ],
    )
    .expect("refused");
    assert!(err.contains("notifications.smtp.from"), "{err}");
    assert!(
        load_error(None, &[("SWITCHYARD_NOTIFICATIONS__SENDER", "smtp")]).is_none(),
        "the default relay and sender are valid"
    );
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
        assert_eq!(config.workers.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(
            config
                .workers
                .policy("two_phase_recovery", Policy::default()),
            Policy::StopHost
        );
        let Policy::Restart(backoff) = config.workers.policy("outbox", Policy::default()) else {
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
        let retry = config.settings().unwrap().charge_retry;
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
    let defaults = Config::default().settings().unwrap().charge_retry;
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
                timeout: Duration::ZERO,
                ..GatewayConfig::default()
            },
            "payments.gateway.timeout",
        ),
    ] {
        let mut config = Config::default();
        config.payments.gateway = gateway;
        let err = config.settings().unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
}

#[test]
fn outbox_settings_that_would_deliver_twice_or_never_are_refused_naming_the_key() {
    let options = Config::default().settings().unwrap().dispatcher;
    assert_eq!(options.lease, Duration::from_secs(60));
    for (change, key) in [
        (
            (|c: &mut DispatcherOptions| c.lease = Duration::from_secs(10))
                as fn(&mut DispatcherOptions),
            "outbox.lease",
        ),
        (
            |c: &mut DispatcherOptions| c.concurrency = 0,
            "outbox.concurrency",
        ),
        (
            |c: &mut DispatcherOptions| c.max_attempts = 0,
            "outbox.max_attempts",
        ),
        (
            |c: &mut DispatcherOptions| c.poll_interval = Duration::ZERO,
            "outbox.poll_interval",
        ),
    ] {
        let mut bad = Config::default();
        change(&mut bad.outbox);
        let err = bad.settings().unwrap_err().to_string();
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
        assert_eq!(duration::parse(text), Ok(expected), "{text}");
    }
    for bad in ["", "fast", "5 fortnights", "-1s"] {
        assert!(duration::parse(bad).is_err(), "{bad}");
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
