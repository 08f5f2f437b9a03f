//! Inventory's integration tests, run on SQLite, PostgreSQL and MariaDB.

use chrono::{DateTime, Duration, TimeZone, Utc};
use inventory::{
    Currency, Error, Money, NewProduct, ProductName, Quantity, Reservation, ReservationStatus, Sku,
};
use orchestration::UnitOfWorkError;
use orchestration::testing::{Engine, TestDatabase};
use uuid::Uuid;

orchestration::engine_tests! {
    boundaries: [migrations::inventory()];
    products_are_added_found_and_restocked,
    reserve_never_oversells_under_concurrency,
    release_returns_stock_once,
    reservations_after_a_read_report_current_stock,
    committed_holds_keep_their_stock_and_cannot_be_released,
    expired_holds_are_listed_earliest_expiry_first,
    products_are_listed_by_prefix_a_page_at_a_time,
    a_feed_inserts_updates_leaves_unchanged_and_rejects,
    a_feed_never_oversells_stock_reserved_beside_it,
    imports_of_one_feed_racing_import_each_row_once,
    a_chunk_larger_than_a_statement_imports_every_row,
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn qty(n: i64) -> Quantity {
    Quantity::new(n).unwrap()
}

fn widget(code: &str, stock: u32) -> NewProduct {
    NewProduct {
        sku: sku(code),
        name: ProductName::parse("Widget").unwrap(),
        price: Money::new(1250, Currency::parse("EUR").unwrap()).unwrap(),
        initial_stock: stock,
    }
}

async fn products_are_added_found_and_restocked(db: TestDatabase) {
    let conn = db.connection(inventory::SCHEMA);
    let now = Utc::now();
    let added = inventory::add_product(conn, &widget("W-1", 5), now)
        .await
        .unwrap();
    assert_eq!((added.available, added.reserved), (5, 0));
    let found = inventory::get(conn, &sku("W-1")).await.unwrap().unwrap();
    assert_eq!(found, added);
    assert!(inventory::get(conn, &sku("W-404")).await.unwrap().is_none());

    let err = inventory::add_product(conn, &widget("W-1", 1), now)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::DuplicateSku { ref sku } if sku.as_str() == "W-1"),
        "{err}"
    );

    let restocked = inventory::restock(conn, &sku("W-1"), qty(7), now)
        .await
        .unwrap();
    assert_eq!(restocked.available, 12);
    let err = inventory::restock(conn, &sku("W-404"), qty(1), now)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownProduct { .. }), "{err}");
}

/// Errors of a reservation run inside a unit of work.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Inventory(#[from] Error),
    #[error(transparent)]
    Fabric(#[from] UnitOfWorkError),
}

async fn reserve_never_oversells_under_concurrency(db: TestDatabase) {
    let now = Utc::now();
    inventory::add_product(db.connection(inventory::SCHEMA), &widget("HOT", 50), now)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let fabric = db.fabric().clone();
            tokio::spawn(async move {
                let reference = format!("task-{i}");
                fabric
                    .unit_of_work("reserve")
                    .run(async |uow| -> Result<_, RunError> {
                        uow.step(inventory::SCHEMA, "reserve", async |tx| {
                            inventory::reserve(
                                tx,
                                &sku("HOT"),
                                qty(3),
                                &reference,
                                now + Duration::minutes(5),
                                now,
                            )
                            .await
                        })
                        .await
                    })
                    .await
            })
        })
        .collect();
    let (mut held, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(done) => {
                assert_eq!(done.value.status, ReservationStatus::Held);
                held += 1;
            }
            Err(RunError::Inventory(Error::OutOfStock {
                requested,
                available,
                ..
            })) => {
                assert_eq!(requested, 3);
                assert!(available < 3, "refused with {available} available");
                refused += 1;
            }
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    assert_eq!((held, refused), (16, 4));
    let product = inventory::get(db.connection(inventory::SCHEMA), &sku("HOT"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((product.available, product.reserved), (2, 48));
}

async fn release_returns_stock_once(db: TestDatabase) {
    let conn = db.connection(inventory::SCHEMA);
    let now = Utc::now();
    inventory::add_product(conn, &widget("R-1", 10), now)
        .await
        .unwrap();
    let held = inventory::reserve(conn, &sku("R-1"), qty(4), "order-1", now, now)
        .await
        .unwrap();
    let err = inventory::reserve(conn, &sku("R-1"), qty(7), "order-2", now, now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::OutOfStock {
                requested: 7,
                available: 6,
                ..
            }
        ),
        "{err}"
    );
    let err = inventory::reserve(conn, &sku("NOPE"), qty(1), "order-3", now, now)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownProduct { .. }), "{err}");

    let released = inventory::release(conn, held.id, now).await.unwrap();
    assert_eq!(released.status, ReservationStatus::Released);
    let err = inventory::release(conn, held.id, now).await.unwrap_err();
    assert!(matches!(err, Error::ReservationNotHeld { .. }), "{err}");
    let product = inventory::get(conn, &sku("R-1")).await.unwrap().unwrap();
    assert_eq!((product.available, product.reserved), (10, 0));
    let reservations = inventory::reservations_for(conn, "order-1").await.unwrap();
    assert_eq!(reservations.len(), 1);
    assert_eq!(reservations[0].status, ReservationStatus::Released);
}

