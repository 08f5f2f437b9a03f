//! P4: order placement over HTTP, the release binary against a hand-written handler.
//!
//! *Switchyard* is the release binary (`target/release/switchyard`, or the path in
//! `SWITCHYARD_BIN`) serving `POST /api/orders` with its workers running: the
//! placement saga (hold the stock, charge the simulated gateway, confirm), its events
//! delivered in the background. *Baseline* is an axum handler in this process on the
//! same database: it authenticates the same session and makes the same domain calls
//! (find the products, reserve, open the payment, record the charge, commit the holds,
//! create and confirm the order) with every write in one transaction, the simulated
//! gateway's own write just before it; it writes no event. Both answer 201 for a
//! placed order. The cells: SQLite and PostgreSQL; 1 and 50 clients, each sending one
//! placement after another; one line of one unit of one of eight SKUs (chosen at
//! random) or always the same SKU. Each cell runs the two sides for a fixed time in
//! two rounds, alternating which goes first, each after the outbox has drained (the
//! binary delivers its events while it places orders, and finishes between turns); p50 and p99 are of every request, and
//! "other" counts the answers that were not 201, by status (0: no answer; 202: still
//! placing when the binary's placement wait ran out).
//!
//! `cargo build --release -p switchyard && cargo run --release -p benches --bin
//! place-order-http [SECONDS_PER_CELL]`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use inventory::{Quantity, Sku};
use orchestration::testing::{Engine, TestDatabase};
use orchestration::{DatabaseUrl, Fabric, Topology, sql::begin_write};
use orders::{CustomerId, LineRequest, NewOrder};
use payments::{ChargeRequest, NewPayment, PaymentGateway, PaymentPolicy};
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use uuid::Uuid;

const ADMIN: (&str, &str) = ("bench@bench.example", "correct horse battery staple");
const SKUS: [&str; 8] = [
    "BENCH-1", "BENCH-2", "BENCH-3", "BENCH-4", "BENCH-5", "BENCH-6", "BENCH-7", "BENCH-8",
];
const HOT: &str = "BENCH-HOT";
const ROUNDS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Switchyard,
    Baseline,
}

/// What one side answered in one cell.
#[derive(Debug, Default)]
struct Tally {
    placed: u64,
    /// The answers other than 201, by status (0: no answer).
    other: BTreeMap<u16, u64>,
    latencies: Vec<Duration>,
    seconds: f64,
}

impl Tally {
    fn merge(&mut self, other: Self) {
        self.placed += other.placed;
        for (status, count) in other.other {
            *self.other.entry(status).or_default() += count;
        }
        self.latencies.extend(other.latencies);
        self.seconds += other.seconds;
    }

    /// The answers other than 201, as `202×3 503×1`; `0` if none.
    fn others(&self) -> String {
        if self.other.is_empty() {
            return "0".to_owned();
        }
        let counts: Vec<String> = self
            .other
            .iter()
            .map(|(status, count)| format!("{status}×{count}"))
            .collect();
        counts.join(" ")
    }

    fn rate(&self) -> f64 {
        self.placed as f64 / self.seconds
    }

    fn percentile(&mut self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies.sort_unstable();
        let rank =
            ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1].as_secs_f64() * 1000.0
    }
}

/// `clients` clients placing orders at `url` with `token` for `seconds`, each line
/// one unit of a SKU drawn from `skus`.
async fn load(
    url: &str,
    token: &str,
    skus: &[&'static str],
    clients: usize,
    seconds: f64,
) -> Tally {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(clients)
        .build()
        .expect("a client");
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url, token, skus) = (
                client.clone(),
                url.to_owned(),
                token.to_owned(),
                skus.to_vec(),
            );
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    let sku = skus[fastrand::usize(..skus.len())];
                    let sent = Instant::now();
                    let answer = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"lines": [{"sku": sku, "quantity": 1}]}))
                        .send()
                        .await;
                    let status = match answer {
                        Ok(response) => {
                            let status = response.status();
                            // Read the body, so that the connection is reused.
                            let _ = response.bytes().await;
                            Some(status)
                        }
                        Err(_) => None,
                    };
                    tally.latencies.push(sent.elapsed());
                    match status {
                        Some(reqwest::StatusCode::CREATED) => tally.placed += 1,
                        other => {
                            let status = other.map_or(0, |status| status.as_u16());
                            *tally.other.entry(status).or_default() += 1;
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        total.merge(task.await.expect("a client"));
    }
    total.seconds = started.elapsed().as_secs_f64();
    total
}

/// The release binary on `database_url`, serving on a free port, with the bench's
/// administrator opened.
struct Server {
    child: Child,
    base: String,
}

fn binary() -> PathBuf {
    std::env::var_os("SWITCHYARD_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/switchyard"),
        PathBuf::from,
    )
}

