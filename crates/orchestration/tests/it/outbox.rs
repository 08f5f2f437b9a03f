//! The outbox and inbox on every engine: events exist only if their unit of work
//! committed, a redelivered event takes effect once, a poison event goes dead and
//! replays once mended, one key's events arrive in order while keys run in parallel,
//! and (on PostgreSQL) three dispatchers deliver 10,000 events exactly once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestration::testing::{Clock, Engine, Scenario, TestDatabase};
use orchestration::{
    Fabric, UnitOfWork,
    dispatch::{Dispatcher, DispatcherOptions, Handler, HandlerError},
    host::{Host, Policy, RunningHost},
    outbox::{Envelope, EventType, ReplayFilter},
};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Statement};
use serde::{Deserialize, Serialize};

use super::{TestError, alpha};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noted {
    body: String,
    key: String,
    seq: u32,
}

const NOTED: EventType<Noted> = EventType::new("test.noted");

/// Writes the event's body into `alpha.notes`, and keeps count of what it saw.
#[derive(Debug, Default)]
struct Note {
    calls: AtomicUsize,
    /// While set, bodies starting with `poison` fail.
    poisoned: AtomicBool,
    /// Sleep a little in each delivery, so that deliveries overlap.
    dawdle: bool,
    running: AtomicUsize,
    most_running: AtomicUsize,
    /// (key, seq) in the order handled.
    handled: Mutex<Vec<(String, u32)>>,
}

impl Handler<Noted> for Arc<Note> {
    async fn handle(
        &self,
        event: Noted,
        _envelope: &Envelope,
        uow: &mut UnitOfWork<HandlerError>,
    ) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.poisoned.load(Ordering::SeqCst) && event.body.starts_with("poison") {
            return Err(HandlerError::msg("cannot digest poison"));
        }
        assert!(
            !(self.poisoned.load(Ordering::SeqCst) && event.body.starts_with("panic")),
            "the handler panics"
        );
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(running, Ordering::SeqCst);
        if self.dawdle {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(1..4))).await;
        }
        let written = uow
            .step("alpha", "note", async |tx| note(tx, &event.body).await)
            .await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        written?;
        self.handled.lock().unwrap().push((event.key, event.seq));
        Ok(())
    }
}

async fn note(tx: &DatabaseTransaction, body: &str) -> Result<u64, DbErr> {
    let backend = tx.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::MySql => "INSERT INTO alpha.notes (body) VALUES (?)",
        _ => "INSERT INTO alpha.notes (body) VALUES ($1)",
    };
    let statement = Statement::from_sql_and_values(backend, sql, [body.into()]);
    Ok(tx.execute_raw(statement).await?.rows_affected())
}

fn fast_options() -> DispatcherOptions {
    DispatcherOptions {
        max_attempts: 3,
        backoff: orchestration::backoff::Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(40),
        ),
        lease: Duration::from_secs(20),
        handler_timeout: Duration::from_secs(2),
        poll_interval: Duration::from_millis(100),
        ..DispatcherOptions::default()
    }
}

fn start_dispatcher(fabric: &Fabric, options: DispatcherOptions) -> RunningHost {
    let mut host = Host::new(fabric.databases());
    host.add(Dispatcher::new(fabric.events(), options), Policy::StopHost)
        .unwrap();
    host.start()
}

async fn stop(host: RunningHost) {
    let report = host.shutdown().await;
    assert!(
        report.abandoned.is_empty() && report.failure.is_none(),
        "{report}"
    );
}

/// Emits one event per `(body, key, seq)` in one unit of work, committed or not.
async fn emit(fabric: &Fabric, events: &[Noted], commit: bool) {
    let result = fabric
        .unit_of_work("emit_notes")
        .run(async |uow: &mut UnitOfWork<TestError>| {
            for event in events {
                uow.emit("alpha", NOTED, event.key.clone(), event)?;
            }
            if commit {
                Ok(())
            } else {
                Err(TestError::GaveUp)
            }
        })
        .await;
    assert_eq!(result.is_ok(), commit, "{result:?}");
}