/// Units of work that read first (a snapshot on MySQL's REPEATABLE READ) and then
/// reserve two products: refusals report the current stock, and none is lost. A
/// conditional `UPDATE` alone misreported stock here on MariaDB.
async fn reservations_after_a_read_report_current_stock(db: TestDatabase) {
    let now = Utc::now();
    for code in ["A", "B"] {
        inventory::add_product(db.connection(inventory::SCHEMA), &widget(code, 60), now)
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let fabric = db.fabric().clone();
            tokio::spawn(async move {
                let reference = format!("task-{i}");
                let units = fastrand::i64(1..=3);
                let done = fabric
                    .unit_of_work("reserve_two")
                    .run(async |uow| -> Result<_, RunError> {
                        uow.step(inventory::SCHEMA, "find_products", async |tx| {
                            inventory::find_products(tx, &[sku("A"), sku("B")]).await
                        })
                        .await?;
                        for code in ["A", "B"] {
                            uow.step(inventory::SCHEMA, "reserve", async |tx| {
                                inventory::reserve(tx, &sku(code), qty(units), &reference, now, now)
                                    .await
                            })
                            .await?;
                        }
                        Ok(())
                    })
                    .await;
                (units, done)
            })
        })
        .collect();
    let mut reserved = 0;
    for task in tasks {
        match task.await.unwrap() {
            (units, Ok(_)) => reserved += units,
            (
                _,
                Err(RunError::Inventory(Error::OutOfStock {
                    requested,
                    available,
                    ..
                })),
            ) => {
                assert!(
                    i64::from(requested) > available,
                    "refused {requested} with {available} available"
                );
            }
            (_, Err(other)) => panic!("unexpected failure: {other}"),
        }
    }
    for code in ["A", "B"] {
        let product = inventory::get(db.connection(inventory::SCHEMA), &sku(code))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (product.available, product.reserved),
            (60 - reserved, reserved),
            "{code}"
        );
    }
    assert!(reserved > 50, "only {reserved} of 60 units were reserved");
}

fn ids(reservations: &[Reservation]) -> Vec<Uuid> {
    reservations.iter().map(|r| r.id).collect()
}

fn statuses(reservations: &[Reservation]) -> Vec<ReservationStatus> {
    reservations.iter().map(|r| r.status).collect()
}

