//! The README's Rust snippets, compiled as doctests. Each block below holds one README
//! block, with hidden (`# `) lines that set it up; `tests/tests/it/readme.rs` fails
//! when a README block is not here line for line, so the README shows code that
//! compiles against today's API.
//!
//! ## Units of work
//!
//! ```no_run
//! # use orchestration::{Fabric, UnitOfWorkError};
//! # #[derive(Debug, thiserror::Error)]
//! # enum RestockError {
//! #     #[error(transparent)]
//! #     UnitOfWork(#[from] UnitOfWorkError),
//! #     #[error(transparent)]
//! #     Inventory(#[from] inventory::Error),
//! #     #[error(transparent)]
//! #     Audit(#[from] audit::Error),
//! # }
//! # async fn example(
//! #     fabric: &Fabric,
//! #     sku: inventory::Sku,
//! #     quantity: inventory::Quantity,
//! #     entry: audit::NewEntry,
//! # ) -> Result<(), RestockError> {
//! # let now = chrono::Utc::now();
//! let restocked = fabric
//!     .unit_of_work("restock")
//!     .run(async |uow| -> Result<inventory::Product, RestockError> {
//!         let product = uow
//!             .step(inventory::SCHEMA, "restock", async |tx| {
//!                 inventory::restock(tx, &sku, quantity, now).await
//!             })
//!             .await?;
//!         uow.step(audit::SCHEMA, "record_entry", async |tx| audit::record(tx, &entry).await)
//!             .await?;
//!         Ok(product)
//!     })
//!     .await?;
//! tracing::debug!(summary = %restocked.summary); // steps, boundaries, durations, rows, plan, outcome
//! # Ok(())
//! # }
//! ```
//!
//! ## Background workers
//!
//! ```no_run
//! # use std::time::Duration;
//! # use orchestration::Fabric;
//! # use orchestration::dispatch::EventBus;
//! # use orchestration::host::{Host, Job, Policy, Schedule, Tick, WorkerContext, WorkerError};
//! /// Logs each database's outbox backlog.
//! struct ReportBacklog {
//!     events: EventBus,
//! }
//!
//! impl Job for ReportBacklog {
//!     fn name(&self) -> &str {
//!         "report_backlog"
//!     }
//!
//!     async fn run(&self, _tick: Tick, _context: &WorkerContext) -> Result<(), WorkerError> {
//!         for outbox in self.events.status().await? {
//!             tracing::info!(database = %outbox.database, pending = outbox.pending, "outbox backlog");
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # fn example(fabric: &Fabric) -> Result<(), Box<dyn std::error::Error>> {
//! # let mut host = Host::new(fabric.databases());
//! host.add_job(
//!     ReportBacklog { events: fabric.events().clone() },
//!     Schedule::every(Duration::from_secs(60)), // .singleton() for one instance at a time, or Schedule::cron("*/5 * * * *")
//!     Policy::default(), // the app's: config.workers.policy("report_backlog", Policy::default())
//! )?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Events
//!
//! ```no_run
//! # use orchestration::dispatch::{Handler, HandlerError};
//! # use orchestration::outbox::Envelope;
//! # use orchestration::{Fabric, FabricError, UnitOfWork, UnitOfWorkError};
//! # use orders::{Order, OrderPlaced};
//! # use workflows::ORDER_PLACED;
//! # struct AuditOrderPlaced;
//! # impl AuditOrderPlaced {
//! #     const NAME: &str = "audit_order_placed";
//! # }
//! # fn emit(uow: &mut UnitOfWork<UnitOfWorkError>, order: &Order) -> Result<(), UnitOfWorkError> {
//! // In the unit of work, beside the state change:
//! let placed = OrderPlaced::of(&order);
//! uow.emit(orders::SCHEMA, ORDER_PLACED, placed.ordering_key(), &placed)?;
//! # Ok(())
//! # }
//! # fn subscribe(fabric: &Fabric) -> Result<(), FabricError> {
//!
//! // At composition (workflows::subscribe), once:
//! fabric.events().subscribe(ORDER_PLACED, AuditOrderPlaced::NAME, AuditOrderPlaced)?;
//! # Ok(())
//! # }
//!
//! impl Handler<OrderPlaced> for AuditOrderPlaced {
//!     async fn handle(&self, event: OrderPlaced, envelope: &Envelope, uow: &mut UnitOfWork<HandlerError>)
//!         -> Result<(), HandlerError> {
//! #       let entry = audit::NewEntry {
//! #           actor: audit::Actor::parse(&format!("customer:{}", event.customer_id))
//! #               .map_err(HandlerError::permanent)?,
//! #           action: audit::Action::parse("order.placed").map_err(HandlerError::permanent)?,
//! #           subject: audit::Subject::parse(&format!("order:{}", event.order_id))
//! #               .map_err(HandlerError::permanent)?,
//! #           occurred_at: event.placed_at,
//! #           data: serde_json::json!({ "event_id": envelope.event_id }),
//! #       };
//!         uow.step(audit::SCHEMA, "record_entry", async |tx| audit::record(tx, &entry).await).await?;
//!         Ok(())
//!     }
//! }
//! ```
//!
//! ## Tests: scenarios
//!
//! ```no_run
//! # use orchestration::testing::TestDatabase;
//! # async fn place(_: &workflows::PlaceOrder, _: &[(&str, u32)]) -> workflows::PlaceOrderOutcome {
//! #     unimplemented!()
//! # }
//! # async fn example(db: TestDatabase, workflow: workflows::PlaceOrder) {
//! let (placement, placed) = db
//!     .scenario()
//!     .stimulate(async || place(&workflow, &[("A", 2)]).await)
//!     .await
//!     .and_wait_for_event(workflows::ORDER_PLACED, |event| event.total_minor == 200)
//!     .await;
//! # let _ = (placement, placed);
//! # }
//! ```
