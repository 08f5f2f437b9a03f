//! Where boundaries live: one database URL for all of them, with per-boundary
//! overrides; the engines, and the identity of a database.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use url::Url;

/// The database engines Switchyard runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite, one file per boundary, attached together.
    Sqlite,
    /// PostgreSQL, one schema per boundary.
    Postgres,
    /// MySQL or MariaDB, one database per boundary.
    MySql,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
        })
    }
}

/// The identity of a database: its URL without the password. Safe to log.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatabaseId(Arc<str>);

impl DatabaseId {
    pub(crate) fn new(display: String) -> Self {
        Self(display.into())
    }
}

impl fmt::Display for DatabaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DatabaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseId({})", self.0)
    }
}

/// A parsed database URL.
///
/// `sqlite://DIR` names a directory holding one file per boundary (`DIR/inventory.db`);
/// `postgres://…` and `mysql://…` (or `mariadb://…`) name a server and database.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A directory of SQLite files, one per boundary.
    Sqlite {
        /// The directory, as written in the URL.
        dir: PathBuf,
    },
    /// A PostgreSQL database; each boundary is a schema in it.
    Postgres(Url),
    /// A MySQL or MariaDB server; each boundary is a database on it.
    MySql(Url),
}

impl DatabaseUrl {
    /// Which engine this URL names.
    #[must_use]
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite { .. } => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
            Self::MySql(_) => Backend::MySql,
        }
    }

    /// The identity of the database this URL names, safe to log (no password).
    #[must_use]
    pub fn id(&self) -> DatabaseId {
        DatabaseId::new(self.to_string())
    }

    /// The URL as written, password included, for connecting. Never log it: use
    /// `Display`, which hides the password.
    #[must_use]
    pub fn connection_string(&self) -> String {
        match self {
            Self::Sqlite { dir } => format!("sqlite://{}", dir.display()),
            Self::Postgres(url) | Self::MySql(url) => url.to_string(),
        }
    }
}

/// A database URL could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid database URL `{url}`: {reason}")]
pub struct InvalidUrl {
    /// The URL, with any password redacted.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for DatabaseUrl {
    type Err = InvalidUrl;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| InvalidUrl {
            url: redact(s),
            reason: reason.to_owned(),
        };
        if let Some(dir) = s.strip_prefix("sqlite://") {
            if dir.is_empty() || dir.contains('?') || dir.contains(":memory:") {
                return Err(invalid(
                    "a SQLite URL names a directory for the boundary files, e.g. sqlite://./data",
                ));
            }
            return Ok(Self::Sqlite {
                dir: PathBuf::from(dir),
            });
        }
        let url = Url::parse(s).map_err(|e| invalid(&e.to_string()))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("the URL names no host"));
        }
        match url.scheme() {
            "postgres" | "postgresql" => {
                if url.path().trim_start_matches('/').is_empty() {
                    return Err(invalid(
                        "a PostgreSQL URL must name a database, e.g. postgres://postgres@127.0.0.1:5432/switchyard",
                    ));
                }
                Ok(Self::Postgres(url))
            }
            "mysql" | "mariadb" => {
                let mut url = url;
                url.set_scheme("mysql")
                    .map_err(|()| invalid("bad scheme"))?;
                Ok(Self::MySql(url))
            }
            other => Err(invalid(&format!(
                "unsupported scheme `{other}`: use sqlite://DIR, postgres://… or mysql://…"
            ))),
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.connection_string()))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Replaces a URL's password with `***`, so it can be logged and shown in errors. It
/// reads the text itself rather than parsing it: a URL that does not parse (a port out
/// of range, a stray character) must not show its password either.
fn redact(s: &str) -> String {
    let Some(scheme_end) = s.find("://").map(|i| i + 3) else {
        return s.to_owned();
    };
    let rest = &s[scheme_end..];
    // The authority ends at the path, query or fragment; its user information, at its
    // last `@` (a password may itself contain `@`, or `/`, when it is not encoded).
    let authority_end = rest.rfind('@').map_or_else(
        || rest.find(['/', '?', '#']).unwrap_or(rest.len()),
        |at| at + rest[at..].find(['/', '?', '#']).unwrap_or(rest.len() - at),
    );
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return s.to_owned();
    };
    match authority[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &s[..scheme_end],
            &authority[..colon],
            &rest[at..]
        ),
        None => s.to_owned(),
    }
}

