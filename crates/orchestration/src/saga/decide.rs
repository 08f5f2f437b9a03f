//! What a run's driver does next, decided from the run alone: the saga's state machine
//! as pure functions, tested without a database. The driver (`driver.rs`) carries the
//! decisions out and reads the run again after each.

use serde_json::Value;

use super::{RunState, RunStatus};

/// The driver's next move for a run.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Next {
    /// The run is over, or another instance holds it: stop driving it.
    Stop,
    /// An operator asked a running run to stop: undo the `undo` steps that took effect.
    Cancel { undo: u32 },
    /// Every step took effect: the run is completed.
    Complete,
    /// Take step `position` forward.
    Act { position: u32 },
    /// Undo step `position`.
    Compensate { position: u32 },
    /// Every step that took effect is undone: the run ends in `state` (compensated, or
    /// cancelled if an operator asked).
    Finish { state: RunState },
}

/// The next move for `run` of a saga with `steps` steps, driven by `holder`.
pub(super) fn next(run: &RunStatus, holder: &str, steps: u32) -> Next {
    if run.lease_holder.as_deref() != Some(holder) {
        return Next::Stop;
    }
    let step = run.current_step;
    match run.state {
        RunState::Running if run.cancel_requested => Next::Cancel { undo: step },
        RunState::Running if step >= steps => Next::Complete,
        RunState::Running => Next::Act { position: step },
        RunState::Compensating if step == 0 => Next::Finish {
            state: if run.cancel_requested {
                RunState::Cancelled
            } else {
                RunState::Compensated
            },
        },
        RunState::Compensating => Next::Compensate { position: step - 1 },
        RunState::Completed | RunState::Compensated | RunState::Failed | RunState::Cancelled => {
            Next::Stop
        }
    }
}

/// How one attempt loop of a step (its action or its compensation) ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum StepEnd {
    /// It took effect and its checkpoint committed.
    Done,
    /// It refused (an action only).
    Rejected(Value),
    /// It failed for good: the error, and whether an external call may have taken
    /// effect.
    Failed { error: String, maybe_done: bool },
    /// Another instance took the run over, or this one is shutting down.
    Stopped,
}

/// What a run does after its step `position` (of `steps`) ended forward.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum AfterAct<'e> {
    /// The last step's checkpoint completed the run.
    Completed,
    /// Go on with the next step.
    Continue,
    /// Read the run again: it was taken over or cancelled, or the driver must stop.
    Reread,
    /// Compensate the `undo` steps that took effect (the failed one too if its
    /// outcome is unknown), keeping why.
    Compensate {
        undo: u32,
        rejection: Option<&'e Value>,
        error: Option<&'e str>,
        /// The step failed after an external call that may have taken effect.
        unknown: bool,
    },
}

/// The decision after step `position` of `steps` ended as `end`.
pub(super) fn after_act(end: &StepEnd, position: u32, steps: u32) -> AfterAct<'_> {
    match end {
        StepEnd::Done if position + 1 == steps => AfterAct::Completed,
        StepEnd::Done => AfterAct::Continue,
        StepEnd::Stopped => AfterAct::Reread,
        StepEnd::Rejected(rejection) => AfterAct::Compensate {
            undo: position,
            rejection: Some(rejection),
            error: None,
            unknown: false,
        },
        StepEnd::Failed { error, maybe_done } => AfterAct::Compensate {
            undo: position + u32::from(*maybe_done),
            rejection: None,
            error: Some(error),
            unknown: *maybe_done,
        },
    }
}

