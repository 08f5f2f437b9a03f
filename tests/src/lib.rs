//! Helpers shared by the cross-module tests: starting the real app on port 0 against a
//! test database, and reading the whole store back for invariant checks.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use orchestration::Fabric;
use orchestration::testing::TestDatabase;
use sea_orm::{ConnectionTrait, Statement};
use switchyard::{Application, Config};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What the `order-loop` binary orders, shared with the kill test that checks it.
pub mod order_loop {
    /// The products ordered, each starting with [`INITIAL_STOCK`] units.
    pub const SKUS: [&str; 4] = ["KILL-A", "KILL-B", "KILL-C", "KILL-D"];
    /// Enough that the loop never runs out within the test.
    pub const INITIAL_STOCK: u32 = 1_000_000;

    /// The placement saga as `order-loop` and the tests that finish its runs register
    /// it: a simulated gateway that always answers.
    ///
    /// # Errors
    /// The saga cannot be registered on `fabric`.
    pub fn place_order(
        fabric: &orchestration::Fabric,
    ) -> Result<workflows::PlaceOrder, orchestration::FabricError> {
        let gateway = payments::SimulatedGateway::new(
            fabric.connection(payments::SCHEMA)?.clone(),
            payments::SimulatedGatewayOptions::default(),
        );
        let settings = workflows::PlaceOrderSettings {
            hold: chrono::Duration::minutes(15),
            gateway: std::sync::Arc::new(gateway),
            policy: payments::PaymentPolicy {
                verification_threshold_minor: i64::MAX,
            },
            charge_retry: orchestration::saga::RetryPolicy::default(),
        };
        workflows::PlaceOrder::register(fabric, settings)
    }

    /// The refund saga as `order-loop` (with `ORDER_LOOP_REFUNDS=1`) and the tests that
    /// finish its runs register it: the same simulated gateway, any time.
    ///
    /// # Errors
    /// The saga cannot be registered on `fabric`.
    pub fn refund_order(
        fabric: &orchestration::Fabric,
    ) -> Result<workflows::RefundOrder, orchestration::FabricError> {
        let gateway = payments::SimulatedGateway::new(
            fabric.connection(payments::SCHEMA)?.clone(),
            payments::SimulatedGatewayOptions::default(),
        );
        let settings = workflows::RefundOrderSettings {
            gateway: std::sync::Arc::new(gateway),
            customer_window: chrono::Duration::days(14),
            retry: orchestration::saga::RetryPolicy::default(),
        };
        workflows::RefundOrder::register(fabric, settings)
    }

    /// The variable that makes `order-loop` refund each order it places: one unit of
    /// its first line, then the rest.
    pub const REFUNDS_VAR: &str = "ORDER_LOOP_REFUNDS";

    /// Each SKU's starting stock, as [`crate::StoreSnapshot::check`] takes it.
    #[must_use]
    pub fn initial_stock() -> std::collections::BTreeMap<String, i64> {
        SKUS.iter()
            .map(|s| ((*s).to_owned(), i64::from(INITIAL_STOCK)))
            .collect()
    }
}

/// The app serving on a real socket, with a session of an administrator.
#[derive(Debug)]
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where `/metrics` is served (`addr` unless `metrics.addr` is set).
    pub metrics: SocketAddr,
    /// A client that sends the administrator's session (every ability, and the
    /// customer of the orders it places).
    pub http: reqwest::Client,
    fabric: Fabric,
    /// Where notifications are written (`notifications.dir`).
    mail_dir: std::path::PathBuf,
    /// The temporary directory that is `notifications.dir` unless the config set one.
    _mail: tempfile::TempDir,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

/// A client whose requests carry `Authorization: Bearer <token>`.
///
/// # Panics
/// If the token is not a header value (it is hex).
#[must_use]
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("a header value"),
    );
    // A stalled server fails the test instead of hanging it.
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("a client")
}

