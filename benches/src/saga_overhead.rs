//! P3: what a durable saga costs over a plain unit of work doing the same work.
//!
//! The work is three steps, each recording one audit entry. "unit of work" runs them
//! as three steps of one unit of work (one transaction). "saga" runs them as three
//! local steps of a saga: a run row inserted at start, then per step a unit of work
//! that renews the lease, records the entry and writes the step's checkpoint, and a
//! final write marking the run completed. Runs go one after another (one client) and
//! with eight clients; each cell runs for a fixed time in four rounds in ABBA order.
//! The table prints runs per second, the saga's ratio, and the saga's extra time per
//! step.
//!
//! `cargo run --release -p benches --bin saga-overhead [SECONDS_PER_CELL]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use audit::{Action, Actor, NewEntry, Subject};
use chrono::Utc;
use orchestration::testing::{Engine, TestDatabase};
use orchestration::{
    Fabric, UnitOfWork,
    saga::{LocalStep, RunState, Saga, SagaContext, SagaHandle, StepError},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Rounds per cell, alternating which side goes first.
const ROUNDS: usize = 4;
const STEPS: [&str; 3] = ["first", "second", "third"];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Input {
    subject: String,
}

fn entry(subject: &str, step: &str) -> NewEntry {
    NewEntry {
        actor: Actor::parse("bench").expect("an actor"),
        action: Action::parse(&format!("bench.{step}")).expect("an action"),
        subject: Subject::parse(subject).expect("a subject"),
        occurred_at: Utc::now(),
        data: serde_json::json!({}),
    }
}

/// Records one audit entry.
struct Record(&'static str);

impl LocalStep<Input> for Record {
    type Output = ();
    const BOUNDARIES: &'static [&'static str] = &[audit::SCHEMA];

    async fn act(
        &self,
        run: &SagaContext<'_, Input>,
        uow: &mut UnitOfWork<StepError>,
    ) -> Result<(), StepError> {
        let entry = entry(&run.input().subject, self.0);
        uow.step(audit::SCHEMA, "record", async |tx| {
            audit::record(tx, &entry)
                .await
                .map_err(StepError::transient)
        })
        .await?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    UnitOfWork,
    Saga,
}

async fn run_once(fabric: &Fabric, saga: &SagaHandle<Input>, way: Way) {
    let subject = format!("bench:{}", Uuid::now_v7());
    match way {
        Way::UnitOfWork => {
            fabric
                .unit_of_work("bench_three_steps")
                .run(async |uow: &mut UnitOfWork<StepError>| {
                    for step in STEPS {
                        let entry = entry(&subject, step);
                        uow.step(audit::SCHEMA, "record", async |tx| {
                            audit::record(tx, &entry)
                                .await
                                .map_err(StepError::transient)
                        })
                        .await?;
                    }
                    Ok(())
                })
                .await
                .expect("the unit of work commits");
        }
        Way::Saga => {
            let run = saga
                .start(
                    &subject,
                    &Input {
                        subject: subject.clone(),
                    },
                    Duration::from_secs(60),
                )
                .await
                .expect("the saga starts");
            assert_eq!(run.run.state, RunState::Completed, "{run:?}");
        }
    }
}

/// Runs per second with `clients` running back to back for `seconds`.
async fn measure(
    fabric: &Fabric,
    saga: &SagaHandle<Input>,
    way: Way,
    clients: usize,
    seconds: f64,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (fabric, saga) = (fabric.clone(), saga.clone());
            let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    run_once(&fabric, &saga, way).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a client");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[allow(clippy::print_stdout)] // The table is the output.
#[tokio::main]
async fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    println!(
        "P3: three audit writes as one unit of work vs. a three-step saga, {seconds} s per cell"
    );
    println!();
    println!(
        "| backend | clients | unit of work runs/s | saga runs/s | saga / unit of work | saga overhead per step |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(db) = TestDatabase::create(engine, migrations::all()).await else {
            continue;
        };
        let saga = Saga::new("bench_three_steps")
            .local(STEPS[0], Record(STEPS[0]))
            .local(STEPS[1], Record(STEPS[1]))
            .local(STEPS[2], Record(STEPS[2]));
        let saga = db.fabric().sagas().register(saga).expect("register");
        for clients in [1, 8] {
            let (mut plain, mut durable) = (0.0, 0.0);
            for round in 0..ROUNDS {
                let cell = seconds / ROUNDS as f64;
                let order = if round % 2 == 0 {
                    [Way::UnitOfWork, Way::Saga]
                } else {
                    [Way::Saga, Way::UnitOfWork]
                };
                for way in order {
                    let rate = measure(db.fabric(), &saga, way, clients, cell).await;
                    match way {
                        Way::UnitOfWork => plain += rate / ROUNDS as f64,
                        Way::Saga => durable += rate / ROUNDS as f64,
                    }
                }
            }
            // Per run, per client: the saga's extra latency spread over its steps.
            let per_step_ms = (clients as f64 / durable - clients as f64 / plain) * 1000.0 / 3.0;
            println!(
                "| {engine:?} | {clients} | {plain:.0} | {durable:.0} | {:.2} | {per_step_ms:.2} ms |",
                durable / plain
            );
        }
    }
}
