//! Durable sagas on every engine: steps checkpoint as they take effect; a refusal
//! compensates completed steps in reverse order; transient failures retry; a failing
//! compensation leaves the run `failed` until retried; one key makes one run however
//! often and however concurrently it is started; a run whose driver lost its lease is
//! finished by another instance's recovery, each effect once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestration::testing::{Clock, TestDatabase};
use orchestration::{
    Fabric, FabricError, UnitOfWork,
    host::{Host, Policy},
    saga::{
        ExternalStep, IdempotencyKey, LocalStep, RetryPolicy, RunDetails, RunFilter, RunState,
        Saga, SagaContext, SagaError, SagaHandle, SagaRecovery, SagaRecoveryOptions, StepError,
        StepState,
    },
};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Statement};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

use super::{alpha, count};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Input {
    name: String,
    /// The step that refuses, if any.
    reject_at: Option<String>,
}

fn input(name: &str) -> Input {
    Input {
        name: name.to_owned(),
        reject_at: None,
    }
}

/// What the steps did, in order, and the switches that make them misbehave.
#[derive(Debug, Default)]
struct World {
    log: Mutex<Vec<String>>,
    /// Compensations of local steps fail while set.
    undo_fails: AtomicBool,
    /// The external service: the next calls that fail transiently.
    failures: AtomicU32,
    /// The external service's effects by key: the receipt it issued.
    charges: Mutex<HashMap<String, u32>>,
    /// Every call the external service received, by key.
    calls: Mutex<Vec<String>>,
    refunds: Mutex<Vec<String>>,
    /// While set, the external call waits for `release` before answering.
    hold: AtomicBool,
    held: Notify,
    release: Notify,
}

impl World {
    fn log(&self, entry: String) {
        self.log.lock().unwrap().push(entry);
    }

    fn entries(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// Writes a note `<name>:<step>` into `alpha`; compensation deletes it.
struct Write {
    step: &'static str,
    world: Arc<World>,
}

impl LocalStep<Input> for Write {
    type Output = String;
    const BOUNDARIES: &'static [&'static str] = &["alpha"];

    async fn act(
        &self,
        run: &SagaContext<'_, Input>,
        uow: &mut UnitOfWork<StepError>,
    ) -> Result<String, StepError> {
        self.world.log(format!("do {}", self.step));
        if run.input().reject_at.as_deref() == Some(self.step) {
            return Err(StepError::reject(&json!({ "refused_by": self.step })));
        }
        let body = format!("{}:{}", run.input().name, self.step);
        uow.step("alpha", "note", async |tx| {
            sql(tx, "INSERT INTO alpha.notes (body) VALUES ($1)", &body).await
        })
        .await?;
        Ok(body)
    }

    async fn compensate(
        &self,
        _run: &SagaContext<'_, Input>,
        body: String,
        uow: &mut UnitOfWork<StepError>,
    ) -> Result<(), StepError> {
        self.world.log(format!("undo {}", self.step));
        if self.world.undo_fails.load(Ordering::SeqCst) {
            return Err(StepError::transient("the note is stuck"));
        }
        uow.step("alpha", "unnote", async |tx| {
            sql(tx, "DELETE FROM alpha.notes WHERE body = $1", &body).await
        })
        .await?;
        Ok(())
    }
}

async fn sql(tx: &DatabaseTransaction, sql: &str, body: &str) -> Result<u64, DbErr> {
    let backend = tx.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::MySql => sql.replace("$1", "?"),
        _ => sql.to_owned(),
    };
    let statement = Statement::from_sql_and_values(backend, sql, [body.into()]);
    Ok(tx.execute_raw(statement).await?.rows_affected())
}

/// Calls the keyed external service: one receipt per key however often called.
struct Charge {
    world: Arc<World>,
}

impl ExternalStep<Input> for Charge {
    type Output = u32;