fn noted(body: &str, key: &str, seq: u32) -> Noted {
    Noted {
        body: body.to_owned(),
        key: key.to_owned(),
        seq,
    }
}

/// How long to wait for the outbox to drain: generous, since ten thousand deliveries
/// take most of a minute on a busy 2-core machine; the tests check that everything
/// arrives, not how fast.
const DRAIN: Duration = Duration::from_secs(300);

async fn bodies(fabric: &Fabric) -> Vec<String> {
    let db = fabric.connection("alpha").unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT body FROM alpha.notes ORDER BY body",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get("", "body").unwrap())
        .collect()
}

/// Asserts that `expected` events took effect, none twice, and that the effects of
/// each group (`group` of a body) committed in body order. One key's deliveries run
/// one after another, so the notes' ids follow them.
async fn assert_each_once_in_order(fabric: &Fabric, expected: usize, group: impl Fn(&str) -> &str) {
    let mut distinct = bodies(fabric).await;
    assert_eq!(distinct.len(), expected, "every effect");
    distinct.dedup();
    assert_eq!(distinct.len(), expected, "no effect twice");
    let db = fabric.connection("alpha").unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT body FROM alpha.notes ORDER BY id",
        ))
        .await
        .unwrap();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for row in rows {
        let body: String = row.try_get("", "body").unwrap();
        if let Some(previous) = last.insert(group(&body).to_owned(), body.clone()) {
            assert!(previous < body, "{previous} took effect after {body}");
        }
    }
}

orchestration::engine_tests! {
    boundaries: [alpha()];
    an_event_reaches_subscribers_only_if_its_unit_of_work_commits,
    a_redelivered_event_takes_effect_once,
    a_poison_event_goes_dead_and_replays_once_mended,
    a_failed_delivery_is_retried_once_its_backoff_is_over_by_the_clock,
    one_keys_events_arrive_in_order_while_keys_run_in_parallel,
    deliveries_that_write_nothing_and_end_together_are_marked_done_together,
    emitters_racing_deliveries_of_the_same_keys_lose_nothing,
}

