//! The real `switchyard` binary as a process: SIGTERM stops it cleanly (exit 0, workers
//! stopped after the server), even when it arrives during start-up; a failed worker
//! whose policy stops the host makes it exit non-zero, naming the worker. The modules
//! cover start-up refusals and the process under load, killed and restarted.

mod import;
mod limits;
mod load;
mod secrets;
mod startup;

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use orchestration::testing::{Engine, TestDatabase};
use sea_orm::ConnectionTrait;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

/// The binary with an empty configuration file and a free port, on `database_url`.
fn switchyard(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SWITCHYARD_HTTP__ADDR", "127.0.0.1:0")
        .env("SWITCHYARD_DATABASE__URL", database_url)
        .env("SWITCHYARD_LOG__FILTER", "info,sqlx=warn,sea_orm=warn")
        .env("SWITCHYARD_LOG__FORMAT", "json")
        // Notifications under the system's temporary directory, not the source tree.
        .env(
            "SWITCHYARD_NOTIFICATIONS__DIR",
            std::env::temp_dir().join("switchyard-test-mail"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The administrator the process tests open, and its password.
const ADMIN: (&str, &str) = ("admin@tests.example", "correct horse battery staple");

/// Opens [`ADMIN`] with `switchyard accounts create` (the password on standard input),
/// as a user bootstraps the first administrator; `command` is the binary on the
/// databases to use. Returns what it logged.
async fn open_admin(mut command: Command) -> String {
    use tokio::io::AsyncWriteExt;
    command
        .args(["accounts", "create", "--email", ADMIN.0, "--role", "admin"])
        .stdin(Stdio::piped());
    let mut child = command.spawn().expect("start switchyard accounts create");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{}\n", ADMIN.1).as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "accounts create: {log}");
    log
}

/// Logs [`ADMIN`] in at `base`: a client sending its session, which gives up on a
/// request after a minute (a stalled server fails the test instead of hanging it).
async fn admin_client(base: &str) -> reqwest::Client {
    let login = reqwest::Client::new()
        .post(format!("{base}/api/sessions"))
        .json(&serde_json::json!({"email": ADMIN.0, "password": ADMIN.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), reqwest::StatusCode::CREATED);
    let session: serde_json::Value = login.json().await.unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", session["token"].as_str().unwrap())
            .parse()
            .unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Log lines until one contains `needle`; all of them, for later assertions.
async fn read_until(
    lines: &mut Lines<BufReader<ChildStderr>>,
    needle: &str,
    seen: &mut Vec<String>,
) {
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            let found = line.contains(needle);
            seen.push(line);
            if found {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(
        found,
        "no log line with {needle:?}; saw:\n{}",
        seen.join("\n")
    );
}

/// Waits for the process to exit, collecting the rest of its log.
async fn exit(
    mut child: Child,
    mut lines: Lines<BufReader<ChildStderr>>,
    seen: &mut Vec<String>,
) -> ExitStatus {
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            seen.push(line);
        }
        child.wait().await.expect("wait for the process")
    })
    .await;
    status.unwrap_or_else(|_| panic!("the process did not exit; saw:\n{}", seen.join("\n")))
}

/// Reads the rest of the log in the background, so that a busy process never blocks
/// on a full stderr pipe; the task returns `seen` and every later line once the
/// process closes its stderr.
fn drain(
    mut lines: Lines<BufReader<ChildStderr>>,
    mut seen: Vec<String>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line);
        }
        seen
    })
}

/// Waits for a process whose log is being drained to exit; its status and log.
async fn exit_drained(
    mut child: Child,
    log: tokio::task::JoinHandle<Vec<String>>,
) -> (ExitStatus, Vec<String>) {
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    let seen = log.await.expect("the log reader ends");
    let status = status
        .unwrap_or_else(|_| panic!("the process did not exit; saw:\n{}", seen.join("\n")))
        .expect("wait for the process");
    (status, seen)
}

/// The address in the `serving` line (the log is JSON lines: `switchyard()` says so).
fn served_at(seen: &[String]) -> std::net::SocketAddr {
    seen.iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["fields"]["message"] == "serving")
        .and_then(|line| line["fields"]["addr"].as_str()?.parse().ok())
        .unwrap_or_else(|| panic!("no serving address in:\n{}", seen.join("\n")))
}

/// Sends `signal` (`TERM`, `KILL`) to the child.
fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("a running child").to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("run kill");
    assert!(sent.success());
}

fn start(mut command: Command) -> (Child, Lines<BufReader<ChildStderr>>) {
    let mut child = command.spawn().expect("start switchyard");
    let lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    (child, lines)
}

#[tokio::test]
async fn sigterm_stops_the_server_then_the_workers_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().display());
    let (child, mut lines) = start(switchyard(&url));
    let mut seen = Vec::new();
    read_until(&mut lines, "serving", &mut seen).await;
    signal(&child, "TERM");
    let status = exit(child, lines, &mut seen).await;
    assert_stopped_in_order(status, &seen);
}

/// A SIGTERM at the first line the process logs (it is still connecting and
/// migrating) stops it as cleanly as one sent while it serves: the handlers are
/// installed before anything is logged, so the signal is kept until it serves.
#[tokio::test]
async fn sigterm_during_start_up_stops_the_process_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().display());
    let (child, mut lines) = start(switchyard(&url));
    let mut seen = Vec::new();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("a first log line in time")
        .expect("read stderr")
        .expect("a first log line");
    signal(&child, "TERM");
    seen.push(first);
    let status = exit(child, lines, &mut seen).await;
    assert_stopped_in_order(status, &seen);
}

fn assert_stopped_in_order(status: ExitStatus, seen: &[String]) {
    let log = seen.join("\n");
    assert!(status.success(), "{status}; log:\n{log}");
    let position = |needle: &str| {
        seen.iter()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{log}"))
    };
    assert!(position("SIGTERM received") < position("stopped accepting requests"));
    assert!(position("stopped accepting requests") < position("workers stopped"));
    // Six workers: two-phase recovery, the outbox dispatcher, saga recovery, the
    // expired-holds job, notification delivery and the expiry of registrations.
    assert!(log.contains("6 stopped"), "{log}");
}

#[tokio::test]
async fn a_failed_stop_host_worker_stops_the_process_with_a_non_zero_exit_code() {
    // On PostgreSQL the two-phase recovery job reads the decision log every tick; with
    // the log's table gone, the tick fails, and its configured policy stops the host.
    let Some(db) = TestDatabase::create(Engine::Postgres, migrations::all()).await else {
        return;
    };
    let url = db.topology().default_url().connection_string();
    let mut command = switchyard(&url);
    command
        .env("SWITCHYARD_DATABASE__RECOVERY_INTERVAL", "1")
        .env(
            "SWITCHYARD_WORKERS__TWO_PHASE_RECOVERY__POLICY",
            "stop_host",
        );
    let (child, mut lines) = start(command);
    let mut seen = Vec::new();
    read_until(&mut lines, "serving", &mut seen).await;
    db.connection("orchestration")
        .execute_unprepared("DROP TABLE orchestration.two_phase_decisions")
        .await
        .expect("drop the decision log");
    let status = exit(child, lines, &mut seen).await;
    let log = seen.join("\n");
    assert_eq!(status.code(), Some(1), "{status}; log:\n{log}");
    assert!(
        log.contains("worker `two_phase_recovery` failed and its policy stops the host"),
        "{log}"
    );
    assert!(
        log.contains("two_phase_decisions"),
        "the cause is named:\n{log}"
    );
}