/// How a placement answered `202 Accepted` ended: its status URL (from `accepted`, the
/// 202's body, relative to `base`) polled every 50 ms until it is no longer `placing`;
/// the last body.
///
/// # Panics
/// If the body has no status URL or a request fails.
pub async fn placement_outcome(
    http: &reqwest::Client,
    base: &str,
    accepted: &serde_json::Value,
) -> serde_json::Value {
    let url = format!(
        "{base}{}",
        accepted["status_url"].as_str().expect("a status URL")
    );
    loop {
        let now: serde_json::Value = http
            .get(&url)
            .send()
            .await
            .expect("GET the status URL")
            .json()
            .await
            .expect("a JSON body");
        if now["status"] != "placing" {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Opens an active account on `fabric` holding `roles`, and starts a session for it
/// directly (the login itself is tested over HTTP); its id and token.
///
/// # Panics
/// If identity fails.
pub async fn open_session(fabric: &Fabric, email: &str, roles: &[&str]) -> (String, String) {
    use identity::{AccountKind, AccountStatus, DisplayName, Email, NewAccount, RoleName};
    let conn = fabric.connection(identity::SCHEMA).expect("identity");
    let now = fabric.clock().now();
    let account = identity::create_account(
        conn,
        &NewAccount {
            email: Email::parse(email).expect("an email"),
            display_name: DisplayName::parse(email).expect("a name"),
            kind: AccountKind::Staff,
            status: AccountStatus::Active,
        },
        now,
    )
    .await
    .expect("open the account");
    for role in roles {
        identity::grant_role(conn, account.id, &RoleName::parse(role).expect("a role"))
            .await
            .expect("grant the role");
    }
    let (_, token) =
        identity::start_session(conn, account.id, "tests", now, chrono::Duration::hours(1))
            .await
            .expect("start a session");
    (account.id.to_string(), token.as_str().to_owned())
}

impl TestApp {
    /// Builds the app on `db`'s database, migrating, and serves it on 127.0.0.1:0.
    ///
    /// # Panics
    /// If the app cannot start.
    pub async fn spawn(db: &TestDatabase) -> Self {
        let mut config = Config::default();
        config.database.url = db.topology().default_url().connection_string();
        Self::spawn_with(config).await
    }

    /// Builds the app with `config`, migrating, and serves it on 127.0.0.1:0.
    ///
    /// # Panics
    /// If the app cannot start.
    pub async fn spawn_with(mut config: Config) -> Self {
        config.http.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let mail = tempfile::tempdir().expect("a directory for notifications");
        if config.notifications.dir == switchyard::config::NotificationsConfig::default().dir {
            config.notifications.dir = mail.path().to_owned();
        }
        let app = Application::build(&config, switchyard::ServeOptions::default())
            .await
            .expect("start the app");
        let addr = app.local_addr();
        let metrics = app.metrics_addr();
        let fabric = app.fabric().clone();
        let mail_dir = config.notifications.dir.clone();
        let (_, token) = open_session(&fabric, "admin@tests.example", &["admin"]).await;
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(async move {
            app.run_until(async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        Self {
            addr,
            metrics,
            http: client_with(&token),
            fabric,
            mail_dir,
            _mail: mail,
            stop,
            server,
        }
    }

    /// `http://ADDR{path}`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path`, its body as JSON.
    ///
    /// # Panics
    /// If the request fails or the body is not JSON.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("a JSON body")
    }

    /// Creates product `sku` priced 1.00 EUR with `stock` units.
    ///
    /// # Panics
    /// If the app does not answer 201.
    pub async fn create_product(&self, sku: &str, stock: i64) {
        let created = self
            .http
            .post(self.url("/api/products"))
            .json(&serde_json::json!({
                "sku": sku, "name": sku, "price_minor": 100, "currency": "EUR", "stock": stock
            }))
            .send()
            .await
            .expect("POST /api/products");
        assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    }

    /// A client with the session of a new account holding `roles`, and the account's
    /// id (the customer id of the orders it places).
    pub async fn client_of(&self, email: &str, roles: &[&str]) -> (reqwest::Client, String) {
        let (id, token) = open_session(&self.fabric, email, roles).await;
        (client_with(&token), id)
    }

    /// The directory notifications are written to (one `<id>.eml` file each).
    #[must_use]
    pub fn mail_dir(&self) -> &std::path::Path {
        &self.mail_dir
    }

    /// Stops accepting, drains in-flight requests, and waits for the server to end.
    ///
    /// # Panics
    /// If the server task panicked.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.expect("the server task ends cleanly");
    }
}

/// Orders (with the coordinator log) on one PostgreSQL test database and inventory on
/// another, so that every placement commits by two-phase commit. `None` when
/// PostgreSQL is unreachable outside CI.
pub async fn split_postgres() -> Option<(TestDatabase, TestDatabase)> {
    let orders = TestDatabase::create(
        orchestration::testing::Engine::Postgres,
        [orchestration::schema::boundary(), migrations::orders()],
    )
    .await?;
    let inventory = TestDatabase::create(
        orchestration::testing::Engine::Postgres,
        [migrations::inventory()],
    )
    .await?;
    Some((orders, inventory))
}

/// Our prepared transactions (gid `sy:…`) on the databases of the orders and inventory
/// boundaries (other tests share the server, so the count is per database).
///
/// # Panics
/// If a query fails.
pub async fn prepared_transactions(fabric: &Fabric) -> i64 {
    let mut total = 0;
    for boundary in [orders::SCHEMA, inventory::SCHEMA] {
        let db = fabric.connection(boundary).expect("a composed boundary");
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM pg_prepared_xacts \
                 WHERE database = current_database() AND gid LIKE 'sy:%'",
            ))
            .await
            .expect("read pg_prepared_xacts")
            .expect("a count");
        total += row.try_get::<i64>("", "n").expect("a count");
    }
    total
}

/// Stands in for a restarted instance after a crash: fast-forwards past the dead
/// instance's leases (a real restart waits them out), then lets saga recovery drive
/// every unfinished run to its end. The placement saga must be registered on
/// `fabric`.
///
/// # Panics
/// If a run is still unfinished after a minute, or a query fails.
pub async fn finish_runs(fabric: &Fabric) {
    use orchestration::{
        host::{Host, Policy},
        saga::{RunFilter, RunState, SagaRecovery, SagaRecoveryOptions},
    };

    let db = fabric
        .connection(orchestration::COORDINATOR_BOUNDARY)
        .expect("orchestration");
    let sql = format!(
        "UPDATE {} SET lease_expires_at_ms = 0 WHERE status IN ('running', 'compensating')",
        quote(db.get_database_backend(), "orchestration.saga_runs")
    );
    db.execute_unprepared(&sql)
        .await
        .expect("expire the leases");
    let mut host = Host::new(fabric.databases());
    let options = SagaRecoveryOptions {
        poll_interval: std::time::Duration::from_millis(20),
        concurrency: 8,
    };
    host.add(SagaRecovery::new(fabric.sagas(), options), Policy::StopHost)
        .expect("add recovery");
    let host = host.start();
    let active = RunFilter {
        states: vec![RunState::Running, RunState::Compensating],
        limit: None,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let runs = fabric.sagas().runs(&active).await.expect("list runs");
        if runs.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "runs never finished: {runs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    host.shutdown().await;
}

/// Checks the simulated gateway's record: no key charged twice (each key is one
/// request), at most one charge per placement, and every charge of a placement
/// without an order refunded.
///
/// # Errors
/// The first charge that breaks the rule.
pub async fn check_charges(fabric: &Fabric, snapshot: &StoreSnapshot) -> Result<(), String> {
    let db = fabric.connection(payments::SCHEMA).expect("payments");
    let requests = payments::gateway_requests(db)
        .await
        .map_err(|e| e.to_string())?;
    let mut charged: BTreeMap<String, usize> = BTreeMap::new();
    let refunded: Vec<&str> = requests
        .iter()
        .filter(|r| r.outcome == payments::GatewayRequestOutcome::Refunded)
        .filter_map(|r| r.charge_key.as_deref())
        .collect();
    for request in &requests {
        if request.outcome == payments::GatewayRequestOutcome::Charged {
            let placement = request.key.split('/').next().unwrap_or_default().to_owned();
            *charged.entry(placement).or_default() += 1;
            let has_order = snapshot
                .ordered
                .keys()
                .any(|(id, _)| request.key.starts_with(id.as_str()));
            if !has_order && !refunded.contains(&request.key.as_str()) {
                return Err(format!(
                    "{} was charged, has no order and was not refunded",
                    request.key
                ));
            }
        }
    }
    if let Some((placement, n)) = charged.iter().find(|(_, n)| **n > 1) {
        return Err(format!("placement {placement} was charged {n} times"));
    }
    Ok(())
}

/// Checks that no money was refunded twice or lost: per payment, the gateway's refunds
/// of its charge add up to the refunds the ledger records, no more than was charged,
/// and (when its order exists) to the refunded units of the order at their prices.
///
/// # Errors
/// The first payment whose refunds disagree.
///
/// # Panics
/// If a query fails.
pub async fn check_refunds(fabric: &Fabric) -> Result<(), String> {
    let db = fabric.connection(payments::SCHEMA).expect("payments");
    let orders = fabric.connection(orders::SCHEMA).expect("orders");
    let q = |table: &str| quote(db.get_database_backend(), table);
    let requests = payments::gateway_requests(db)
        .await
        .map_err(|e| e.to_string())?;
    let mut ledger: BTreeMap<uuid::Uuid, i64> = BTreeMap::new();
    for row in rows(
        db,
        &format!(
            "SELECT payment_id, amount_minor FROM {}",
            q("payments.refunds")
        ),
    )
    .await
    {
        let id: uuid::Uuid = row.try_get("", "payment_id").expect("payment_id");
        let amount: i64 = row.try_get("", "amount_minor").expect("amount_minor");
        *ledger.entry(id).or_default() += amount;
    }
    let mut refunded_units: BTreeMap<String, i64> = BTreeMap::new();
    for row in rows(
        orders,
        &format!(
            "SELECT order_id, refunded_quantity, unit_price_minor FROM {}",
            q("orders.order_lines")
        ),
    )
    .await
    {
        let id: uuid::Uuid = row.try_get("", "order_id").expect("order_id");
        let quantity: i64 = row.try_get("", "refunded_quantity").expect("quantity");
        let price: i64 = row.try_get("", "unit_price_minor").expect("price");
        *refunded_units.entry(id.to_string()).or_default() += quantity * price;
    }
    for row in rows(
        db,
        &format!(
            "SELECT id, idempotency_key, order_reference, amount_minor FROM {}",
            q("payments.payments")
        ),
    )
    .await
    {
        let id: uuid::Uuid = row.try_get("", "id").expect("id");
        let key: String = row.try_get("", "idempotency_key").expect("key");
        let order: String = row.try_get("", "order_reference").expect("order");
        let amount: i64 = row.try_get("", "amount_minor").expect("amount");
        let at_gateway: i64 = requests
            .iter()
            .filter(|r| {
                r.outcome == payments::GatewayRequestOutcome::Refunded
                    && r.charge_key.as_deref() == Some(key.as_str())
            })
            .map(|r| r.amount_minor)
            .sum();
        let recorded = ledger.get(&id).copied().unwrap_or_default();
        if at_gateway != recorded || recorded > amount {
            return Err(format!(
                "payment {key} of {amount}: the gateway refunded {at_gateway}, the ledger records {recorded}"
            ));
        }
        if let Some(units) = refunded_units.get(&order)
            && *units != recorded
        {
            return Err(format!(
                "order {order}: its refunded units are worth {units}, the ledger records {recorded}"
            ));
        }
    }
    Ok(())
}

/// Everything the stock and order invariants are about, read straight from the tables.
#[derive(Debug, Default)]
pub struct StoreSnapshot {
    /// `(available, reserved)` per SKU.
    pub stock: BTreeMap<String, (i64, i64)>,
    /// Reserved quantity per (reference, SKU) over held and committed reservations.
    pub reserved: BTreeMap<(String, String), i64>,
    /// Ordered quantity not refunded per (order id, SKU), where some is left.
    pub ordered: BTreeMap<(String, String), i64>,
    /// Every order's id.
    pub orders: std::collections::BTreeSet<String>,
    /// `OrderPlaced` messages in the outbox per order id (one per subscriber).
    pub order_placed: BTreeMap<String, usize>,
    /// Refunds applied to their order (their intents settled), by id.
    pub applied_refunds: std::collections::BTreeSet<String>,
    /// `OrderRefunded` messages in the outbox per refund id (one per subscriber).
    pub order_refunded: BTreeMap<String, usize>,
}

impl StoreSnapshot {
    /// Reads the snapshot through `fabric`.
    ///
    /// # Panics
    /// If a query fails.
    pub async fn read(fabric: &Fabric) -> Self {
        let inventory = fabric.connection(inventory::SCHEMA).expect("inventory");
        let orders = fabric.connection(orders::SCHEMA).expect("orders");
        let backend = inventory.get_database_backend();
        let q = |table: &str| quote(backend, table);
        let mut snapshot = Self::default();
        for row in rows(
            inventory,
            &format!(
                "SELECT sku, available, reserved FROM {}",
                q("inventory.stock_levels")
            ),
        )
        .await
        {
            let sku: String = row.try_get("", "sku").expect("sku");
            let available: i64 = row.try_get("", "available").expect("available");
            let reserved: i64 = row.try_get("", "reserved").expect("reserved");
            snapshot.stock.insert(sku, (available, reserved));
        }
        let sql = format!(
            "SELECT reference, sku, quantity FROM {} WHERE status IN ('held', 'committed')",
            q("inventory.reservations")
        );
        for row in rows(inventory, &sql).await {
            let reference: String = row.try_get("", "reference").expect("reference");
            let sku: String = row.try_get("", "sku").expect("sku");
            let quantity: i64 = row.try_get("", "quantity").expect("quantity");
            *snapshot.reserved.entry((reference, sku)).or_default() += quantity;
        }
        for row in rows(
            orders,
            &format!(
                "SELECT order_id, sku, quantity, refunded_quantity FROM {}",
                q("orders.order_lines")
            ),
        )
        .await
        {
            let order_id: uuid::Uuid = row.try_get("", "order_id").expect("order_id");
            let sku: String = row.try_get("", "sku").expect("sku");
            let quantity: i64 = row.try_get("", "quantity").expect("quantity");
            let refunded: i64 = row
                .try_get("", "refunded_quantity")
                .expect("refunded_quantity");
            snapshot.orders.insert(order_id.to_string());
            if quantity > refunded {
                *snapshot
                    .ordered
                    .entry((order_id.to_string(), sku))
                    .or_default() += quantity - refunded;
            }
        }
        let payments = fabric.connection(payments::SCHEMA).expect("payments");
        let sql = format!(
            "SELECT id FROM {} WHERE applied_at IS NOT NULL",
            q("payments.refund_intents")
        );
        for row in rows(payments, &sql).await {
            let id: uuid::Uuid = row.try_get("", "id").expect("id");
            snapshot.applied_refunds.insert(id.to_string());
        }
        let sql = format!(
            "SELECT payload FROM {} WHERE event_type = '{}'",
            q("outbox.messages"),
            orders::OrderRefunded::NAME
        );
        for row in rows(orders, &sql).await {
            let payload: String = row.try_get("", "payload").expect("payload");
            let event: orders::OrderRefunded =
                serde_json::from_str(&payload).expect("an OrderRefunded payload");
            *snapshot
                .order_refunded
                .entry(event.refund_id.to_string())
                .or_default() += 1;
        }
        let sql = format!(
            "SELECT payload FROM {} WHERE event_type = '{}'",
            q("outbox.messages"),
            orders::OrderPlaced::NAME
        );
        for row in rows(orders, &sql).await {
            let payload: String = row.try_get("", "payload").expect("payload");
            let event: orders::OrderPlaced =
                serde_json::from_str(&payload).expect("an OrderPlaced payload");
            *snapshot
                .order_placed
                .entry(event.order_id.to_string())
                .or_default() += 1;
        }
        snapshot
    }

    /// Checks that the outbox holds one `OrderPlaced` message per subscriber
    /// ([`workflows::ORDER_PLACED_SUBSCRIBERS`]) for every order and none for an order
    /// that does not exist, and one `OrderRefunded` message per subscriber for every
    /// applied refund and none for another: each event committed with its change.
    ///
    /// # Errors
    /// The first order or refund whose messages are missing or extra.
    pub fn check_events(&self) -> Result<(), String> {
        let per_order = workflows::ORDER_PLACED_SUBSCRIBERS.len();
        for id in &self.orders {
            let messages = self.order_placed.get(id).copied().unwrap_or_default();
            if messages != per_order {
                return Err(format!(
                    "order {id} has {messages} OrderPlaced messages, expected {per_order}"
                ));
            }
        }
        if let Some(id) = self
            .order_placed
            .keys()
            .find(|id| !self.orders.contains(*id))
        {
            return Err(format!(
                "an OrderPlaced message for order {id}, which does not exist"
            ));
        }
        let per_refund = workflows::ORDER_REFUNDED_SUBSCRIBERS.len();
        for id in &self.applied_refunds {
            let messages = self.order_refunded.get(id).copied().unwrap_or_default();
            if messages != per_refund {
                return Err(format!(
                    "refund {id} has {messages} OrderRefunded messages, expected {per_refund}"
                ));
            }
        }
        if let Some(id) = self
            .order_refunded
            .keys()
            .find(|id| !self.applied_refunds.contains(*id))
        {
            return Err(format!(
                "an OrderRefunded message for refund {id}, which was not applied"
            ));
        }
        Ok(())
    }

    /// Number of distinct orders.
    #[must_use]
    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// Checks that no order exists without its reservations, no reservation without its
    /// order (for the units not refunded), and that stock is conserved: `available +
    /// reserved = initial` per SKU, so refunded units went back to stock exactly once.
    ///
    /// # Errors
    /// A description of the first broken invariant.
    pub fn check(&self, initial: &BTreeMap<String, i64>) -> Result<(), String> {
        if self.reserved != self.ordered {
            let orphans: Vec<_> = self
                .reserved
                .keys()
                .filter(|k| !self.ordered.contains_key(*k))
                .take(3)
                .collect();
            let unreserved: Vec<_> = self
                .ordered
                .keys()
                .filter(|k| !self.reserved.contains_key(*k))
                .take(3)
                .collect();
            return Err(format!(
                "orders and reservations disagree: reservations without order lines {orphans:?}, order lines without reservations {unreserved:?}"
            ));
        }
        for (sku, (available, reserved)) in &self.stock {
            let initial = initial.get(sku).copied().unwrap_or_default();
            if *available < 0 || available + reserved != initial {
                return Err(format!(
                    "{sku}: available {available} + reserved {reserved} != initial {initial}"
                ));
            }
            let held: i64 = self
                .reserved
                .iter()
                .filter(|((_, s), _)| s == sku)
                .map(|(_, q)| q)
                .sum();
            if held != *reserved {
                return Err(format!(
                    "{sku}: stock says {reserved} reserved, reservations hold {held}"
                ));
            }
        }
        Ok(())
    }
}

async fn rows(db: &impl ConnectionTrait, sql: &str) -> Vec<sea_orm::QueryResult> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `schema.table` quoted for `backend`.
fn quote(backend: sea_orm::DbBackend, table: &str) -> String {
    let q = if backend == sea_orm::DbBackend::MySql {
        '`'
    } else {
        '"'
    };
    table
        .split('.')
        .map(|part| format!("{q}{part}{q}"))
        .collect::<Vec<_>>()
        .join(".")
}
