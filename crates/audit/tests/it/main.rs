//! Audit's integration tests, run on SQLite, PostgreSQL and MariaDB.

use audit::{Action, Actor, Entry, Error, MAX_DATA_BYTES, NewEntry, Subject};
use chrono::{DateTime, Duration, TimeZone, Utc};
use orchestration::UnitOfWorkError;
use orchestration::testing::TestDatabase;
use serde_json::{Value, json};

orchestration::engine_tests! {
    boundaries: [migrations::audit()];
    entries_are_listed_by_subject_oldest_first,
    subjects_match_exactly,
    data_and_time_round_trip,
    invalid_entries_are_refused_and_nothing_is_stored,
    an_entry_commits_with_its_unit_of_work,
}

fn subject(s: &str) -> Subject {
    Subject::parse(s).unwrap()
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap() + Duration::seconds(seconds)
}

fn entry(about: &str, action: &str, occurred_at: DateTime<Utc>, data: Value) -> NewEntry {
    NewEntry {
        actor: Actor::parse("user:42").unwrap(),
        action: Action::parse(action).unwrap(),
        subject: subject(about),
        occurred_at,
        data,
    }
}

async fn entries_are_listed_by_subject_oldest_first(db: TestDatabase) {
    let conn = db.connection(audit::SCHEMA);
    let mut recorded = Vec::new();
    // Interleaved with another subject's entries; `occurred_at` deliberately out of
    // order: the log's order is the order of recording.
    for (i, about) in ["order:1", "order:2", "order:1", "order:2", "order:1"]
        .into_iter()
        .enumerate()
    {
        let step = i64::try_from(i).unwrap();
        let new = entry(about, &format!("step.{i}"), at(100 - step), json!({"i": i}));
        let stored = audit::record(conn, &new).await.unwrap();
        assert_eq!(
            (
                &stored.actor,
                &stored.action,
                &stored.subject,
                stored.occurred_at,
                &stored.data
            ),
            (
                &new.actor,
                &new.action,
                &new.subject,
                new.occurred_at,
                &new.data
            )
        );
        recorded.push(stored);
    }
    assert!(
        recorded.windows(2).all(|w| w[0].id < w[1].id),
        "ids grow: {recorded:?}"
    );

    let listed = audit::entries_for(conn, &subject("order:1"), None, 100)
        .await
        .unwrap();
    let expected: Vec<&Entry> = recorded
        .iter()
        .filter(|e| e.subject.as_str() == "order:1")
        .collect();
    assert_eq!(listed.iter().collect::<Vec<_>>(), expected);
    let actions: Vec<&str> = listed.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["step.0", "step.2", "step.4"]);

    let first_two = audit::entries_for(conn, &subject("order:1"), None, 2)
        .await
        .unwrap();
    assert_eq!(first_two, listed[..2]);
    let after_first = audit::entries_for(conn, &subject("order:1"), Some(listed[0].id), 100)
        .await
        .unwrap();
    assert_eq!(after_first, listed[1..], "the cursor is exclusive");
    assert!(
        audit::entries_for(conn, &subject("order:1"), None, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let unbounded = audit::entries_for(conn, &subject("order:1"), None, u64::MAX)
        .await
        .unwrap();
    assert_eq!(unbounded, listed);
    assert!(
        audit::entries_for(conn, &subject("order:404"), None, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// MySQL's default collations would match `Order:1` and `ordér:1` to `order:1`; the
/// subject column compares exactly on every backend.
async fn subjects_match_exactly(db: TestDatabase) {
    let conn = db.connection(audit::SCHEMA);
    for about in ["order:1", "Order:1", "ordér:1", "order:10"] {
        audit::record(conn, &entry(about, "created", at(0), json!(null)))
            .await
            .unwrap();
    }
    for about in ["order:1", "Order:1", "ordér:1", "order:10"] {
        let listed = audit::entries_for(conn, &subject(about), None, 10)
            .await
            .unwrap();
        let subjects: Vec<&str> = listed.iter().map(|e| e.subject.as_str()).collect();
        assert_eq!(subjects, [about], "{about}");
    }
    // Parsing trims, so a padded lookup finds the same entries.
    let padded = audit::entries_for(conn, &subject("  order:1 "), None, 10)
        .await
        .unwrap();
    assert_eq!(padded.len(), 1);
}

async fn data_and_time_round_trip(db: TestDatabase) {
    let conn = db.connection(audit::SCHEMA);
    let data = json!({
        "order": {
            "id": "0193a2b4-0000-7000-8000-000000000001",
            "lines": [{"sku": "W-1", "quantity": 2}, {"sku": "G-2", "quantity": 1}],
            "total": {"minor": 3000, "currency": "EUR"},
        },
        "flags": [true, false, null],
        "numbers": [0, -1, i64::MIN, i64::MAX, u64::MAX, 0.1, -2.5e-300, 1.7976931348623157e308],
        "text": "quotes \" and \\ backslashes, ünïcödé, emoji 🚂, newline \n",
        "empty": {"object": {}, "array": [], "string": ""},
    });
    let micros = at(0) + Duration::microseconds(123_456);
    let stored = audit::record(conn, &entry("order:rt", "placed", micros, data.clone()))
        .await
        .unwrap();
    assert_eq!(stored.data, data);
    assert_eq!(stored.occurred_at, micros);

    // Finer than microseconds: dropped before storing, the same on every backend.
    let nanos = at(1) + Duration::nanoseconds(654_321_987);
    let truncated = audit::record(conn, &entry("order:rt", "paid", nanos, json!([])))
        .await
        .unwrap();
    assert_eq!(
        truncated.occurred_at,
        at(1) + Duration::microseconds(654_321)
    );

    // Exactly the largest data every backend stores.
    let padding = "x".repeat(MAX_DATA_BYTES - 2);
    let largest = audit::record(conn, &entry("order:rt", "big", at(2), json!(padding)))
        .await
        .unwrap();

    let listed = audit::entries_for(conn, &subject("order:rt"), None, 10)
        .await
        .unwrap();
    assert_eq!(listed, [stored, truncated, largest]);
}

async fn invalid_entries_are_refused_and_nothing_is_stored(db: TestDatabase) {
    let conn = db.connection(audit::SCHEMA);
    let too_large = json!("x".repeat(MAX_DATA_BYTES - 1));
    let err = audit::record(conn, &entry("order:bad", "big", at(0), too_large))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid(ref invalid) if invalid.0.contains("65535 bytes")),
        "{err}"
    );
    for year in [999, 10_000] {
        let when = Utc.with_ymd_and_hms(year, 6, 1, 0, 0, 0).unwrap();
        let err = audit::record(conn, &entry("order:bad", "when", when, json!({})))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Invalid(ref invalid) if invalid.0.contains("occurred_at")),
            "{year}: {err}"
        );
    }
    assert!(
        audit::entries_for(conn, &subject("order:bad"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Errors of a unit of work that records an entry.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Audit(#[from] Error),
    #[error(transparent)]
    Fabric(#[from] UnitOfWorkError),
    #[error("the change the entry describes failed")]
    ChangeFailed,
}

/// `record` never commits: an entry written in a unit of work that fails is rolled back
/// with it, and one in a unit of work that succeeds is kept.
async fn an_entry_commits_with_its_unit_of_work(db: TestDatabase) {
    for (action, fails) in [("rolled_back", true), ("committed", false)] {
        let outcome = db
            .fabric()
            .unit_of_work("audited_change")
            .run(async |uow| -> Result<_, RunError> {
                let new = entry("order:uow", action, at(0), json!({}));
                uow.step(audit::SCHEMA, "record", async |tx| {
                    audit::record(tx, &new).await
                })
                .await?;
                if fails {
                    return Err(RunError::ChangeFailed);
                }
                Ok(())
            })
            .await;
        assert_eq!(outcome.is_err(), fails, "{action}: {outcome:?}");
    }
    let listed = audit::entries_for(
        db.connection(audit::SCHEMA),
        &subject("order:uow"),
        None,
        10,
    )
    .await
    .unwrap();
    let actions: Vec<&str> = listed.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["committed"]);
}

#[test]
fn invalid_values_are_rejected_with_a_reason() {
    for (name, result) in [
        ("actor", Actor::parse("").map(drop)),
        (
            "actor",
            Actor::parse(&"a".repeat(Actor::MAX_CHARS + 1)).map(drop),
        ),
        ("action", Action::parse("  ").map(drop)),
        ("action", Action::parse("order\nplaced").map(drop)),
        ("subject", Subject::parse("").map(drop)),
        (
            "subject",
            Subject::parse(&"s".repeat(Subject::MAX_CHARS + 1)).map(drop),
        ),
    ] {
        let err = result.unwrap_err();
        assert!(err.0.starts_with("must be 1 to "), "{name}: {err}");
    }
    assert_eq!(
        Subject::parse(&"s".repeat(256)).unwrap_err().to_string(),
        "must be 1 to 255 characters, not blank, without control characters"
    );
    assert_eq!(Actor::parse(" user:42 ").unwrap().as_str(), "user:42");
}