    async fn act(
        &self,
        run: &SagaContext<'_, Input>,
        key: &IdempotencyKey,
    ) -> Result<u32, StepError> {
        let world = &self.world;
        world.log("do charge".to_owned());
        world.calls.lock().unwrap().push(key.action());
        if world.hold.load(Ordering::SeqCst) {
            world.held.notify_one();
            world.release.notified().await;
        }
        if world
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StepError::transient("the service is unavailable"));
        }
        if run.input().reject_at.as_deref() == Some("charge") {
            return Err(StepError::reject(&json!({ "refused_by": "charge" })));
        }
        let mut charges = world.charges.lock().unwrap();
        let next = u32::try_from(charges.len()).unwrap() + 1;
        Ok(*charges.entry(key.action()).or_insert(next))
    }

    async fn compensate(
        &self,
        _run: &SagaContext<'_, Input>,
        key: &IdempotencyKey,
        receipt: Option<u32>,
    ) -> Result<(), StepError> {
        self.world.log(format!("undo charge {receipt:?}"));
        let charged = self.world.charges.lock().unwrap().remove(&key.action());
        if charged.is_some() {
            self.world.refunds.lock().unwrap().push(key.compensation());
        }
        Ok(())
    }
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        backoff: orchestration::backoff::Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(20),
        ),
        timeout: Duration::from_secs(5),
    }
}

/// `first` (local) → `charge` (external) → `second` (local).
fn saga(world: &Arc<World>) -> Saga<Input> {
    saga_retrying_charge(world, quick())
}

/// [`saga`], with `charge` retried by `policy`.
fn saga_retrying_charge(world: &Arc<World>, policy: RetryPolicy) -> Saga<Input> {
    Saga::new("test_saga")
        .lease(Duration::from_secs(10))
        .local(
            "first",
            Write {
                step: "first",
                world: Arc::clone(world),
            },
        )
        .retry(quick())
        .external(
            "charge",
            Charge {
                world: Arc::clone(world),
            },
        )
        .retry(policy)
        .local(
            "second",
            Write {
                step: "second",
                world: Arc::clone(world),
            },
        )
        .retry(quick())
}

/// Another instance on `db`'s databases, with the saga `define` makes of a fresh
/// world registered (a saga registers once per fabric).
async fn instance(
    db: &TestDatabase,
    define: fn(&Arc<World>) -> Saga<Input>,
) -> (Fabric, SagaHandle<Input>, Arc<World>) {
    let world = Arc::new(World::default());
    let fabric = Fabric::connect(db.topology(), [orchestration::schema::boundary(), alpha()])
        .await
        .unwrap();
    let handle = fabric.sagas().register(define(&world)).unwrap();
    (fabric, handle, world)
}

fn register(fabric: &Fabric, world: &Arc<World>) -> SagaHandle<Input> {
    fabric.sagas().register(saga(world)).unwrap()
}

const WAIT: Duration = Duration::from_secs(30);

async fn notes(fabric: &Fabric) -> i64 {
    count(fabric, "alpha").await
}

fn states(run: &RunDetails) -> Vec<(&str, StepState)> {
    run.steps
        .iter()
        .map(|s| (s.name.as_str(), s.state))
        .collect()
}

orchestration::engine_tests! {
    boundaries: [orchestration::schema::boundary(), alpha()];
    a_run_checkpoints_every_step_and_completes,
    a_refusal_compensates_completed_steps_in_reverse_order,
    transient_failures_retry_and_a_call_that_keeps_failing_is_undone,
    a_failing_compensation_leaves_the_run_failed_until_retried,
    one_key_makes_one_run_however_often_and_concurrently_started,
    a_run_whose_driver_lost_its_lease_is_finished_by_recovery_once,
    a_cancelled_run_stops_and_compensates,
    a_stopping_instance_hands_its_runs_over_after_the_step_in_flight,
    a_stopping_instance_does_not_wait_out_a_retry_backoff,
    consecutive_local_steps_commit_together_and_run_one_at_a_time_after_a_failure,
}