fn command(database_url: &str, mail: &std::path::Path) -> Command {
    let mut command = Command::new(binary());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SWITCHYARD_DATABASE__URL", database_url)
        .env("SWITCHYARD_LOG__FILTER", "warn")
        .env("SWITCHYARD_NOTIFICATIONS__DIR", mail)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

impl Server {
    async fn start(database_url: &str, mail: &std::path::Path) -> Self {
        let mut create = command(database_url, mail);
        create
            .args(["accounts", "create", "--email", ADMIN.0, "--role", "admin"])
            .stdin(Stdio::piped());
        let mut child = create.spawn().expect("start switchyard accounts create");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(format!("{}\n", ADMIN.1).as_bytes())
            .await
            .expect("the password");
        drop(stdin);
        assert!(child.wait().await.expect("accounts create").success());

        let addr = free_port();
        let mut serve = command(database_url, mail);
        serve.env("SWITCHYARD_HTTP__ADDR", addr.to_string());
        let child = serve.spawn().expect("start switchyard");
        let base = format!("http://{addr}");
        let ready = format!("{base}/health/ready");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = reqwest::get(&ready).await
                && response.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "switchyard is not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, base }
    }

    /// A session token of the bench's administrator.
    async fn login(&self) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}/api/sessions", self.base))
            .json(&json!({"email": ADMIN.0, "password": ADMIN.1}))
            .send()
            .await
            .expect("login");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        let session: serde_json::Value = response.json().await.expect("a session");
        session["token"].as_str().expect("a token").to_owned()
    }

    async fn create_products(&self, token: &str) {
        let client = reqwest::Client::new();
        for sku in SKUS.iter().chain([&HOT]) {
            let response = client
                .post(format!("{}/api/products", self.base))
                .bearer_auth(token)
                .json(&json!({"sku": sku, "name": sku, "price_minor": 100, "currency": "EUR", "stock": 100_000_000}))
                .send()
                .await
                .expect("a product");
            assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        }
    }
}

#[derive(Deserialize)]
struct PlaceBody {
    lines: Vec<LineBody>,
}

#[derive(Deserialize)]
struct LineBody {
    sku: String,
    quantity: u32,
}

/// The hand-written placement.
struct Baseline {
    db: DatabaseConnection,
    gateway: payments::SimulatedGateway,
}