async fn committed_holds_keep_their_stock_and_cannot_be_released(db: TestDatabase) {
    let conn = db.connection(inventory::SCHEMA);
    let now = Utc::now();
    let later = now + Duration::minutes(5);
    inventory::add_product(conn, &widget("C-1", 10), now)
        .await
        .unwrap();
    let first = inventory::reserve(conn, &sku("C-1"), qty(3), "order-1", later, now)
        .await
        .unwrap();
    // Already past its expiry but not released: it still holds its stock.
    let lapsed = inventory::reserve(conn, &sku("C-1"), qty(2), "order-1", now, now)
        .await
        .unwrap();
    let released = inventory::reserve(conn, &sku("C-1"), qty(1), "order-1", later, now)
        .await
        .unwrap();
    inventory::release(conn, released.id, now).await.unwrap();
    let other = inventory::reserve(conn, &sku("C-1"), qty(4), "order-2", later, now)
        .await
        .unwrap();

    let committed = inventory::commit_holds(conn, "order-1", now).await.unwrap();
    assert_eq!(ids(&committed), [first.id, lapsed.id]);
    assert_eq!(
        statuses(&committed),
        [ReservationStatus::Committed, ReservationStatus::Committed]
    );
    assert_eq!(
        (committed[0].quantity, committed[1].quantity),
        (3, 2),
        "{committed:?}"
    );

    // Idempotent: nothing left to commit, the same list comes back.
    let again = inventory::commit_holds(conn, "order-1", now + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(again, committed);

    let listed = inventory::reservations_for(conn, "order-1").await.unwrap();
    assert_eq!(ids(&listed), [first.id, lapsed.id, released.id]);
    assert_eq!(
        statuses(&listed),
        [
            ReservationStatus::Committed,
            ReservationStatus::Committed,
            ReservationStatus::Released
        ]
    );
    // Another reference's hold is untouched.
    let others = inventory::reservations_for(conn, "order-2").await.unwrap();
    assert_eq!(ids(&others), [other.id]);
    assert_eq!(statuses(&others), [ReservationStatus::Held]);

    // A committed reservation cannot be released; its stock stays reserved.
    let err = inventory::release(conn, first.id, now).await.unwrap_err();
    assert!(
        matches!(err, Error::ReservationNotHeld { id } if id == first.id),
        "{err}"
    );
    let product = inventory::get(conn, &sku("C-1")).await.unwrap().unwrap();
    assert_eq!((product.available, product.reserved), (1, 9));

    assert!(
        inventory::commit_holds(conn, "order-404", now)
            .await
            .unwrap()
            .is_empty()
    );
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap() + Duration::seconds(seconds)
}

async fn expired_holds_are_listed_earliest_expiry_first(db: TestDatabase) {
    let conn = db.connection(inventory::SCHEMA);
    let now = at(0);
    inventory::add_product(conn, &widget("E-1", 100), at(-600))
        .await
        .unwrap();
    let reserve = async |reference: &str, expires_at| {
        inventory::reserve(conn, &sku("E-1"), qty(1), reference, expires_at, at(-600))
            .await
            .unwrap()
    };
    // Made in an order other than their expiry's.
    let b = reserve("b", at(-60)).await;
    let future = reserve("future", at(60)).await;
    let a = reserve("a", at(-180)).await;
    let just_now = reserve("just-now", now).await;
    let committed = reserve("committed", at(-300)).await;
    let released = reserve("released", at(-240)).await;
    let barely_future = reserve("barely-future", now + Duration::microseconds(1)).await;
    inventory::commit_holds(conn, "committed", now)
        .await
        .unwrap();
    inventory::release(conn, released.id, now).await.unwrap();

    let expired = inventory::expired_holds(conn, now, 10).await.unwrap();
    assert_eq!(ids(&expired), [a.id, b.id, just_now.id]);
    assert!(
        expired
            .iter()
            .all(|r| r.status == ReservationStatus::Held && r.expires_at <= now),
        "{expired:?}"
    );
    assert_eq!(expired[0].expires_at, at(-180));
    assert!(!ids(&expired).contains(&committed.id));
    assert!(!ids(&expired).contains(&future.id));
    assert!(!ids(&expired).contains(&barely_future.id));

    let first_two = inventory::expired_holds(conn, now, 2).await.unwrap();
    assert_eq!(ids(&first_two), [a.id, b.id]);
    assert!(
        inventory::expired_holds(conn, now, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let unbounded = inventory::expired_holds(conn, now, u64::MAX).await.unwrap();
    assert_eq!(unbounded, expired);

    // Released holds drop off the list; later, the future ones join it.
    inventory::release(conn, a.id, now).await.unwrap();
    let expired = inventory::expired_holds(conn, now, 10).await.unwrap();
    assert_eq!(ids(&expired), [b.id, just_now.id]);
    let expired = inventory::expired_holds(conn, at(60), 10).await.unwrap();
    assert_eq!(
        ids(&expired),
        [b.id, just_now.id, barely_future.id, future.id]
    );
}

async fn products_are_listed_by_prefix_a_page_at_a_time(db: TestDatabase) {
    let conn = db.connection(inventory::SCHEMA);
    let now = Utc::now();
    // `_` is a LIKE wildcard and SQLite's LIKE ignores case: neither may leak in.
    for code in ["AB-2", "AB-1", "ab-3", "AXB-1", "A_B", "B-1", "AB_9"] {
        inventory::add_product(conn, &widget(code, 1), now)
            .await
            .unwrap();
    }
    let skus = |products: Vec<inventory::Product>| -> Vec<String> {
        products.iter().map(|p| p.sku.to_string()).collect()
    };
    let page = |prefix: Option<&'static str>, after: Option<Sku>, limit| {
        let after = after.clone();
        async move {
            skus(
                inventory::list_products(conn, prefix, after.as_ref(), limit)
                    .await
                    .unwrap(),
            )
        }
    };
    let all = page(None, None, 100).await;
    assert_eq!(all.len(), 7, "{all:?}");
    let mut sorted = all.clone();
    sorted.sort();
    if db.engine() == Engine::Sqlite {
        // The servers order text by their collations.
        assert_eq!(all, sorted);
    }
    let mut prefixed = page(Some("AB"), None, 100).await;
    prefixed.sort();
    if db.engine() == Engine::MariaDb {
        // Its default collation ignores case, for uniqueness as for prefixes.
        assert_eq!(prefixed, ["AB-1", "AB-2", "AB_9", "ab-3"]);
    } else {
        assert_eq!(prefixed, ["AB-1", "AB-2", "AB_9"]);
    }
    assert_eq!(page(Some("A_"), None, 100).await, ["A_B"]);

    // Page by page, every product once, in the same order as one page.
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let got = page(None, after.clone(), 3).await;
        assert!(got.len() <= 3);
        let Some(last) = got.last() else { break };
        after = Some(sku(last));
        walked.extend(got);
    }
    assert_eq!(walked, all);
    assert!(page(None, None, 0).await.is_empty());
}

fn feed_row(
    line: u64,
    sku: &str,
    name: &str,
    price: &str,
    currency: &str,
    stock: &str,
) -> inventory::FeedRow {
    inventory::FeedRow {
        line,
        sku: sku.to_owned(),
        name: name.to_owned(),
        price_minor: price.to_owned(),
        currency: currency.to_owned(),
        stock: stock.to_owned(),
    }
}

/// Imports `rows` as one chunk of feed `feed` in a unit of work.
async fn import_chunk(
    db: &TestDatabase,
    feed: &str,
    from: u64,
    rows: &[inventory::FeedRow],
) -> Result<inventory::FeedCounts, RunError> {
    let now = Utc::now();
    db.fabric()
        .unit_of_work("import")
        .run(async |uow| -> Result<_, RunError> {
            uow.step(inventory::SCHEMA, "import_chunk", async |tx| {
                inventory::import_feed_chunk(tx, feed, from, rows, now).await
            })
            .await
        })
        .await
        .map(|done| done.value)
}

async fn a_feed_inserts_updates_leaves_unchanged_and_rejects(db: TestDatabase) {
    let conn = db.connection(inventory::SCHEMA);
    let now = Utc::now();
    inventory::add_product(conn, &widget("OLD-1", 5), now)
        .await
        .unwrap();
    inventory::reserve(
        conn,
        &sku("OLD-1"),
        qty(3),
        "order-1",
        now + Duration::minutes(5),
        now,
    )
    .await
    .unwrap();
    inventory::start_feed(conn, "v1", "feed.csv", now)
        .await
        .unwrap();
    let rows = [
        feed_row(2, "NEW-1", "New", "300", "EUR", "7"),
        // On hand 10, 3 of them reserved: 7 available.
        feed_row(3, "OLD-1", "Widget", "1250", "EUR", "10"),
        feed_row(4, "BAD-1", "Bad", "300", "XYZ", "1"),
        feed_row(5, "BAD-2", "Bad", "300", "EUR", "-1"),
        feed_row(6, "bad sku", "Bad", "300", "EUR", "1"),
        feed_row(7, "BAD-3", "Nul \0", "300", "EUR", "1"),
        feed_row(8, "BAD-4", "Free", "0", "EUR", "1"),
        feed_row(9, "NEW-2", "Twice", "100", "EUR", "1"),
        feed_row(10, "NEW-2", "Twice", "200", "EUR", "2"),
    ];
    let counts = import_chunk(&db, "v1", 0, &rows).await.unwrap();
    assert_eq!(
        (
            counts.inserted,
            counts.updated,
            counts.unchanged,
            counts.rejected
        ),
        (2, 1, 0, 6),
        "{counts:?}"
    );
    let old = inventory::get(conn, &sku("OLD-1")).await.unwrap().unwrap();
    assert_eq!((old.available, old.reserved), (7, 3));
    let twice = inventory::get(conn, &sku("NEW-2")).await.unwrap().unwrap();
    assert_eq!(
        (twice.price.minor, twice.available),
        (200, 2),
        "the last row wins"
    );
    let rejects = inventory::feed_rejects(conn, "v1", 0, 100).await.unwrap();
    let lines: Vec<u64> = rejects.iter().map(|r| r.line).collect();
    assert_eq!(lines, [4, 5, 6, 7, 8, 9], "{rejects:?}");
    assert!(rejects[0].reason.starts_with("currency:"), "{rejects:?}");
    assert!(rejects[1].reason.starts_with("stock:"), "{rejects:?}");
    assert!(rejects[2].reason.starts_with("sku:"), "{rejects:?}");
    assert!(rejects[3].reason.starts_with("name:"), "{rejects:?}");
    assert!(rejects[4].reason.starts_with("price_minor:"), "{rejects:?}");
    assert!(rejects[5].reason.contains("line 10"), "{rejects:?}");

    // The same rows again (the next version of the feed): nothing changes. Below what
    // is reserved: rejected, the product as it was.
    inventory::start_feed(conn, "v2", "feed.csv", now)
        .await
        .unwrap();
    let again = import_chunk(
        &db,
        "v2",
        0,
        &[
            feed_row(2, "NEW-1", "New", "300", "EUR", "7"),
            feed_row(3, "OLD-1", "Widget", "1250", "EUR", "2"),
        ],
    )
    .await
    .unwrap();
    assert_eq!((again.unchanged, again.rejected), (1, 1), "{again:?}");
    let old = inventory::get(conn, &sku("OLD-1")).await.unwrap().unwrap();
    assert_eq!((old.available, old.reserved), (7, 3));
    let record = inventory::finish_feed(conn, "v2", now).await.unwrap();
    assert_eq!(record.position, 2);
    assert_eq!(record.counts, again);
    assert!(record.finished_at.is_some());
    let v1 = inventory::feed_import(conn, "v1").await.unwrap().unwrap();
    assert_eq!((v1.position, v1.finished_at), (9, None));
}

async fn a_feed_never_oversells_stock_reserved_beside_it(db: TestDatabase) {
    let conn = db.connection(inventory::SCHEMA);
    let now = Utc::now();
    inventory::add_product(conn, &widget("HOT", 40), now)
        .await
        .unwrap();
    inventory::start_feed(conn, "hot", "feed", now)
        .await
        .unwrap();
    let reservations: Vec<_> = (0..30)
        .map(|i| {
            let fabric = db.fabric().clone();
            tokio::spawn(async move {
                fabric
                    .unit_of_work("reserve")
                    .run(async |uow| -> Result<_, RunError> {
                        uow.step(inventory::SCHEMA, "reserve", async |tx| {
                            inventory::reserve(
                                tx,
                                &sku("HOT"),
                                qty(1),
                                &format!("order-{i}"),
                                now + Duration::minutes(5),
                                now,
                            )
                            .await
                        })
                        .await
                    })
                    .await
                    .is_ok()
            })
        })
        .collect();
    // The feed says 50 on hand, five times over, while the reservations run.
    for line in 0..5 {
        let row = feed_row(line + 2, "HOT", "Widget", "1250", "EUR", "50");
        import_chunk(&db, "hot", line, std::slice::from_ref(&row))
            .await
            .unwrap();
    }
    let mut held = 0;
    for task in reservations {
        held += i64::from(task.await.unwrap());
    }
    let product = inventory::get(conn, &sku("HOT")).await.unwrap().unwrap();
    assert_eq!(product.reserved, held);
    assert!(product.available >= 0);
    // The last import set available = 50 − reserved; reservations after it moved units
    // from available to reserved: on hand stays what the feed said.
    assert_eq!(product.available + product.reserved, 50, "{product:?}");
}

async fn imports_of_one_feed_racing_import_each_row_once(db: TestDatabase) {
    let conn = db.connection(inventory::SCHEMA);
    inventory::start_feed(conn, "race", "feed", Utc::now())
        .await
        .unwrap();
    let rows: Vec<inventory::FeedRow> = (0..50)
        .map(|i| feed_row(i + 2, &format!("RACE-{i}"), "Raced", "100", "EUR", "5"))
        .collect();
    // Eight runs of the same feed, each about to import its first chunk.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let db_rows = rows.clone();
            let fabric = db.fabric().clone();
            tokio::spawn(async move {
                let now = Utc::now();
                fabric
                    .unit_of_work("import")
                    .run(async |uow| -> Result<_, RunError> {
                        uow.step(inventory::SCHEMA, "import_chunk", async |tx| {
                            inventory::import_feed_chunk(tx, "race", 0, &db_rows, now).await
                        })
                        .await
                    })
                    .await
                    .map(|done| done.value)
            })
        })
        .collect();
    let mut imported = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(counts) => {
                assert_eq!(counts.inserted, 50);
                imported += 1;
            }
            Err(RunError::Inventory(Error::FeedMoved {
                expected: 0,
                found: 50,
                ..
            })) => {}
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    assert_eq!(imported, 1, "one run imported the chunk");
    let record = inventory::feed_import(conn, "race").await.unwrap().unwrap();
    assert_eq!((record.position, record.counts.inserted), (50, 50));
}