async fn a_run_checkpoints_every_step_and_completes(db: TestDatabase) {
    let fabric = db.fabric();
    let world = Arc::new(World::default());
    let handle = register(fabric, &world);
    let run = handle.start("k1", &input("one"), WAIT).await.unwrap();
    assert_eq!(run.run.state, RunState::Completed, "{run:?}");
    assert_eq!(run.run.current_step, 3);
    assert_eq!(
        states(&run),
        [
            ("first", StepState::Done),
            ("charge", StepState::Done),
            ("second", StepState::Done)
        ]
    );
    assert_eq!(run.steps[0].output, Some(json!("one:first")));
    assert_eq!(run.steps[1].output, Some(json!(1)));
    assert_eq!(run.output(), Some(&json!("one:second")));
    assert_eq!(run.input, json!({"name": "one", "reject_at": null}));
    assert!(run.run.finished_at.is_some() && run.run.lease_holder.is_none());
    assert_eq!(notes(fabric).await, 2);
    assert_eq!(world.entries(), ["do first", "do charge", "do second"]);
    // The key the external step passed is the run's and the step's.
    assert_eq!(
        *world.calls.lock().unwrap(),
        [format!("{}/charge", run.run.id)]
    );
    // Listed and shown.
    let listed = fabric
        .sagas()
        .runs(&RunFilter {
            states: vec![RunState::Completed],
            limit: None,
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(fabric.sagas().run(run.run.id).await.unwrap(), run);
    let none = fabric
        .sagas()
        .runs(&RunFilter {
            states: vec![RunState::Failed],
            limit: None,
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn a_refusal_compensates_completed_steps_in_reverse_order(db: TestDatabase) {
    let fabric = db.fabric();
    let world = Arc::new(World::default());
    let handle = register(fabric, &world);
    let refused = Input {
        name: "two".to_owned(),
        reject_at: Some("second".to_owned()),
    };
    let run = handle.start("k2", &refused, WAIT).await.unwrap();
    assert_eq!(run.run.state, RunState::Compensated, "{run:?}");
    assert_eq!(run.run.rejection, Some(json!({"refused_by": "second"})));
    assert_eq!(run.run.last_error, None);
    assert_eq!(
        world.entries(),
        [
            "do first",
            "do charge",
            "do second",
            "undo charge Some(1)",
            "undo first"
        ]
    );
    assert_eq!(
        states(&run),
        [
            ("first", StepState::Compensated),
            ("charge", StepState::Compensated)
        ]
    );
    assert!(run.steps.iter().all(|s| s.compensated_at.is_some()));
    assert_eq!(notes(fabric).await, 0);
    assert!(world.charges.lock().unwrap().is_empty());
    assert_eq!(
        *world.refunds.lock().unwrap(),
        [format!("{}/charge/compensate", run.run.id)]
    );
    assert_eq!(run.output(), None);

    // Refused by the first step: nothing took effect, nothing to undo.
    let (_instance, handle, world) = instance(&db, saga).await;
    let refused = Input {
        name: "three".to_owned(),
        reject_at: Some("first".to_owned()),
    };
    let run = handle.start("k3", &refused, WAIT).await.unwrap();
    assert_eq!(run.run.state, RunState::Compensated);
    assert!(run.steps.is_empty());
    assert_eq!(world.entries(), ["do first"]);
}

async fn transient_failures_retry_and_a_call_that_keeps_failing_is_undone(db: TestDatabase) {
    let fabric = db.fabric();
    let world = Arc::new(World::default());
    let handle = register(fabric, &world);
    // Two failures, then success on the third and last allowed attempt.
    world.failures.store(2, Ordering::SeqCst);
    let run = handle.start("k4", &input("four"), WAIT).await.unwrap();
    assert_eq!(run.run.state, RunState::Completed, "{run:?}");
    assert_eq!(run.steps[1].attempts, 3);
    assert_eq!(world.calls.lock().unwrap().len(), 3);
    assert_eq!(world.charges.lock().unwrap().len(), 1);

    // Always failing: after three attempts the outcome is unknown; the run undoes the
    // call (its compensation gets no output) and the first step.
    world.failures.store(100, Ordering::SeqCst);
    let run = handle.start("k5", &input("five"), WAIT).await.unwrap();
    assert_eq!(run.run.state, RunState::Compensated, "{run:?}");
    let error = run.run.last_error.clone().unwrap();
    assert!(
        error.contains("step `charge` attempt 3: the service is unavailable"),
        "{error}"
    );
    assert_eq!(run.run.rejection, None);
    assert_eq!(
        states(&run),
        [
            ("first", StepState::Compensated),
            ("charge", StepState::Compensated)
        ]
    );
    assert_eq!(run.steps[1].output, None);
    assert!(world.entries().ends_with(&[
        "do charge".to_owned(),
        "undo charge None".to_owned(),
        "undo first".to_owned()
    ]));
    assert_eq!(notes(fabric).await, 2, "only k4's notes remain");
}

async fn a_failing_compensation_leaves_the_run_failed_until_retried(db: TestDatabase) {
    let fabric = db.fabric();
    let world = Arc::new(World::default());
    let handle = register(fabric, &world);
    world.undo_fails.store(true, Ordering::SeqCst);
    let refused = Input {
        name: "six".to_owned(),
        reject_at: Some("charge".to_owned()),
    };
    let run = handle.start("k6", &refused, WAIT).await.unwrap();
    assert_eq!(run.run.state, RunState::Failed, "{run:?}");
    let error = run.run.last_error.clone().unwrap();
    assert!(
        error.contains("compensating step `first` attempt 3: the note is stuck"),
        "{error}"
    );
    assert_eq!(run.run.current_step, 1, "the first step is still to undo");
    assert_eq!(notes(fabric).await, 1);
    // Nothing drives a failed run; neither cancel nor retry fits a finished one.
    let completed = handle.start("k6b", &input("ok"), WAIT).await.unwrap();
    assert!(matches!(
        fabric.sagas().retry(completed.run.id).await,
        Err(SagaError::InvalidState {
            state: RunState::Completed,
            ..
        })
    ));
    assert!(matches!(
        fabric.sagas().cancel(completed.run.id).await,
        Err(SagaError::InvalidState { .. })
    ));
    assert!(matches!(
        fabric.sagas().retry(uuid::Uuid::now_v7()).await,
        Err(SagaError::UnknownRun(_))
    ));

    // Mended and retried: the recovery worker undoes the first step.
    world.undo_fails.store(false, Ordering::SeqCst);
    let retried = fabric.sagas().retry(run.run.id).await.unwrap();
    assert_eq!(retried.run.state, RunState::Compensating);
    let host = recovery_host(fabric);
    let run = handle.wait(run.run.id, WAIT).await.unwrap();
    assert_eq!(run.run.state, RunState::Compensated, "{run:?}");
    assert_eq!(notes(fabric).await, 2, "only k6b's notes remain");
    host.shutdown().await;
}

fn recovery_host(fabric: &Fabric) -> orchestration::host::RunningHost {
    let mut host = Host::new(fabric.databases()).shutdown_timeout(Duration::from_secs(5));
    host.add(
        SagaRecovery::new(
            fabric.sagas(),
            SagaRecoveryOptions {
                poll_interval: Duration::from_millis(50),
                concurrency: 4,
            },
        ),
        Policy::StopHost,
    )
    .unwrap();
    host.start()
}

async fn one_key_makes_one_run_however_often_and_concurrently_started(db: TestDatabase) {
    let fabric = db.fabric();
    let world = Arc::new(World::default());
    let handle = register(fabric, &world);
    let first = handle.start("same", &input("seven"), WAIT).await.unwrap();
    let again = handle.start("same", &input("seven"), WAIT).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(world.entries(), ["do first", "do charge", "do second"]);
    match handle.start("same", &input("other"), WAIT).await {
        Err(SagaError::KeyConflict { key, run_id, .. }) => {
            assert_eq!((key.as_str(), run_id), ("same", first.run.id));
        }
        other => panic!("expected a key conflict, got {other:?}"),
    }
    assert!(matches!(
        handle.start("", &input("x"), WAIT).await,
        Err(SagaError::InvalidKey(_))
    ));

    // Ten concurrent starts with one key: one run, each effect once.
    let starts: Vec<_> = (0..10)
        .map(|_| {
            let handle = handle.clone();
            tokio::spawn(async move { handle.start("racy", &input("eight"), WAIT).await })
        })
        .collect();
    let mut ids = Vec::new();
    for start in starts {
        let run = start.await.unwrap().unwrap();
        assert_eq!(run.run.state, RunState::Completed, "{run:?}");
        ids.push(run.run.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(notes(fabric).await, 4);
    assert_eq!(world.calls.lock().unwrap().len(), 2);
    let all = fabric.sagas().runs(&RunFilter::default()).await.unwrap();
    assert_eq!(all.len(), 2);
}

async fn a_run_whose_driver_lost_its_lease_is_finished_by_recovery_once(db: TestDatabase) {
    // Instance A starts the run; its external call hangs. Time moves past the lease
    // (both instances read one manual clock); instance B's recovery takes the run over
    // and finishes it. When A's call finally returns, A's checkpoint finds the run
    // taken and changes nothing.
    let (clock, time) = Clock::manual(chrono::Utc::now());
    let a = &db.fabric_with_clock(clock.clone()).await;
    let world = Arc::new(World::default());
    let handle = register(a, &world);
    world.hold.store(true, Ordering::SeqCst);
    let started = handle
        .start("abandoned", &input("nine"), Duration::ZERO)
        .await
        .unwrap();
    world.held.notified().await;
    world.hold.store(false, Ordering::SeqCst);
    // B's recovery finds the run leased by A until the lease (10 s) runs out.
    let b = db.fabric_with_clock(clock).await;
    let handle_b = b.sagas().register(saga(&world)).unwrap();
    let host = recovery_host(&b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = handle_b.run(started.run.id).await.unwrap();
    assert_eq!(run.run.state, RunState::Running, "{run:?}");
    time.advance(Duration::from_secs(11));
    // Well within the lease in real time: only the clock let it run out.
    let run = handle_b
        .wait(started.run.id, Duration::from_secs(5))
        .await
        .unwrap();
    host.shutdown().await;
    assert_eq!(run.run.state, RunState::Completed, "{run:?}");

    world.release.notify_one();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = handle.run(started.run.id).await.unwrap();
    assert_eq!(after, run, "A changed nothing after losing the lease");
    // Both instances called with the run's key; the service charged once.
    let calls = world.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0], calls[1]);
    assert_eq!(world.charges.lock().unwrap().len(), 1);
    // Each local step took effect once.
    assert_eq!(notes(a).await, 2);
}

/// Instance B, sharing `world` (one external service, one log), resumes run `id`
/// with its recovery worker and completes it.
async fn completed_by_another_instance(
    db: &TestDatabase,
    world: &Arc<World>,
    id: uuid::Uuid,
) -> RunDetails {
    let b = Fabric::connect(db.topology(), [orchestration::schema::boundary(), alpha()])
        .await
        .unwrap();
    let handle = b.sagas().register(saga(world)).unwrap();
    let host = recovery_host(&b);
    let run = handle.wait(id, WAIT).await.unwrap();
    host.shutdown().await;
    assert_eq!(run.run.state, RunState::Completed, "{run:?}");
    run
}

async fn a_cancelled_run_stops_and_compensates(db: TestDatabase) {
    let fabric = db.fabric();
    let world = Arc::new(World::default());
    let handle = register(fabric, &world);
    world.hold.store(true, Ordering::SeqCst);
    let started = handle
        .start("cancel", &input("ten"), Duration::ZERO)
        .await
        .unwrap();
    world.held.notified().await;
    let cancelling = fabric.sagas().cancel(started.run.id).await.unwrap();
    assert!(cancelling.run.cancel_requested);
    world.release.notify_one();
    let run = handle.wait(started.run.id, WAIT).await.unwrap();
    assert_eq!(run.run.state, RunState::Cancelled, "{run:?}");
    assert_eq!(
        world.entries(),
        ["do first", "do charge", "undo charge Some(1)", "undo first"],
        "the call in flight finished; the next step never ran"
    );
    assert_eq!(notes(fabric).await, 0);
}

async fn a_stopping_instance_hands_its_runs_over_after_the_step_in_flight(db: TestDatabase) {
    // A shuts down while its external call is in flight: the stop waits for the call,
    // checkpoints it and gives the run's lease up; B resumes the run at once from the
    // next step, without calling again.
    let a = db.fabric();
    let world = Arc::new(World::default());
    let handle = register(a, &world);
    let host_a = recovery_host(a);
    world.hold.store(true, Ordering::SeqCst);
    let started = handle
        .start("handover", &input("eleven"), Duration::ZERO)
        .await
        .unwrap();
    world.held.notified().await;
    let stopping = tokio::spawn(host_a.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stopping.is_finished(), "the stop waits for the call");
    world.hold.store(false, Ordering::SeqCst);
    world.release.notify_one();
    let report = stopping.await.unwrap();
    assert_eq!(report.stopped, [SagaRecovery::NAME]);
    assert!(report.abandoned.is_empty(), "{report}");
    assert_handed_over(&handle.run(started.run.id).await.unwrap(), 2);

    let run = completed_by_another_instance(&db, &world, started.run.id).await;
    assert_eq!(run.steps[1].attempts, 1, "{run:?}");
    assert_eq!(world.entries(), ["do first", "do charge", "do second"]);
    assert_eq!(notes(a).await, 2);
}

async fn a_stopping_instance_does_not_wait_out_a_retry_backoff(db: TestDatabase) {
    // A's call failed and waits a minute before its next attempt when A shuts down:
    // the stop cuts the wait short and hands the run over; B makes the next attempt.
    let a = db.fabric();
    let world = Arc::new(World::default());
    let patient = RetryPolicy {
        backoff: orchestration::backoff::Backoff::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
        ),
        ..quick()
    };
    let handle = a
        .sagas()
        .register(saga_retrying_charge(&world, patient).lease(Duration::from_secs(120)))
        .unwrap();
    let host_a = recovery_host(a);
    world.failures.store(1, Ordering::SeqCst);
    let started = handle
        .start("backoff", &input("twelve"), Duration::ZERO)
        .await
        .unwrap();
    let failed_once = async {
        while handle.run(started.run.id).await.unwrap().run.attempts == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, failed_once).await.unwrap();
    let report = host_a.shutdown().await;
    assert!(report.abandoned.is_empty(), "{report}");
    let handed = handle.run(started.run.id).await.unwrap();
    assert_handed_over(&handed, 1);
    assert_eq!(handed.run.attempts, 1);

    let run = completed_by_another_instance(&db, &world, started.run.id).await;
    assert_eq!(run.steps[1].attempts, 2);
    assert_eq!(world.calls.lock().unwrap().len(), 2);
    assert_eq!(notes(a).await, 2);
}

/// Run `run` is unfinished at step `step`, held by nobody, and claimable at once,
/// long before its lease would have run out.
fn assert_handed_over(run: &RunDetails, step: u32) {
    assert_eq!(run.run.state, RunState::Running, "{run:?}");
    assert_eq!(run.run.current_step, step, "{run:?}");
    assert_eq!(run.run.lease_holder, None, "{run:?}");
    assert!(
        run.run.lease_expires_at <= chrono::Utc::now(),
        "the lease was given up: {run:?}"
    );
}

#[tokio::test]
async fn invalid_definitions_are_refused_at_registration() {
    let Some(db) = TestDatabase::create(
        orchestration::testing::Engine::Sqlite,
        [orchestration::schema::boundary(), alpha()],
    )
    .await
    else {
        return;
    };
    let fabric = db.fabric();
    let world = Arc::new(World::default());
    let invalid = |result: Result<SagaHandle<Input>, FabricError>| match result {
        Err(FabricError::InvalidSaga { reason, .. }) => reason,
        other => panic!("expected an invalid saga, got {other:?}"),
    };
    let reason = invalid(fabric.sagas().register(Saga::<Input>::new("empty")));
    assert_eq!(reason, "it has no steps");
    let reason = invalid(
        fabric
            .sagas()
            .register(saga(&world).lease(Duration::from_secs(1))),
    );
    assert!(
        reason.contains("must exceed step `first`'s timeout"),
        "{reason}"
    );
    struct Elsewhere;
    impl LocalStep<Input> for Elsewhere {
        type Output = ();
        const BOUNDARIES: &'static [&'static str] = &["nowhere"];
        async fn act(
            &self,
            _run: &SagaContext<'_, Input>,
            _uow: &mut UnitOfWork<StepError>,
        ) -> Result<(), StepError> {
            Ok(())
        }
    }
    let reason = invalid(
        fabric
            .sagas()
            .register(Saga::new("elsewhere").local("lost", Elsewhere)),
    );
    assert!(
        reason.contains("step `lost` cannot commit with its checkpoint"),
        "{reason}"
    );
    register(fabric, &world);
    assert!(matches!(
        fabric.sagas().register(saga(&world)),
        Err(FabricError::DuplicateSaga("test_saga"))
    ));

    // Without the orchestration boundary there is nowhere to keep runs.
    let bare = TestDatabase::create(orchestration::testing::Engine::Sqlite, [alpha()])
        .await
        .unwrap();
    assert!(matches!(
        bare.fabric().sagas().register(saga(&world)),
        Err(FabricError::UnknownBoundary { .. })
    ));
    assert!(matches!(
        bare.fabric().sagas().runs(&RunFilter::default()).await,
        Err(SagaError::NoRunStore)
    ));
}

/// `first` → `second` → `third`, all local on the runs' database.
fn all_local(world: &Arc<World>) -> Saga<Input> {
    ["first", "second", "third"]
        .into_iter()
        .fold(Saga::new("all_local"), |saga, step| {
            saga.local(
                step,
                Write {
                    step,
                    world: Arc::clone(world),
                },
            )
            .retry(quick())
        })
}

async fn consecutive_local_steps_commit_together_and_run_one_at_a_time_after_a_failure(
    db: TestDatabase,
) {
    let fabric = db.fabric();
    let world = Arc::new(World::default());
    let handle = fabric.sagas().register(all_local(&world)).unwrap();
    let run = handle.start("l1", &input("nine"), WAIT).await.unwrap();
    assert_eq!(run.run.state, RunState::Completed, "{run:?}");
    let done = [
        ("first", StepState::Done),
        ("second", StepState::Done),
        ("third", StepState::Done),
    ];
    assert_eq!(states(&run), done);
    assert_eq!(run.output(), Some(&json!("nine:third")));
    assert_eq!(world.entries(), ["do first", "do second", "do third"]);
    assert_eq!(notes(fabric).await, 3);
    // The run the start returned without reading it back is the run as stored.
    assert_eq!(fabric.sagas().run(run.run.id).await.unwrap(), run);

    // The third step refuses: nothing of the three committed, so they run again one
    // at a time, and the refusal undoes the first two.
    let (_instance, handle, world) = instance(&db, all_local).await;
    let refused = Input {
        name: "ten".to_owned(),
        reject_at: Some("third".to_owned()),
    };
    let run = handle.start("l2", &refused, WAIT).await.unwrap();
    assert_eq!(run.run.state, RunState::Compensated, "{run:?}");
    assert_eq!(
        world.entries(),
        [
            "do first",
            "do second",
            "do third",
            "do first",
            "do second",
            "do third",
            "undo second",
            "undo first"
        ]
    );
    assert_eq!(
        states(&run),
        [
            ("first", StepState::Compensated),
            ("second", StepState::Compensated)
        ]
    );
    assert_eq!(notes(fabric).await, 3);
    assert_eq!(fabric.sagas().run(run.run.id).await.unwrap(), run);

    // The first step refuses: its refusal is its attempt; the run is stored, refused.
    let (_instance, handle, world) = instance(&db, all_local).await;
    let refused = Input {
        name: "eleven".to_owned(),
        reject_at: Some("first".to_owned()),
    };
    let run = handle.start("l3", &refused, WAIT).await.unwrap();
    assert_eq!(run.run.state, RunState::Compensated, "{run:?}");
    assert_eq!(run.run.rejection, Some(json!({"refused_by": "first"})));
    assert!(run.steps.is_empty());
    assert_eq!(world.entries(), ["do first"]);

    // Under load: twenty runs, half of them started twice at once with one key.
    let (_instance, handle, _) = instance(&db, all_local).await;
    let starts: Vec<_> = (0..30)
        .map(|i| {
            let handle = handle.clone();
            let key = format!("load-{}", i % 20);
            tokio::spawn(async move { handle.start(&key, &input(&key), WAIT).await })
        })
        .collect();
    let mut ids = Vec::new();
    for start in starts {
        let run = start.await.unwrap().unwrap();
        assert_eq!(run.run.state, RunState::Completed, "{run:?}");
        ids.push(run.run.id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    assert_eq!(notes(fabric).await, 3 + 60);
    for run in fabric.sagas().runs(&RunFilter::default()).await.unwrap() {
        let stored = fabric.sagas().run(run.id).await.unwrap();
        assert!(!stored.run.state.is_active(), "{stored:?}");
    }
}