async fn an_event_reaches_subscribers_only_if_its_unit_of_work_commits(db: TestDatabase) {
    let fabric = db.fabric();
    let handler = Arc::new(Note::default());
    fabric
        .events()
        .subscribe(NOTED, "note", Arc::clone(&handler))
        .unwrap();
    emit(fabric, &[noted("rolled back", "a", 1)], false).await;
    emit(fabric, &[noted("committed", "a", 2)], true).await;
    // Polling so rarely that only a wake-up can explain a quick delivery below.
    let host = start_dispatcher(
        fabric,
        DispatcherOptions {
            poll_interval: Duration::from_secs(30),
            ..fast_options()
        },
    );
    Scenario::new(fabric)
        .within(DRAIN)
        .wait_until_delivered()
        .await;
    assert_eq!(bodies(fabric).await, ["committed"]);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
    // Emitted while the dispatcher runs: woken, not left for the next poll.
    let started = Instant::now();
    Scenario::new(fabric)
        .stimulate(async || emit(fabric, &[noted("while running", "b", 1)], true).await)
        .await
        .and_wait_until_delivered()
        .await;
    assert_eq!(bodies(fabric).await, ["committed", "while running"]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    stop(host).await;
}

async fn a_redelivered_event_takes_effect_once(db: TestDatabase) {
    let fabric = db.fabric();
    let handler = Arc::new(Note::default());
    fabric
        .events()
        .subscribe(NOTED, "note", Arc::clone(&handler))
        .unwrap();
    emit(fabric, &[noted("once", "a", 1)], true).await;
    let host = start_dispatcher(fabric, fast_options());
    Scenario::new(fabric)
        .within(DRAIN)
        .wait_until_delivered()
        .await;
    // Force a redelivery, as after a dispatcher that died between the handler's
    // commit and marking the message delivered.
    let outbox = fabric.connection("alpha").unwrap();
    outbox
        .execute_unprepared(
            "UPDATE outbox.messages SET status = 'pending', claimed_by = NULL, finished_at_ms = NULL, available_at_ms = 0",
        )
        .await
        .unwrap();
    // ... with its key's head, which the delivery's end had let go.
    outbox
        .execute_unprepared(
            "INSERT INTO outbox.heads (subscriber, ordering_key, message_id, available_at_ms) \
             SELECT subscriber, ordering_key, id, 0 FROM outbox.messages WHERE status = 'pending'",
        )
        .await
        .unwrap();
    Scenario::new(fabric)
        .wait_for_state(
            "redelivered",
            async |_| handler.calls.load(Ordering::SeqCst),
            |calls| *calls >= 2,
        )
        .await;
    Scenario::new(fabric)
        .within(DRAIN)
        .wait_until_delivered()
        .await;
    assert_eq!(bodies(fabric).await, ["once"]);
    stop(host).await;
}

/// The retry of a failed delivery is due by the fabric's clock: with a manual clock
/// (a time machine) it comes when time is moved past its backoff, not before, and the
/// test waits no backoff out.
async fn a_failed_delivery_is_retried_once_its_backoff_is_over_by_the_clock(db: TestDatabase) {
    let (clock, time) = Clock::manual(chrono::Utc::now());
    let fabric = &db.fabric_with_clock(clock).await;
    let handler = Arc::new(Note::default());
    handler.poisoned.store(true, Ordering::SeqCst);
    fabric
        .events()
        .subscribe(NOTED, "note", Arc::clone(&handler))
        .unwrap();
    let options = DispatcherOptions {
        backoff: orchestration::backoff::Backoff::new(
            Duration::from_secs(60),
            Duration::from_secs(600),
        ),
        poll_interval: Duration::from_millis(50),
        ..fast_options()
    };
    let host = start_dispatcher(fabric, options);
    let calls = async |_: &Fabric| handler.calls.load(Ordering::SeqCst);
    Scenario::new(fabric)
        .stimulate(async || emit(fabric, &[noted("poison", "a", 1)], true).await)
        .await
        .and_wait_for_state("tried once", calls, |calls| *calls == 1)
        .await;
    handler.poisoned.store(false, Ordering::SeqCst);
    // Mended, but the retry is a minute or more away by the clock, which stands still.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
    assert_eq!(fabric.events().status().await.unwrap()[0].pending, 1);
    // Past the longest backoff: retried and delivered, well within the shortest
    // backoff in real time.
    time.advance(Duration::from_secs(1200));
    Scenario::new(fabric)
        .within(Duration::from_secs(20))
        .wait_until_delivered()
        .await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
    assert_eq!(bodies(fabric).await, ["poison"]);
    stop(host).await;
}

async fn a_poison_event_goes_dead_and_replays_once_mended(db: TestDatabase) {
    let fabric = db.fabric();
    let handler = Arc::new(Note::default());
    handler.poisoned.store(true, Ordering::SeqCst);
    fabric
        .events()
        .subscribe(NOTED, "note", Arc::clone(&handler))
        .unwrap();
    emit(
        fabric,
        &[
            noted("poison", "a", 1),
            noted("panic", "c", 1),
            noted("wholesome", "b", 1),
        ],
        true,
    )
    .await;
    let host = start_dispatcher(fabric, fast_options());
    Scenario::new(fabric)
        .within(DRAIN)
        .wait_until_delivered()
        .await;
    // The poison and the panic failed their three attempts and are dead; the other
    // event flowed past.
    assert_eq!(bodies(fabric).await, ["wholesome"]);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 7);
    let status = fabric.events().status().await.unwrap();
    let database = &status[0];
    assert_eq!((database.pending, database.dead), (0, 2), "{status:?}");
    let subscriber = &database.subscribers[0];
    assert_eq!(subscriber.subscriber, "note");
    let last_error = subscriber.last_error.as_deref().unwrap_or_default();
    assert!(
        ["cannot digest poison", "the handler panicked"]
            .iter()
            .any(|e| last_error.contains(e)),
        "{last_error}"
    );
    // Replaying by another type matches nothing; once mended, replay delivers it once.
    let other = ReplayFilter {
        event_type: Some("test.other".to_owned()),
        ..ReplayFilter::default()
    };
    assert_eq!(fabric.events().replay(&other).await.unwrap()[0].1, 0);
    handler.poisoned.store(false, Ordering::SeqCst);
    let this = ReplayFilter {
        event_type: Some(NOTED.name().to_owned()),
        subscriber: Some("note".to_owned()),
        older_than: Some(Duration::ZERO),
    };
    assert_eq!(fabric.events().replay(&this).await.unwrap()[0].1, 2);
    Scenario::new(fabric)
        .within(DRAIN)
        .wait_until_delivered()
        .await;
    assert_eq!(bodies(fabric).await, ["panic", "poison", "wholesome"]);
    assert_eq!(fabric.events().status().await.unwrap()[0].dead, 0);
    stop(host).await;
}

