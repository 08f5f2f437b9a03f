//! `switchyard import products` as a process: SIGKILLed mid-import and run again, it
//! continues after its last committed chunk and ends with exactly the rows of the feed;
//! the same feed again is skipped; rejected rows are listed beside it. On SQLite and
//! PostgreSQL.

use std::process::Stdio;
use std::time::Duration;

use orchestration::testing::{Engine, TestDatabase};
use orchestration::{DatabaseUrl, Fabric, Topology};
use sea_orm::{ConnectionTrait, Statement};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const ROWS: u64 = 20_000;
const CHUNK: u64 = 250;

/// A feed of [`ROWS`] products (`stock` = i mod 50) and two bad rows at its end.
fn write_feed(path: &std::path::Path) -> i64 {
    use std::fmt::Write as _;
    let mut text = String::from("sku,name,price_minor,currency,stock,colour\n");
    let mut stock = 0;
    for i in 0..ROWS {
        let _ = writeln!(
            text,
            "IMP-{i:06},Product {i},{},EUR,{},blue",
            100 + i % 900,
            i % 50
        );
        stock += i64::try_from(i % 50).unwrap();
    }
    text.push_str("IMP-BAD-1,Unknown currency,100,XYZ,1,blue\n");
    text.push_str("IMP-BAD-2,Negative,100,EUR,-1,blue\n");
    std::fs::write(path, text).unwrap();
    stock
}

fn import(url: &str, feed: &std::path::Path) -> tokio::process::Command {
    let mut command = super::switchyard(url);
    command
        .args(["import", "products"])
        .arg(feed)
        .args(["--chunk-size", &CHUNK.to_string()])
        .stdout(Stdio::piped());
    command
}

async fn killed_and_resumed(url: DatabaseUrl) {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.csv");
    let stock = write_feed(&feed);
    let connection = url.connection_string();

    // Killed a moment after its first chunk committed: at a chunk boundary or inside one.
    let mut child = import(&connection, &feed).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("imported ") {
                return;
            }
        }
        panic!("the import ended without progress");
    })
    .await
    .expect("progress in time");
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..40))).await;
    super::signal(&child, "KILL");
    child.wait().await.unwrap();

    let fabric = Fabric::connect(&Topology::new(url), migrations::all())
        .await
        .unwrap();
    let conn = fabric.connection(inventory::SCHEMA).unwrap();
    let killed = inventory::recent_feed_imports(conn, 1).await.unwrap();
    assert_eq!(killed.len(), 1);
    assert!(killed[0].finished_at.is_none(), "{killed:?}");
    assert!(
        killed[0].position < ROWS,
        "killed before the end: {killed:?}"
    );
    assert_eq!(
        killed[0].position % CHUNK,
        0,
        "whole chunks only: {killed:?}"
    );

    let out = import(&connection, &feed).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if killed[0].position > 0 {
        assert!(
            stdout.contains(&format!("resumed after row {}", killed[0].position)),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains(&format!(
            "inserted {ROWS}, updated 0, unchanged 0, rejected 2"
        )),
        "{stdout}"
    );
    let done = inventory::recent_feed_imports(conn, 1).await.unwrap();
    assert_eq!(done[0].position, ROWS + 2);
    assert!(done[0].finished_at.is_some());

    // Exactly the feed's rows.
    let backend = conn.get_database_backend();
    let sql = "SELECT COUNT(*) AS n, CAST(SUM(available) AS BIGINT) AS units \
               FROM inventory.stock_levels";
    let row = conn
        .query_one_raw(Statement::from_string(backend, sql.to_owned()))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get("", "n").unwrap();
    assert_eq!(n, i64::try_from(ROWS).unwrap());
    let units: i64 = row.try_get("", "units").unwrap();
    assert_eq!(units, stock);

    let mut rejects = String::new();
    tokio::fs::File::open(dir.path().join("feed.csv.rejects.csv"))
        .await
        .unwrap()
        .read_to_string(&mut rejects)
        .await
        .unwrap();
    assert_eq!(rejects.lines().count(), 3, "{rejects}");
    assert!(
        rejects.contains("IMP-BAD-1") && rejects.contains("IMP-BAD-2"),
        "{rejects}"
    );

    // The same feed again: skipped.
    let out = import(&connection, &feed).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("was imported already"), "{stdout}");

    // `sync status` lists it, as `import status` does.
    let out = super::switchyard(&connection)
        .args(["sync", "status"])
        .stdout(Stdio::piped())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(&done[0].feed[..12]), "{stdout}");
    assert!(stdout.contains(&format!("inserted {ROWS},")), "{stdout}");
    fabric.close().await;
}

#[tokio::test]
async fn an_import_killed_midway_resumes_after_its_last_chunk_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    killed_and_resumed(DatabaseUrl::Sqlite {
        dir: dir.path().to_owned(),
    })
    .await;
}

#[tokio::test]
async fn an_import_killed_midway_resumes_after_its_last_chunk_on_postgres() {
    let Some(db) = TestDatabase::create(Engine::Postgres, migrations::all()).await else {
        return;
    };
    killed_and_resumed(db.topology().default_url().clone()).await;
}