/// A chunk of 2,500 rows: more than one statement's worth where rows are bound one
/// value at a time. Fresh, then every other row changed, then the same again.
async fn a_chunk_larger_than_a_statement_imports_every_row(db: TestDatabase) {
    let conn = db.connection(inventory::SCHEMA);
    let now = Utc::now();
    inventory::add_product(conn, &widget("BIG-00001", 5), now)
        .await
        .unwrap();
    inventory::reserve(conn, &sku("BIG-00001"), qty(2), "order-1", now, now)
        .await
        .unwrap();
    let rows = |version: u64| -> Vec<inventory::FeedRow> {
        (0..2_500_u64)
            .map(|i| {
                let bump = if i % 2 == 0 { version } else { 0 };
                feed_row(
                    i + 2,
                    &format!("BIG-{i:05}"),
                    &format!("Big {i}"),
                    &(100 + i + bump).to_string(),
                    "EUR",
                    &(10 + bump).to_string(),
                )
            })
            .collect()
    };
    let mut counts = Vec::new();
    for (feed, version) in [("big-1", 0), ("big-2", 1), ("big-3", 1)] {
        inventory::start_feed(conn, feed, "feed.csv", now)
            .await
            .unwrap();
        let c = import_chunk(&db, feed, 0, &rows(version)).await.unwrap();
        counts.push((c.inserted, c.updated, c.unchanged, c.rejected));
    }
    // BIG-00001 existed (with another name), so the first import updates it.
    assert_eq!(
        counts,
        [(2_499, 1, 0, 0), (0, 1_250, 1_250, 0), (0, 0, 2_500, 0)]
    );
    let first = inventory::get(conn, &sku("BIG-00000"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.price.minor, first.available), (101, 11));
    let held = inventory::get(conn, &sku("BIG-00001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (held.available, held.reserved),
        (8, 2),
        "on hand 10, 2 reserved"
    );
    let last = inventory::get(conn, &sku("BIG-02499"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((last.price.minor, last.available), (2_599, 10));
    let listed = inventory::list_products(conn, Some("BIG-"), None, 3_000)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2_500);
}