async fn one_keys_events_arrive_in_order_while_keys_run_in_parallel(db: TestDatabase) {
    let fabric = db.fabric();
    let handler = Arc::new(Note {
        dawdle: true,
        ..Note::default()
    });
    fabric
        .events()
        .subscribe(NOTED, "note", Arc::clone(&handler))
        .unwrap();
    let keys = ["k1", "k2", "k3", "k4", "k5", "k6"];
    // Interleaved across keys, in several units of work.
    for seq in 0..20 {
        let events: Vec<Noted> = keys
            .iter()
            .map(|key| noted(&format!("{key}-{seq:02}"), key, seq))
            .collect();
        emit(fabric, &events, true).await;
    }
    let host = start_dispatcher(
        fabric,
        DispatcherOptions {
            concurrency: 4,
            ..fast_options()
        },
    );
    Scenario::new(fabric)
        .within(DRAIN)
        .wait_until_delivered()
        .await;
    let handled = handler.handled.lock().unwrap().clone();
    let mut per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (key, seq) in handled {
        per_key.entry(key).or_default().push(seq);
    }
    for key in keys {
        assert_eq!(per_key[key], (0..20).collect::<Vec<_>>(), "key {key}");
    }
    assert!(
        handler.most_running.load(Ordering::SeqCst) > 1,
        "deliveries of different keys never overlapped"
    );
    stop(host).await;
}

/// A subscriber that writes nothing leaves its messages to the dispatcher's completer;
/// 16 deliveries at once end together, and are marked done several to a transaction:
/// each event once, each key's in order, no head left.
async fn deliveries_that_write_nothing_and_end_together_are_marked_done_together(db: TestDatabase) {
    let fabric = db.fabric();
    let tally = Arc::new(Tally::default());
    fabric
        .events()
        .subscribe(NOTED, "tally", Arc::clone(&tally))
        .unwrap();
    const KEYS: usize = 40;
    const ROUNDS: usize = 10;
    for round in 0..ROUNDS {
        let events: Vec<Noted> = (0..KEYS)
            .map(|key| noted(&format!("k{key:02}-{round:02}"), &format!("k{key:02}"), 0))
            .collect();
        emit(fabric, &events, true).await;
    }
    let host = start_dispatcher(
        fabric,
        DispatcherOptions {
            concurrency: 16,
            ..fast_options()
        },
    );
    Scenario::new(fabric)
        .within(DRAIN)
        .wait_until_delivered()
        .await;
    assert_tally_in_order(&tally, KEYS * ROUNDS);
    assert_no_heads(fabric).await;
    stop(host).await;
}