/// What a run does after undoing a step ended as `end`: `Ok(true)` to go on, `Ok(false)`
/// to stop driving, `Err(error)` to fail the run for an operator.
pub(super) fn after_compensation(end: StepEnd) -> Result<bool, String> {
    match end {
        StepEnd::Done => Ok(true),
        StepEnd::Stopped => Ok(false),
        StepEnd::Failed { error, .. } => Err(error),
        StepEnd::Rejected(refusal) => Err(format!("the compensation refused: {refusal}")),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    const HOLDER: &str = "ab12cd34:1";

    fn run(state: RunState, current_step: u32, cancel_requested: bool) -> RunStatus {
        let now = Utc::now();
        RunStatus {
            id: Uuid::now_v7(),
            saga: "place_order".to_owned(),
            idempotency_key: "k".to_owned(),
            state,
            current_step,
            attempts: 0,
            cancel_requested,
            lease_holder: Some(HOLDER.to_owned()),
            lease_expires_at: now,
            last_error: None,
            rejection: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
        }
    }

    #[test]
    fn a_running_run_acts_step_by_step_then_completes() {
        for step in 0..3 {
            assert_eq!(
                next(&run(RunState::Running, step, false), HOLDER, 3),
                Next::Act { position: step }
            );
        }
        assert_eq!(
            next(&run(RunState::Running, 3, false), HOLDER, 3),
            Next::Complete
        );
    }

    #[test]
    fn a_compensating_run_undoes_backwards_then_finishes() {
        assert_eq!(
            next(&run(RunState::Compensating, 2, false), HOLDER, 3),
            Next::Compensate { position: 1 }
        );
        assert_eq!(
            next(&run(RunState::Compensating, 0, false), HOLDER, 3),
            Next::Finish {
                state: RunState::Compensated
            }
        );
        assert_eq!(
            next(&run(RunState::Compensating, 0, true), HOLDER, 3),
            Next::Finish {
                state: RunState::Cancelled
            }
        );
    }

    #[test]
    fn a_cancelled_run_undoes_what_took_effect() {
        assert_eq!(
            next(&run(RunState::Running, 2, true), HOLDER, 3),
            Next::Cancel { undo: 2 }
        );
    }

    #[test]
    fn a_run_held_elsewhere_or_over_is_not_driven() {
        let mut taken = run(RunState::Running, 1, false);
        taken.lease_holder = Some("ffff0000:2".to_owned());
        assert_eq!(next(&taken, HOLDER, 3), Next::Stop);
        taken.lease_holder = None;
        assert_eq!(next(&taken, HOLDER, 3), Next::Stop);
        for state in [
            RunState::Completed,
            RunState::Compensated,
            RunState::Failed,
            RunState::Cancelled,
        ] {
            assert_eq!(next(&run(state, 1, false), HOLDER, 3), Next::Stop);
        }
    }

    #[test]
    fn after_a_step_the_run_goes_on_completes_or_compensates() {
        assert_eq!(after_act(&StepEnd::Done, 0, 3), AfterAct::Continue);
        assert_eq!(after_act(&StepEnd::Done, 2, 3), AfterAct::Completed);
        assert_eq!(after_act(&StepEnd::Stopped, 1, 3), AfterAct::Reread);
        let refusal = json!({"out_of_stock": "WIDGET-1"});
        assert_eq!(
            after_act(&StepEnd::Rejected(refusal.clone()), 1, 3),
            AfterAct::Compensate {
                undo: 1,
                rejection: Some(&refusal),
                error: None,
                unknown: false
            }
        );
        // A failed external call may have taken effect: it is undone too.
        let failed = StepEnd::Failed {
            error: "timed out".to_owned(),
            maybe_done: true,
        };
        assert_eq!(
            after_act(&failed, 1, 3),
            AfterAct::Compensate {
                undo: 2,
                rejection: None,
                error: Some("timed out"),
                unknown: true
            }
        );
        let failed = StepEnd::Failed {
            error: "bug".to_owned(),
            maybe_done: false,
        };
        assert!(matches!(
            after_act(&failed, 1, 3),
            AfterAct::Compensate {
                undo: 1,
                unknown: false,
                ..
            }
        ));
    }

    #[test]
    fn a_compensation_that_fails_or_refuses_fails_the_run() {
        assert_eq!(after_compensation(StepEnd::Done), Ok(true));
        assert_eq!(after_compensation(StepEnd::Stopped), Ok(false));
        assert_eq!(
            after_compensation(StepEnd::Failed {
                error: "down".to_owned(),
                maybe_done: false
            }),
            Err("down".to_owned())
        );
        assert_eq!(
            after_compensation(StepEnd::Rejected(json!("no"))),
            Err("the compensation refused: \"no\"".to_owned())
        );
    }
}
