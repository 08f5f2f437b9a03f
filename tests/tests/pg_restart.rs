//! PostgreSQL restarted under load: 16 clients place orders while the server is
//! restarted. During the outage the API answers 503 with `Retry-After` (and the
//! placement's `Location` once it started), never 500; afterwards every placement
//! that any answer mentions is readable, stock is conserved, and the orders are
//! exactly those answers' orders.
//!
//! Its own test binary: it restarts the local server, so no other test may run
//! beside it (cargo runs test binaries one after another). It needs `pg_ctlcluster`
//! and the right to use it; without them it is skipped, except in CI.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use orchestration::testing::{Engine, TestDatabase, in_ci};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::{StoreSnapshot, TestApp};

const SKU: &str = "RESTART-1";
const STOCK: i64 = 1_000_000;
const CLIENTS: usize = 16;

/// The local cluster's version directory, as `pg_ctlcluster` takes it.
fn cluster_version() -> Option<String> {
    std::fs::read_dir("/etc/postgresql")
        .ok()?
        .flatten()
        .find_map(|entry| entry.file_name().into_string().ok())
}

fn restart_postgres(version: &str) {
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main", "restart"])
        .status()
        .expect("run pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster restart: {status}");
}

/// What one answer said: its status, and the placement it names, if any.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    placement: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_answers_503_never_500_and_loses_nothing() {
    let Some(version) = cluster_version().filter(|_| which("pg_ctlcluster")) else {
        assert!(!in_ci(), "pg_ctlcluster is needed to restart PostgreSQL");
        eprintln!("no local PostgreSQL cluster to restart: skipped");
        return;
    };
    let Some(db) = TestDatabase::create(Engine::Postgres, migrations::all()).await else {
        return;
    };
    let app = TestApp::spawn(&db).await;
    let client = app.http.clone();
    app.create_product(SKU, STOCK).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (client, url, stop) = (client.clone(), app.url("/api/orders"), Arc::clone(&stop));
        clients.spawn(async move {
            let mut answers = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // One order per key, asked again with the same key after a 503, as
                // a client should: it cannot place twice.
                loop {
                    let response = client
                        .post(&url)
                        .header("Idempotency-Key", format!("restart-{c}-{n}"))
                        .json(&json!({"lines": [{"sku": SKU, "quantity": 1}]}))
                        .send()
                        .await
                        .expect("the app answers");
                    let status = response.status();
                    let retry_after = response.headers().contains_key("retry-after");
                    let location = response
                        .headers()
                        .get("location")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    assert!(
                        [
                            StatusCode::CREATED,
                            StatusCode::ACCEPTED,
                            StatusCode::SERVICE_UNAVAILABLE
                        ]
                        .contains(&status),
                        "{status}: {body}"
                    );
                    answers.push(Answer {
                        status,
                        placement: location,
                    });
                    if status != StatusCode::SERVICE_UNAVAILABLE {
                        break;
                    }
                    assert!(retry_after, "a 503 without Retry-After: {body}");
                    assert_eq!(body["type"], "urn:switchyard:problem:unavailable", "{body}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            answers
        });
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restarting = Instant::now();
    restart_postgres(&version);
    let restarted = restarting.elapsed();
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    let answers: Vec<Answer> = clients.join_all().await.into_iter().flatten().collect();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for answer in &answers {
        *statuses.entry(answer.status.as_u16()).or_default() += 1;
    }
    eprintln!("{CLIENTS} clients, PostgreSQL restarted in {restarted:.1?}: {statuses:?}");

    // Every placement an answer names ends; each placed one is one order.
    let deadline = Instant::now() + Duration::from_secs(120);
    // A 201 is an order; a 202's placement is followed to its end.
    let mut placed = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    let mut pending: Vec<&String> = answers
        .iter()
        .filter(|a| a.status == StatusCode::ACCEPTED)
        .filter_map(|a| a.placement.as_ref())
        .collect();
    pending.sort();
    pending.dedup();
    for location in pending {
        loop {
            let shown: Value = client
                .get(app.url(location))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match shown["status"].as_str() {
                Some("confirmed") => {
                    placed += 1;
                    break;
                }
                Some("refused" | "abandoned") => break,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => panic!("{location} did not finish: {shown}"),
            }
        }
    }
    let snapshot = StoreSnapshot::read(db.fabric()).await;
    snapshot
        .check(&BTreeMap::from([(SKU.to_owned(), STOCK)]))
        .unwrap();
    let answered_201 = statuses.get(&201).copied().unwrap_or_default();
    assert!(answered_201 > 0, "nothing was placed: {statuses:?}");
    // Every key was asked until it got a 201 or 202, so the orders are exactly the
    // placements those answers name that ended placed: none lost, none twice.
    assert_eq!(snapshot.order_count(), placed, "{statuses:?}");
    app.stop().await;
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