/// The tally saw `expected` events, each once (no claim lapsed: every delivery's end
/// was recorded), each key's in its order (one key's deliveries never overlap, so the
/// order of `seen` is theirs): bodies are `<group>-<seq>`.
fn assert_tally_in_order(tally: &Tally, expected: usize) {
    let seen = tally.seen.lock().unwrap().clone();
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), expected, "events the tally missed");
    assert_eq!(seen.len(), expected, "events the tally saw twice");
    let mut last: BTreeMap<&str, &str> = BTreeMap::new();
    for body in &seen {
        let (group, seq) = body.rsplit_once('-').unwrap();
        if let Some(previous) = last.insert(group, seq) {
            assert!(previous <= seq, "{group}: {seq} after {previous}");
        }
    }
}

async fn assert_no_heads(fabric: &Fabric) {
    let db = fabric.connection("alpha").unwrap();
    let heads = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM outbox.heads",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        heads.try_get::<i64>("", "n").unwrap(),
        0,
        "heads left behind"
    );
}

/// Three instances (fabrics with their own pools and dispatchers) on one PostgreSQL
/// database deliver 10,000 events, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_dispatchers_deliver_ten_thousand_events_exactly_once() {
    let Some(db) = TestDatabase::create(Engine::Postgres, [alpha()]).await else {
        return;
    };
    const EVENTS: usize = 10_000;
    let mut instances = Vec::new();
    for _ in 0..3 {
        let fabric = Fabric::connect(db.topology(), [alpha()]).await.unwrap();
        let handler = Arc::new(Note::default());
        fabric
            .events()
            .subscribe(NOTED, "note", Arc::clone(&handler))
            .unwrap();
        let host = start_dispatcher(&fabric, fast_options());
        instances.push((fabric, handler, host));
    }
    // Emitted by the instances in turn while all three dispatch; 50 keys.
    for chunk in 0..EVENTS / 100 {
        let events: Vec<Noted> = (0..100)
            .map(|i| {
                let n = chunk * 100 + i;
                let (key, seq) = (n % 50, n / 50);
                noted(
                    &format!("key-{key:02}-{seq:05}"),
                    &format!("key-{key:02}"),
                    0,
                )
            })
            .collect();
        emit(&instances[chunk % 3].0, &events, true).await;
    }
    Scenario::new(&instances[0].0)
        .within(DRAIN)
        .wait_until_delivered()
        .await;
    let fabric = &instances[0].0;
    // Each key's effects committed in emission order, whichever instance ran them.
    assert_each_once_in_order(fabric, EVENTS, |body| &body[..6]).await;
    let calls: Vec<usize> = instances
        .iter()
        .map(|(_, handler, _)| handler.calls.load(Ordering::SeqCst))
        .collect();
    eprintln!("deliveries per instance: {calls:?}");
    for (fabric, _, host) in instances {
        stop(host).await;
        fabric.close().await;
    }
}