/// Why the baseline did not place an order.
#[derive(Debug, thiserror::Error)]
enum NotPlaced {
    #[error("no session")]
    Unauthenticated,
    #[error("invalid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Inventory(#[from] inventory::Error),
    #[error(transparent)]
    Orders(#[from] orders::Error),
    #[error(transparent)]
    Payments(#[from] payments::Error),
    #[error(transparent)]
    Identity(#[from] identity::Error),
    #[error(transparent)]
    Database(#[from] sea_orm::DbErr),
    #[error("the gateway: {0}")]
    Gateway(String),
}

impl Baseline {
    async fn place(&self, headers: &HeaderMap, body: &PlaceBody) -> Result<(), NotPlaced> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .and_then(identity::SessionToken::parse)
            .ok_or(NotPlaced::Unauthenticated)?;
        let now = Utc::now();
        let caller = identity::authenticate(&self.db, &token, now)
            .await?
            .ok_or(NotPlaced::Unauthenticated)?;
        let customer = CustomerId::parse(&caller.account.id.to_string())
            .map_err(|err| NotPlaced::Invalid(err.to_string()))?;
        let mut wanted = Vec::with_capacity(body.lines.len());
        for line in &body.lines {
            let sku = Sku::parse(&line.sku).map_err(|err| NotPlaced::Invalid(err.to_string()))?;
            let quantity = Quantity::new(i64::from(line.quantity))
                .map_err(|err| NotPlaced::Invalid(err.to_string()))?;
            wanted.push((sku, quantity));
        }
        wanted.sort_by(|a, b| a.0.cmp(&b.0));
        let skus: Vec<Sku> = wanted.iter().map(|(sku, _)| sku.clone()).collect();
        let products = inventory::find_products(&self.db, &skus).await?;
        let mut lines = Vec::with_capacity(wanted.len());
        for (sku, quantity) in &wanted {
            let product = products
                .iter()
                .find(|p| &p.sku == sku)
                .ok_or_else(|| NotPlaced::Invalid(format!("unknown product {sku}")))?;
            lines.push(LineRequest {
                sku: sku.as_str().to_owned(),
                quantity: quantity.get(),
                unit_price_minor: product.price.minor,
                currency: product.price.currency.as_str().to_owned(),
            });
        }
        let order = NewOrder::price(customer.clone(), &lines)
            .map_err(|err| NotPlaced::Invalid(err.to_string()))?;
        let id = Uuid::now_v7();
        let reference = id.to_string();
        let key = format!("baseline:{reference}");
        let charge = ChargeRequest {
            key: key.clone(),
            amount_minor: order.total_minor(),
            currency: order.currency().to_owned(),
            customer_id: customer.as_str().to_owned(),
            reference: reference.clone(),
        };
        let outcome = self
            .gateway
            .charge(&charge)
            .await
            .map_err(|err| NotPlaced::Gateway(err.to_string()))?;
        let tx = begin_write(&self.db).await?;
        for (sku, quantity) in &wanted {
            inventory::reserve(
                &tx,
                sku,
                *quantity,
                &reference,
                now + chrono::Duration::minutes(15),
                now,
            )
            .await?;
        }
        let payment = NewPayment {
            idempotency_key: key.clone(),
            order_reference: reference.clone(),
            customer_id: customer.as_str().to_owned(),
            amount_minor: order.total_minor(),
            currency: order.currency().to_owned(),
        };
        let policy = PaymentPolicy {
            verification_threshold_minor: i64::MAX,
        };
        payments::open(&tx, &payment, &policy, now).await?;
        payments::record_charge(&tx, &key, &outcome, now).await?;
        inventory::commit_holds(&tx, &reference, now).await?;
        orders::create(&tx, id, &order, now).await?;
        orders::confirm(&tx, id, now).await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn baseline_place(
    State(baseline): State<Arc<Baseline>>,
    headers: HeaderMap,
    Json(body): Json<PlaceBody>,
) -> StatusCode {
    match baseline.place(&headers, &body).await {
        Ok(()) => StatusCode::CREATED,
        Err(NotPlaced::Unauthenticated) => StatusCode::UNAUTHORIZED,
        Err(NotPlaced::Invalid(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        Err(NotPlaced::Inventory(inventory::Error::OutOfStock { .. })) => StatusCode::CONFLICT,
        Err(err) => {
            eprintln!("baseline: {err}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// Waits until the outbox on `fabric`'s databases has nothing pending: the events of
/// the binary's placements are delivered, and no background work overlaps the next
/// cell.
async fn drained(fabric: &Fabric) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = fabric.events().status().await.expect("the outbox status");
        if status.iter().all(|database| database.pending == 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox does not drain: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The baseline's server on `database_url`: its URL, and its fabric.
async fn serve_baseline(database_url: &DatabaseUrl) -> (String, Fabric) {
    let fabric = Fabric::connect(&Topology::new(database_url.clone()), migrations::all())
        .await
        .expect("the baseline's connection");
    let db = fabric.connection(orders::SCHEMA).expect("orders").clone();
    let gateway = payments::SimulatedGateway::new(
        fabric
            .connection(payments::SCHEMA)
            .expect("payments")
            .clone(),
        payments::SimulatedGatewayOptions::default(),
    );
    let app = Router::new()
        .route("/orders", post(baseline_place))
        .with_state(Arc::new(Baseline { db, gateway }));
    let addr = listener_for(app).await;
    (format!("http://{addr}/orders"), fabric)
}

/// Serves `app` on a free port.
async fn listener_for(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[allow(clippy::print_stdout)] // The table is the output.
#[tokio::main]
async fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    assert!(
        binary().exists(),
        "{} is missing: cargo build --release -p switchyard",
        binary().display()
    );
    println!(
        "P4: POST /api/orders, the release binary vs. a hand-written handler, {seconds} s per side and cell"
    );
    println!();
    println!(
        "| backend | clients | SKUs | switchyard orders/s | p50 | p99 | other | baseline orders/s | p50 | p99 | other | switchyard / baseline |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mail = tempfile::tempdir().expect("a mail directory");
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let dir = tempfile::tempdir().expect("a data directory");
        let pg;
        let url = match engine {
            Engine::Postgres => {
                let Some(db) = TestDatabase::create(engine, migrations::all()).await else {
                    continue;
                };
                let url = db.topology().default_url().clone();
                pg = Some(db);
                url
            }
            _ => {
                pg = None;
                DatabaseUrl::Sqlite {
                    dir: dir.path().to_owned(),
                }
            }
        };
        let mut server = Server::start(&url.connection_string(), mail.path()).await;
        let token = server.login().await;
        server.create_products(&token).await;
        let switchyard = format!("{}/api/orders", server.base);
        let (baseline, fabric) = serve_baseline(&url).await;
        for clients in [1, 50] {
            for (label, skus) in [("8", &SKUS[..]), ("1 hot", &[HOT][..])] {
                let (mut ours, mut theirs) = (Tally::default(), Tally::default());
                for round in 0..ROUNDS {
                    let order = if round % 2 == 0 {
                        [Side::Switchyard, Side::Baseline]
                    } else {
                        [Side::Baseline, Side::Switchyard]
                    };
                    for side in order {
                        drained(&fabric).await;
                        let cell = seconds / ROUNDS as f64;
                        match side {
                            Side::Switchyard => {
                                ours.merge(load(&switchyard, &token, skus, clients, cell).await)
                            }
                            Side::Baseline => {
                                theirs.merge(load(&baseline, &token, skus, clients, cell).await)
                            }
                        }
                    }
                }
                println!(
                    "| {engine:?} | {clients} | {label} | {:.0} | {:.1} ms | {:.1} ms | {} | {:.0} | {:.1} ms | {:.1} ms | {} | {:.2} |",
                    ours.rate(),
                    ours.percentile(0.5),
                    ours.percentile(0.99),
                    ours.others(),
                    theirs.rate(),
                    theirs.percentile(0.5),
                    theirs.percentile(0.99),
                    theirs.others(),
                    ours.rate() / theirs.rate(),
                );
            }
        }
        server.child.kill().await.expect("stop switchyard");
        drop(pg);
    }
}
