//! The integration tests of {{name}}, run on SQLite, PostgreSQL and MariaDB.

use chrono::{DateTime, SubsecRound, Utc};
use orchestration::UnitOfWorkError;
use orchestration::testing::TestDatabase;
use {{name}}::{Error, ItemName};

orchestration::engine_tests! {
    boundaries: [migrations::{{name}}()];
    an_item_is_added_and_read_back,
    names_are_checked,
    an_item_commits_with_its_unit_of_work,
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn name(s: &str) -> ItemName {
    ItemName::parse(s).unwrap()
}

async fn an_item_is_added_and_read_back(db: TestDatabase) {
    let conn = db.connection({{name}}::SCHEMA);
    let at = now();
    let first = {{name}}::add_item(conn, &name("first"), at).await.unwrap();
    let second = {{name}}::add_item(conn, &name("  second  "), at).await.unwrap();
    assert!(first.id < second.id);
    assert_eq!(second.name.as_str(), "second");
    assert_eq!(
        {{name}}::get_item(conn, first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!({{name}}::get_item(conn, second.id + 1).await.unwrap(), None);
    assert_eq!(
        {{name}}::list_items(conn, 10).await.unwrap(),
        vec![first, second]
    );
}

async fn names_are_checked(_db: TestDatabase) {
    for bad in ["", "   ", "a\u{0}b", &"x".repeat(201)] {
        assert!(ItemName::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(name(&"x".repeat(200)).as_str().len(), 200);
}

/// Errors of a unit of work that adds an item.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Domain(#[from] Error),
    #[error(transparent)]
    UnitOfWork(#[from] UnitOfWorkError),
    #[error("a later step failed")]
    LaterStepFailed,
}

/// `add_item` never commits: an item added in a unit of work that fails is rolled back
/// with it, one in a unit of work that succeeds is kept.
async fn an_item_commits_with_its_unit_of_work(db: TestDatabase) {
    for (label, fails) in [("rolled back", true), ("committed", false)] {
        let outcome = db
            .fabric()
            .unit_of_work("add_item")
            .run(async |uow| -> Result<_, RunError> {
                uow.step({{name}}::SCHEMA, "add_item", async |tx| {
                    {{name}}::add_item(tx, &name(label), now()).await
                })
                .await?;
                if fails {
                    return Err(RunError::LaterStepFailed);
                }
                Ok(())
            })
            .await;
        assert_eq!(outcome.is_err(), fails, "{label}: {outcome:?}");
    }
    let names: Vec<String> = {{name}}::list_items(db.connection({{name}}::SCHEMA), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|item| item.name.as_str().to_owned())
        .collect();
    assert_eq!(names, ["committed"]);
}