/// Per-key order lives in the outbox's heads, which emitters and the ends of
/// deliveries both write: 8 emitters commit 40 units of work each, one event on one
/// of 3 keys apiece, while two dispatchers (one on SQLite) deliver them. Every event
/// takes effect once, each emitter's events of a key in the order it emitted them,
/// and no head is left behind. (Its failure mode: a delivery that ends while an
/// emitter of its key commits lets the head go, and the emitter's message is never
/// claimed.)
///
/// A second subscriber, `tally`, writes nothing, so its messages are marked done by the
/// dispatcher's completer (several in one transaction when their deliveries end
/// together) rather than in the handler's transaction: it too sees every event, each
/// key's in order, and leaves no head behind.
async fn emitters_racing_deliveries_of_the_same_keys_lose_nothing(db: TestDatabase) {
    const EMITTERS: usize = 8;
    const EACH: usize = 40;
    let dispatchers = if db.engine() == Engine::Sqlite { 1 } else { 2 };
    let tally = Arc::new(Tally::default());
    let mut instances = Vec::new();
    for _ in 0..dispatchers {
        let fabric = Fabric::connect(db.topology(), [alpha()]).await.unwrap();
        let handler = Arc::new(Note {
            dawdle: true,
            ..Note::default()
        });
        fabric
            .events()
            .subscribe(NOTED, "note", Arc::clone(&handler))
            .unwrap();
        fabric
            .events()
            .subscribe(NOTED, "tally", Arc::clone(&tally))
            .unwrap();
        let host = start_dispatcher(&fabric, fast_options());
        instances.push((fabric, handler, host));
    }
    let mut emitters = tokio::task::JoinSet::new();
    for emitter in 0..EMITTERS {
        let fabric = instances[emitter % dispatchers].0.clone();
        emitters.spawn(async move {
            for seq in 0..EACH {
                let key = format!("k{}", fastrand::usize(0..3));
                let body = format!("{key}-e{emitter}-{seq:03}");
                emit(&fabric, &[noted(&body, &key, 0)], true).await;
            }
        });
    }
    while let Some(done) = emitters.join_next().await {
        done.unwrap();
    }
    let fabric = &instances[0].0;
    Scenario::new(fabric)
        .within(DRAIN)
        .wait_until_delivered()
        .await;
    // Each emitter's events of one key took effect in its order.
    assert_each_once_in_order(fabric, EMITTERS * EACH, |body| {
        body.rsplit_once('-').unwrap().0
    })
    .await;
    assert_tally_in_order(&tally, EMITTERS * EACH);
    assert_no_heads(fabric).await;
    for (fabric, _, host) in instances {
        stop(host).await;
        fabric.close().await;
    }
}

/// Remembers the bodies it is given, in order, and writes nothing.
#[derive(Debug, Default)]
struct Tally {
    seen: Mutex<Vec<String>>,
}

impl Handler<Noted> for Arc<Tally> {
    async fn handle(
        &self,
        event: Noted,
        _envelope: &Envelope,
        _uow: &mut UnitOfWork<HandlerError>,
    ) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..3))).await;
        self.seen.lock().unwrap().push(event.body);
        Ok(())
    }
}

/// Waits at a gate before delivering events whose body is `gated`.
struct Gated {
    gate: Arc<tokio::sync::Semaphore>,
    /// Set when a gated event reaches the gate.
    waiting: Arc<AtomicBool>,
    note: Arc<Note>,
}

impl Handler<Noted> for Gated {
    async fn handle(
        &self,
        event: Noted,
        envelope: &Envelope,
        uow: &mut UnitOfWork<HandlerError>,
    ) -> Result<(), HandlerError> {
        if event.body == "gated" {
            self.waiting.store(true, Ordering::SeqCst);
            let _open = self.gate.acquire().await.expect("never closed");
        }
        self.note.handle(event, envelope, uow).await
    }
}

