//! Configuration: built-in defaults, then `switchyard.toml` (if present), then
//! `SWITCHYARD_*` environment variables with `__` between nested keys
//! (`SWITCHYARD_DATABASE__BOUNDARIES__ORDERS__URL`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use orchestration::{DatabaseUrl, Topology};
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The HTTP server.
    pub http: HttpConfig,
    /// Where boundaries live.
    pub database: DatabaseConfig,
    /// Order placement.
    pub orders: OrdersConfig,
    /// Logging.
    pub log: LogConfig,
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
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout_secs: 30,
            body_limit_bytes: 64 * 1024,
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
    /// seconds (two-phase commit across PostgreSQL databases).
    pub in_doubt_timeout_secs: u64,
    /// How often in-doubt transactions are looked for, in seconds.
    pub recovery_interval_secs: u64,
}

impl DatabaseConfig {
    /// How old an undecided prepared transaction must be before recovery rolls it back.
    #[must_use]
    pub fn in_doubt_timeout(&self) -> Duration {
        Duration::from_secs(self.in_doubt_timeout_secs)
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://./data".to_owned(),
            boundaries: BTreeMap::new(),
            in_doubt_timeout_secs: 60,
            recovery_interval_secs: 30,
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
    /// How long stock stays reserved for a pending order, in minutes.
    pub hold_minutes: u32,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self { hold_minutes: 15 }
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter such as `info,switchyard=debug`; `RUST_LOG` wins if set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info,sqlx=warn".to_owned(),
        }
    }
}

/// The configuration is invalid. The message names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads defaults, then `file` if it exists, then `SWITCHYARD_*` variables.
    ///
    /// # Errors
    /// A value of the wrong type or an unknown key, named in the message.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        Figment::new()
            .merge(Toml::file(file))
            .merge(Env::prefixed("SWITCHYARD_").split("__"))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))
    }

    /// The placement of the `known` boundaries described by `database`.
    ///
    /// # Errors
    /// An unparsable URL or an override for a boundary that does not exist, naming
    /// the key.
    pub fn topology(&self, known: &[&str]) -> Result<Topology, ConfigError> {
        let parse = |key: &str, url: &str| {
            url.parse::<DatabaseUrl>()
                .map_err(|e| ConfigError(format!("{key}: {e}")))
        };
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
                "[http]\naddr = \"0.0.0.0:9000\"\nrequest_timeout_secs = 5\n",
            )?;
            jail.set_env("SWITCHYARD_HTTP__ADDR", "127.0.0.1:7000");
            jail.set_env(
                "SWITCHYARD_DATABASE__BOUNDARIES__ORDERS__URL",
                "sqlite://./orders",
            );
            let config = Config::load(Path::new("switchyard.toml")).unwrap();
            assert_eq!(config.http.addr.to_string(), "127.0.0.1:7000");
            assert_eq!(config.http.request_timeout_secs, 5);
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
            let config = Config::load(Path::new("none.toml")).unwrap();
            let err = config.topology(&["inventory"]).unwrap_err().to_string();
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
}
