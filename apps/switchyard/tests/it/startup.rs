//! Start-up refusals of the real binary: a named configuration file that does not
//! exist, a misspelt key, an unreachable database (fast, with the cause), and commands
//! that only read, which must create nothing.

use std::process::Stdio;
use std::time::{Duration, Instant};

use orchestration::testing::postgres_url;
use sea_orm::{ConnectionTrait, Statement};

use super::switchyard;

/// Runs the binary with `args` to its end; its exit code and stderr.
async fn run(mut command: tokio::process::Command, args: &[&str]) -> (Option<i32>, String) {
    command.args(args).stderr(Stdio::piped());
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the command ends in time")
        .expect("run switchyard");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_named_configuration_file_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().display());
    let (code, stderr) = run(
        switchyard(&url),
        &["--config", "no-such-file.toml", "migrate", "status"],
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no-such-file.toml"), "{stderr}");
}

#[tokio::test]
async fn a_misspelt_key_stops_the_app_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().display());
    for (variable, key) in [
        ("SWITCHYARD_DATABSE__URL", "databse"),
        ("SWITCHYARD_HTTPP__ADDR", "httpp"),
        ("SWITCHYARD_HTTP__ADR", "adr"),
    ] {
        let mut command = switchyard(&url);
        command.env(variable, "x");
        let (code, stderr) = run(command, &["migrate", "status"]).await;
        assert_eq!(code, Some(1), "{variable}: {stderr}");
        assert!(stderr.contains(key), "{variable}: {stderr}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was created"
    );
}

#[tokio::test]
async fn an_unreachable_database_fails_fast_and_names_the_cause() {
    // Nothing listens on port 1: refused at once.
    let started = Instant::now();
    let (code, stderr) = run(
        switchyard("postgres://postgres:secretpw@127.0.0.1:1/switchyard"),
        &["migrate", "status"],
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
    assert!(!stderr.contains("secretpw"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");

    // A server that accepts and never answers: given up after the connect timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut command = switchyard(&format!("postgres://postgres@127.0.0.1:{port}/switchyard"));
    command.env("SWITCHYARD_DATABASE__CONNECT_TIMEOUT", "1s");
    let started = Instant::now();
    let (code, stderr) = run(command, &["migrate", "status"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("database.connect_timeout"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(8), "{stderr}");
    accepting.abort();
}

#[tokio::test]
async fn commands_that_only_read_create_no_database() {
    // SQLite: a directory that does not exist stays so.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("data");
    let url = format!("sqlite://{}", missing.display());
    for args in [
        &["runs", "list"][..],
        &["outbox", "status"],
        &["migrate", "status"],
    ] {
        let (code, stderr) = run(switchyard(&url), args).await;
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }

    // PostgreSQL: a database that does not exist stays so.
    let Ok(admin) = sea_orm::Database::connect(postgres_url()).await else {
        assert!(
            !orchestration::testing::in_ci(),
            "PostgreSQL is unreachable"
        );
        eprintln!("PostgreSQL is unreachable: the read-only check on it is skipped");
        return;
    };
    let name = format!("switchyard_absent_{}", std::process::id());
    let mut url = url::Url::parse(&postgres_url()).unwrap();
    url.set_path(&name);
    for args in [
        &["runs", "list"][..],
        &["outbox", "status"],
        &["migrate", "status"],
    ] {
        let (code, stderr) = run(switchyard(url.as_str()), args).await;
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("migrate up"), "{args:?}: {stderr}");
    }
    let exists = admin
        .query_one_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT 1 AS found FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .unwrap();
    assert!(exists.is_none(), "a read-only command created the database");
    admin.close().await.ok();
}