/// The end of a delivery and an emitter of the same key, at their worst moment: the
/// emitter has written its message and is committing (held there for a second by a
/// deferred trigger) when the key's head finishes its delivery. The delivery must not
/// let the head go without the emitter's message: it waits for the emitter's commit,
/// and the message is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_ending_while_its_key_is_emitted_hands_the_head_on() {
    let Some(db) = TestDatabase::create(Engine::Postgres, [alpha()]).await else {
        return;
    };
    let fabric = db.fabric();
    fabric
        .connection("alpha")
        .unwrap()
        .execute_unprepared(
            "CREATE TABLE alpha.slow_commits (id serial PRIMARY KEY); \
             CREATE FUNCTION alpha.sleep_at_commit() RETURNS trigger LANGUAGE plpgsql AS \
               $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$; \
             CREATE CONSTRAINT TRIGGER sleep_at_commit AFTER INSERT ON alpha.slow_commits \
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION alpha.sleep_at_commit();",
        )
        .await
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let waiting = Arc::new(AtomicBool::new(false));
    let note = Arc::new(Note::default());
    fabric
        .events()
        .subscribe(
            NOTED,
            "note",
            Gated {
                gate: Arc::clone(&gate),
                waiting: Arc::clone(&waiting),
                note: Arc::clone(&note),
            },
        )
        .unwrap();
    emit(fabric, &[noted("gated", "k", 1)], true).await;
    let host = start_dispatcher(fabric, fast_options());
    Scenario::new(fabric)
        .wait_for_state(
            "the first event at the gate",
            async |_| waiting.load(Ordering::SeqCst),
            |waiting| *waiting,
        )
        .await;
    let emitting = fabric.clone();
    let slow = tokio::spawn(async move {
        emitting
            .unit_of_work("emit_slowly")
            .run(async |uow: &mut UnitOfWork<TestError>| {
                uow.step("alpha", "slow", async |tx| {
                    tx.execute_unprepared("INSERT INTO alpha.slow_commits DEFAULT VALUES")
                        .await
                })
                .await?;
                uow.emit("alpha", NOTED, "k", &noted("second", "k", 2))?;
                Ok(())
            })
            .await
            .unwrap();
    });
    // Once the emitter sleeps in its commit, let the first delivery end.
    let alpha = fabric.connection("alpha").unwrap().clone();
    Scenario::new(fabric)
        .wait_for_state(
            "the emitter in its commit",
            async |_| {
                let row = alpha
                    .query_one_raw(Statement::from_string(
                        alpha.get_database_backend(),
                        "SELECT COUNT(*) AS n FROM pg_stat_activity \
                         WHERE datname = current_database() AND wait_event = 'PgSleep'",
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                row.try_get::<i64>("", "n").unwrap()
            },
            |sleeping| *sleeping > 0,
        )
        .await;
    gate.add_permits(1);
    slow.await.unwrap();
    Scenario::new(fabric)
        .within(Duration::from_secs(20))
        .wait_until_delivered()
        .await;
    assert_eq!(bodies(fabric).await, ["gated", "second"]);
    stop(host).await;
}

/// A scenario waits for an event emitted by its stimulus; one that never comes fails
/// within its timeout, listing the events that did.
#[tokio::test]
async fn a_scenario_sees_the_events_of_its_stimulus_and_says_which_when_another_is_awaited() {
    let db = TestDatabase::create(Engine::Sqlite, [orchestration::schema::boundary(), alpha()])
        .await
        .expect("SQLite is embedded");
    let fabric = db.fabric().clone();
    fabric
        .events()
        .subscribe(NOTED, "note", Arc::new(Note::default()))
        .unwrap();
    // Emitted before the stimulus: not the stimulus's.
    emit(&fabric, &[noted("before", "k", 1)], true).await;
    let ((), seen) = Scenario::new(&fabric)
        .stimulate(async || {
            emit(
                &fabric,
                &[noted("first", "k", 2), noted("second", "k", 3)],
                true,
            )
            .await
        })
        .await
        .and_wait_for_event(NOTED, |event| event.seq >= 2)
        .await;
    assert_eq!(seen.body, "first");

    let waiting = tokio::spawn(async move {
        Scenario::new(&fabric)
            .within(Duration::from_millis(300))
            .stimulate(async || emit(&fabric, &[noted("third", "other", 4)], true).await)
            .await
            .and_wait_for_event(NOTED, |event| event.body == "never")
            .await;
    });
    let failure = waiting.await.expect_err("no such event comes");
    let message = failure.into_panic().downcast::<String>().unwrap();
    assert!(
        message.contains("no matching `test.noted` event within 300ms"),
        "{message}"
    );
    assert!(message.contains("key=other"), "{message}");
    assert!(message.contains("\"third\""), "{message}");
    assert!(!message.contains("\"first\""), "{message}");
}
