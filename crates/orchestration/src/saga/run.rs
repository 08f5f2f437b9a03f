//! A run as stored and shown: its state, its steps' checkpoints.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Its steps are running, forward.
    Running,
    /// A step refused or kept failing (or the run was cancelled); completed steps are
    /// being undone, last first.
    Compensating,
    /// Every step took effect. Final.
    Completed,
    /// Every step that took effect was undone. Final.
    Compensated,
    /// A compensation kept failing; the run waits for an operator (retry or cancel).
    Failed,
    /// Cancelled by an operator: compensated, or abandoned after failing. Final.
    Cancelled,
}

impl RunState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 6] = [
        Self::Running,
        Self::Compensating,
        Self::Completed,
        Self::Compensated,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The state as stored and printed.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Compensating => "compensating",
            Self::Completed => "completed",
            Self::Compensated => "compensated",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or typed state.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Whether a driver is (or should be) working on the run.
    #[must_use]
    pub fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Compensating)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStatus {
    /// The run's id (a UUIDv7).
    pub id: Uuid,
    /// The saga's name.
    pub saga: String,
    /// The key it was started with.
    pub idempotency_key: String,
    /// Where it is.
    pub state: RunState,
    /// Running: the steps that took effect. Compensating: the steps still to undo.
    pub current_step: u32,
    /// Failed attempts of the current step or compensation.
    pub attempts: u32,
    /// An operator asked to cancel it.
    pub cancel_requested: bool,
    /// The instance driving it, while one does.
    pub lease_holder: Option<String>,
    /// When another instance may take it over.
    pub lease_expires_at: DateTime<Utc>,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// The business refusal that made it compensate, if one did.
    pub rejection: Option<Value>,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it reached a final state (or `failed`).
    pub finished_at: Option<DateTime<Utc>>,
}

/// Whether a step's effect stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// It took effect; its output is checkpointed.
    Done,
    /// An external call kept failing: it may or may not have taken effect.
    Unknown,
    /// Its compensation ran.
    Compensated,
}

impl StepState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Unknown => "unknown",
            Self::Compensated => "compensated",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        [Self::Done, Self::Unknown, Self::Compensated]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The checkpoint of one step that took effect (or may have).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// The step's index in its saga.
    pub position: u32,
    /// Its name.
    pub name: String,
    /// Whether its effect stands.
    pub state: StepState,
    /// Its output.
    pub output: Option<Value>,
    /// The attempts it took.
    pub attempts: u32,
    /// When its first attempt began.
    pub started_at: DateTime<Utc>,
    /// When it took effect.
    pub completed_at: Option<DateTime<Utc>>,
    /// When its compensation ran.
    pub compensated_at: Option<DateTime<Utc>>,
}

/// A run with its input and its steps' checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDetails {
    /// The run.
    #[serde(flatten)]
    pub run: RunStatus,
    /// Its input.
    pub input: Value,
    /// Its checkpoints, by position.
    pub steps: Vec<StepRecord>,
}

impl RunDetails {
    /// The output of the run's last step, once the run completed.
    #[must_use]
    pub fn output(&self) -> Option<&Value> {
        if self.run.state != RunState::Completed {
            return None;
        }
        self.steps.last().and_then(|step| step.output.as_ref())
    }
}