/// The placement of every boundary: a default database and per-boundary overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    default: DatabaseUrl,
    overrides: BTreeMap<String, DatabaseUrl>,
}

impl Topology {
    /// All boundaries on `default`.
    #[must_use]
    pub fn new(default: DatabaseUrl) -> Self {
        Self {
            default,
            overrides: BTreeMap::new(),
        }
    }

    /// Places `boundary` on `url` instead of the default database.
    #[must_use]
    pub fn with_override(mut self, boundary: impl Into<String>, url: DatabaseUrl) -> Self {
        self.overrides.insert(boundary.into(), url);
        self
    }

    /// The default database.
    #[must_use]
    pub fn default_url(&self) -> &DatabaseUrl {
        &self.default
    }

    /// The per-boundary overrides, by boundary name.
    pub fn overrides(&self) -> impl Iterator<Item = (&str, &DatabaseUrl)> {
        self.overrides
            .iter()
            .map(|(name, url)| (name.as_str(), url))
    }

    /// The database that holds `boundary`.
    #[must_use]
    pub fn url_of(&self, boundary: &str) -> &DatabaseUrl {
        self.overrides.get(boundary).unwrap_or(&self.default)
    }
}

/// Where one boundary lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundaryLocation {
    /// The boundary's name.
    pub boundary: &'static str,
    /// The database that holds it.
    pub database: DatabaseId,
}

impl fmt::Display for BoundaryLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.boundary, self.database)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_backend() {
        let cases = [
            ("sqlite://./data", Backend::Sqlite),
            ("sqlite:///var/lib/switchyard", Backend::Sqlite),
            (
                "postgres://postgres@127.0.0.1:5432/switchyard",
                Backend::Postgres,
            ),
            ("postgresql://u:p@db/app", Backend::Postgres),
            ("mysql://root@127.0.0.1:3306", Backend::MySql),
            ("mariadb://root@127.0.0.1:3306", Backend::MySql),
        ];
        for (url, backend) in cases {
            assert_eq!(
                url.parse::<DatabaseUrl>().unwrap().backend(),
                backend,
                "{url}"
            );
        }
    }

    #[test]
    fn rejects_what_it_cannot_serve() {
        for url in [
            "",
            "sqlite://",
            "sqlite::memory:",
            "postgres://127.0.0.1:5432",
            "redis://127.0.0.1",
            "not a url",
        ] {
            let err = url.parse::<DatabaseUrl>().unwrap_err();
            assert!(
                !err.reason.is_empty() && err.to_string().starts_with("invalid database URL"),
                "{url}: {err}"
            );
        }
    }

    #[test]
    fn never_shows_a_password() {
        let url: DatabaseUrl = "postgres://app:s3cret@db:5432/app".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://app:***@db:5432/app");
        assert!(!format!("{url:?}").contains("s3cret"));
        // Whether it parses or not, what is shown hides the password.
        for written in [
            "postgres://app:s3cret@db:5432",
            "postgres://postgres:s3cret@127.0.0.1:99999/x",
            "postgres://app:s3c/ret@db:5432/x",
            "postgres://app:s3c@ret@db:5432/x",
            "mysql://app:s3cret@db name/x",
        ] {
            let shown = match written.parse::<DatabaseUrl>() {
                Ok(url) => format!("{url} {url:?}"),
                Err(err) => err.to_string(),
            };
            assert!(!shown.contains("s3c"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        assert_eq!(redact("sqlite://./data"), "sqlite://./data");
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
    }

    #[test]
    fn overrides_place_one_boundary_elsewhere() {
        let topology = Topology::new("sqlite://./data".parse().unwrap())
            .with_override("orders", "sqlite://./orders-data".parse().unwrap());
        assert_eq!(topology.url_of("inventory").to_string(), "sqlite://./data");
        assert_eq!(
            topology.url_of("orders").to_string(),
            "sqlite://./orders-data"
        );
    }
}
