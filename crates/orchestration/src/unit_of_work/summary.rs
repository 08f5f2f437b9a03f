//! What a run of a unit of work reports: its outcome, its steps, its summary, and the
//! metrics recorded from them.

use std::fmt;
use std::time::Duration;

use uuid::Uuid;

use crate::databases::CommitPlan;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step succeeded and the transaction committed.
    Committed,
    /// The work returned an error; nothing was persisted.
    RolledBack {
        /// The error, as text.
        reason: String,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Committed => f.write_str("committed"),
            Self::RolledBack { reason } => write!(f, "rolled back: {reason}"),
        }
    }
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSummary {
    /// The step's name.
    pub name: &'static str,
    /// The boundary it touched.
    pub boundary: &'static str,
    /// How long it ran.
    pub elapsed: Duration,
    /// Whether it returned `Ok`.
    pub succeeded: bool,
    /// Rows the step affected, where the fabric can know (SQL and batch steps).
    pub rows: Option<u64>,
}

/// What happened in one run of a unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// The pipeline's name.
    pub pipeline: &'static str,
    /// This run's id (a UUIDv7, so ids sort by start time).
    pub run_id: Uuid,
    /// Steps in the order they ran.
    pub steps: Vec<StepSummary>,
    /// How the run committed (or would have).
    pub plan: CommitPlan,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time from start to commit or rollback.
    pub elapsed: Duration,
    /// Events emitted (written to the outbox if the run committed).
    pub events: usize,
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} in {:.1?} ({}):",
            self.pipeline, self.outcome, self.elapsed, self.plan
        )?;
        if self.events > 0 {
            write!(f, " {} events;", self.events)?;
        }
        for step in &self.steps {
            let mark = if step.succeeded { "" } else { " FAILED" };
            write!(f, " {}.{} {:.1?}", step.boundary, step.name, step.elapsed)?;
            if let Some(rows) = step.rows {
                write!(f, " {rows} rows")?;
            }
            write!(f, "{mark};")?;
        }
        Ok(())
    }
}

/// The value of a committed run and its summary.
#[derive(Debug)]
pub struct Completed<T> {
    /// What the work returned.
    pub value: T,
    /// What happened.
    pub summary: RunSummary,
}

/// Per pipeline: runs and failures, duration, and rows affected; per step: runs by
/// outcome and duration.
pub(super) fn record_metrics(summary: &RunSummary) {
    let pipeline = summary.pipeline;
    let outcome = match summary.outcome {
        Outcome::Committed => "committed",
        Outcome::RolledBack { .. } => "rolled_back",
    };
    metrics::counter!("switchyard_unit_of_work_runs_total", "pipeline" => pipeline, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("switchyard_unit_of_work_duration_seconds", "pipeline" => pipeline)
        .record(summary.elapsed.as_secs_f64());
    for step in &summary.steps {
        let outcome = if step.succeeded { "ok" } else { "error" };
        metrics::counter!("switchyard_unit_of_work_steps_total", "pipeline" => pipeline, "step" => step.name, "boundary" => step.boundary, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("switchyard_unit_of_work_step_duration_seconds", "pipeline" => pipeline, "step" => step.name)
            .record(step.elapsed.as_secs_f64());
    }
    let rows: u64 = summary.steps.iter().filter_map(|s| s.rows).sum();
    if rows > 0 && summary.outcome == Outcome::Committed {
        metrics::counter!("switchyard_unit_of_work_rows_total", "pipeline" => pipeline)
            .increment(rows);
    }
}

pub(super) fn elapsed_ms(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}
