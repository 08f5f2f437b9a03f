//! P5: importing a product feed, `switchyard import products` against hand-written sqlx
//! doing the same upserts in the same run.
//!
//! Each feed is a generated CSV of N rows (`sku,name,price_minor,currency,stock`),
//! imported three times into a fresh database: *fresh* (every product new), *updated*
//! (every price and stock changed) and *unchanged* (the updated rows again, as a new
//! feed version with one more column, so nothing is skipped by the version check).
//! *switchyard* is the app's import (`switchyard::import::import_products`: the feed's
//! hash, streaming CSV, each row checked, a unit of work per chunk with the feed's
//! cursor, counts and rejects). *hand-written* is the floor: the same CSV read, then
//! per chunk one sqlx transaction: on PostgreSQL `COPY` into a temporary table and an
//! `INSERT … SELECT … ON CONFLICT DO UPDATE … WHERE changed` into products and stock,
//! on SQLite prepared multi-row upserts; plus the cursor's update. Both use the same
//! chunk size, so both commit as often.
//!
//! Every (engine, side, size) runs in a child process of its own, so each peak RSS
//! (`VmHWM`, reset before each phase) is that import's alone.
//!
//! `cargo run --release -p benches --bin bulk-import [ROWS…]` (default 100000 1000000;
//! `BULK_IMPORT_CHUNK=N` for another chunk size than 10,000)

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use orchestration::testing::{Engine, TestDatabase};
use sqlx::Connection as _;
use switchyard::import::{FeedSource, Progress, import_products};

/// Rows per chunk (per transaction), both sides, unless `BULK_IMPORT_CHUNK` says.
fn chunk_size() -> usize {
    std::env::var("BULK_IMPORT_CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}
/// Rows per multi-row statement on SQLite (its bind limit is 32,766).
const SQLITE_ROWS_PER_STATEMENT: usize = 1_000;
const PHASES: [&str; 3] = ["fresh", "updated", "unchanged"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    HandWritten,
    Switchyard,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::HandWritten => "hand-written",
            Side::Switchyard => "switchyard",
        }
    }
}

/// Writes the three feeds of `rows` rows into `dir`.
fn write_feeds(dir: &Path, rows: usize) -> [PathBuf; 3] {
    let paths = PHASES.map(|phase| dir.join(format!("{phase}.csv")));
    for (phase, path) in PHASES.iter().zip(&paths) {
        let file = std::fs::File::create(path).expect("a feed file");
        let mut out = std::io::BufWriter::new(file);
        let (bump, extra) = match *phase {
            "fresh" => (0, false),
            "updated" => (1, false),
            _ => (1, true),
        };
        let header = if extra {
            "sku,name,price_minor,currency,stock,note"
        } else {
            "sku,name,price_minor,currency,stock"
        };
        writeln!(out, "{header}").expect("write");
        for i in 0..rows {
            let mut line = format!(
                "SKU-{i:07},Product {i},{},EUR,{}",
                100 + i % 900 + bump,
                i % 50 + bump
            );
            if extra {
                line.push_str(",same");
            }
            writeln!(out, "{line}").expect("write");
        }
        out.flush().expect("flush");
    }
    paths
}

/// Resets this process's peak RSS.
fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM (Linux ≥ 4.0); elsewhere the peak stays.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak RSS in KiB since the last reset.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Quiet;

impl Progress for Quiet {
    fn advance(&mut self, _done: u64, _total: u64) {}
    fn finish(&mut self) {}
}

/// One parsed feed row, for the hand-written side.
struct Row {
    sku: String,
    name: String,
    price_minor: i64,
    currency: String,
    stock: i64,
}

/// Reads `path` a chunk at a time, calling `each` with every chunk.
async fn for_each_chunk(path: &Path, mut each: impl AsyncFnMut(&[Row])) {
    let mut reader = csv::Reader::from_path(path).expect("the feed");
    let header = reader.byte_headers().expect("a header").clone();
    let at = ["sku", "name", "price_minor", "currency", "stock"].map(|column| {
        header
            .iter()
            .position(|name| name == column.as_bytes())
            .expect("the column")
    });
    let mut record = csv::ByteRecord::new();
    let size = chunk_size();
    let mut chunk = Vec::with_capacity(size);
    let text = |record: &csv::ByteRecord, i: usize| {
        String::from_utf8_lossy(record.get(i).unwrap_or_default()).into_owned()
    };
    loop {
        let more = reader.read_byte_record(&mut record).expect("a record");
        if more {
            chunk.push(Row {
                sku: text(&record, at[0]),
                name: text(&record, at[1]),
                price_minor: text(&record, at[2]).parse().expect("a price"),
                currency: text(&record, at[3]),
                stock: text(&record, at[4]).parse().expect("a stock"),
            });
        }
        if chunk.len() == size || (!more && !chunk.is_empty()) {
            each(&chunk).await;
            chunk.clear();
        }
        if !more {
            return;
        }
    }
}

/// A field for `COPY … FROM STDIN` (text format).
fn copy_field(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

const PG_UPSERT_PRODUCTS: &str = "INSERT INTO inventory.products (sku, name, price_minor, currency, created_at) \
     SELECT sku, name, price_minor, currency, now() FROM feed_stage \
     ON CONFLICT (sku) DO UPDATE SET name = excluded.name, price_minor = excluded.price_minor, \
     currency = excluded.currency \
     WHERE (products.name, products.price_minor, products.currency) \
     IS DISTINCT FROM (excluded.name, excluded.price_minor, excluded.currency)";
const PG_UPSERT_STOCK: &str = "INSERT INTO inventory.stock_levels (sku, available, reserved, updated_at) \
     SELECT sku, stock, 0, now() FROM feed_stage \
     ON CONFLICT (sku) DO UPDATE SET available = excluded.available - stock_levels.reserved, \
     updated_at = excluded.updated_at \
     WHERE excluded.available >= stock_levels.reserved \
     AND stock_levels.available <> excluded.available - stock_levels.reserved";
/// The feed's cursor, as the import keeps it (`$N` parameters: both engines take them).
const NEW_CURSOR: &str = "INSERT INTO inventory.feed_imports (feed, source, position, inserted, \
     updated, unchanged, rejected, started_at, updated_at) \
     VALUES ($1, 'bench', 0, 0, 0, 0, 0, $2, $2)";
const CURSOR: &str = "UPDATE inventory.feed_imports SET position = position + $1 WHERE feed = $2";

async fn hand_written_postgres(pool: &sqlx::PgPool, feed: &str, path: &Path) {
    sqlx::query(NEW_CURSOR)
        .bind(feed)
        .bind(chrono::Utc::now())
        .execute(pool)
        .await
        .expect("the cursor");
    let mut conn = pool.acquire().await.expect("a connection");
    sqlx::query(
        "CREATE TEMPORARY TABLE IF NOT EXISTS feed_stage (sku text, name text, \
         price_minor bigint, currency text, stock bigint) ON COMMIT DELETE ROWS",
    )
    .execute(&mut *conn)
    .await
    .expect("the staging table");
    for_each_chunk(path, async |rows| {
        let mut tx = conn.begin().await.expect("begin");
        let mut data = String::with_capacity(rows.len() * 48);
        for row in rows {
            copy_field(&mut data, &row.sku);
            data.push('\t');
            copy_field(&mut data, &row.name);
            let _ = write!(data, "\t{}\t", row.price_minor);
            copy_field(&mut data, &row.currency);
            let _ = writeln!(data, "\t{}", row.stock);
        }
        let mut copy = tx
            .copy_in_raw("COPY feed_stage FROM STDIN")
            .await
            .expect("copy");
        copy.send(data.into_bytes()).await.expect("copy data");
        copy.finish().await.expect("copy end");
        sqlx::query(PG_UPSERT_PRODUCTS)
            .execute(&mut *tx)
            .await
            .expect("products");
        sqlx::query(PG_UPSERT_STOCK)
            .execute(&mut *tx)
            .await
            .expect("stock");
        sqlx::query(CURSOR)
            .bind(rows.len() as i64)
            .bind(feed)
            .execute(&mut *tx)
            .await
            .expect("cursor");
        tx.commit().await.expect("commit");
    })
    .await;
}

/// A multi-row statement's `VALUES` list of `rows` rows of `columns` binds.
fn values(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

async fn hand_written_sqlite(pool: &sqlx::SqlitePool, feed: &str, path: &Path) {
    sqlx::query(NEW_CURSOR)
        .bind(feed)
        .bind(chrono::Utc::now())
        .execute(pool)
        .await
        .expect("the cursor");
    let products = |n| {
        format!(
            "INSERT INTO inventory.products (sku, name, price_minor, currency, created_at) \
             VALUES {} ON CONFLICT (sku) DO UPDATE SET name = excluded.name, \
             price_minor = excluded.price_minor, currency = excluded.currency \
             WHERE products.name IS NOT excluded.name \
             OR products.price_minor IS NOT excluded.price_minor \
             OR products.currency IS NOT excluded.currency",
            values(n, 5)
        )
    };
    let stock = |n| {
        format!(
            "INSERT INTO inventory.stock_levels (sku, available, reserved, updated_at) \
             VALUES {} ON CONFLICT (sku) DO UPDATE SET \
             available = excluded.available - stock_levels.reserved, \
             updated_at = excluded.updated_at \
             WHERE excluded.available >= stock_levels.reserved \
             AND stock_levels.available <> excluded.available - stock_levels.reserved",
            values(n, 4)
        )
    };
    let now = chrono::Utc::now();
    for_each_chunk(path, async |rows| {
        let mut tx = pool.begin().await.expect("begin");
        for part in rows.chunks(SQLITE_ROWS_PER_STATEMENT) {
            let sql = products(part.len());
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in part {
                query = query
                    .bind(&row.sku)
                    .bind(&row.name)
                    .bind(row.price_minor)
                    .bind(&row.currency)
                    .bind(now);
            }
            query.execute(&mut *tx).await.expect("products");
            let sql = stock(part.len());
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in part {
                query = query.bind(&row.sku).bind(row.stock).bind(0_i64).bind(now);
            }
            query.execute(&mut *tx).await.expect("stock");
        }
        sqlx::query(CURSOR)
            .bind(rows.len() as i64)
            .bind(feed)
            .execute(&mut *tx)
            .await
            .expect("cursor");
        tx.commit().await.expect("commit");
    })
    .await;
}

/// The child: imports the three feeds of `rows` rows with `side` on `engine`, printing
/// one line per phase: `phase rows_per_second peak_rss_kib`.
#[allow(clippy::print_stdout)] // The parent reads these lines.
async fn cell(engine: Engine, side: Side, rows: usize) {
    let dir = std::env::temp_dir().join(format!("bulk-import-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let feeds = write_feeds(&dir, rows);
    let db = TestDatabase::create(engine, migrations::all())
        .await
        .expect("the database server");
    let conn = db
        .fabric()
        .connection(inventory::SCHEMA)
        .expect("inventory");
    for (phase, path) in PHASES.iter().zip(&feeds) {
        reset_peak_rss();
        let started = Instant::now();
        match side {
            Side::Switchyard => {
                let summary = import_products(
                    db.fabric(),
                    &FeedSource::Path(path.clone()),
                    chunk_size(),
                    &mut Quiet,
                    None,
                )
                .await
                .expect("the import");
                let c = summary.counts;
                let expected = match *phase {
                    "fresh" => c.inserted,
                    "updated" => c.updated,
                    _ => c.unchanged,
                };
                assert_eq!(expected, rows as u64, "{phase}: {c:?}");
            }
            Side::HandWritten => match engine {
                Engine::Postgres => {
                    hand_written_postgres(conn.get_postgres_connection_pool(), phase, path).await;
                }
                _ => hand_written_sqlite(conn.get_sqlite_connection_pool(), phase, path).await,
            },
        }
        let rate = rows as f64 / started.elapsed().as_secs_f64();
        println!("{phase} {rate:.0} {}", peak_rss_kib());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs a cell in a child process: per phase, rows/s and peak RSS (KiB).
fn run_cell(engine: Engine, side: Side, rows: usize) -> Vec<(f64, u64)> {
    let output = Command::new(std::env::current_exe().expect("this binary"))
        .args([
            "--cell",
            &format!("{engine:?}"),
            side.name(),
            &rows.to_string(),
        ])
        .output()
        .expect("the cell runs");
    assert!(
        output.status.success(),
        "{engine:?} {} {rows}: {}",
        side.name(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(' ').skip(1);
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .collect()
}

#[allow(clippy::print_stdout)] // The table is the output.
#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--cell") {
        let engine = match args[1].as_str() {
            "Postgres" => Engine::Postgres,
            _ => Engine::Sqlite,
        };
        let side = if args[2] == "switchyard" {
            Side::Switchyard
        } else {
            Side::HandWritten
        };
        cell(engine, side, args[3].parse().expect("a row count")).await;
        return;
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        args.iter()
            .map(|a| a.parse().expect("a row count"))
            .collect()
    };
    println!(
        "P5: importing a product feed, {} rows per transaction; rows/s and peak RSS per import",
        chunk_size()
    );
    println!();
    println!(
        "| backend | rows | feed | hand-written rows/s | switchyard rows/s | switchyard / hand-written | peak RSS hand-written | peak RSS switchyard |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|");
    for engine in [Engine::Sqlite, Engine::Postgres] {
        for &rows in &sizes {
            let hand = run_cell(engine, Side::HandWritten, rows);
            let ours = run_cell(engine, Side::Switchyard, rows);
            for (i, phase) in PHASES.iter().enumerate() {
                let ((hand_rate, hand_rss), (our_rate, our_rss)) = (hand[i], ours[i]);
                println!(
                    "| {engine:?} | {rows} | {phase} | {hand_rate:.0} | {our_rate:.0} | {:.2} | {:.1} MiB | {:.1} MiB |",
                    our_rate / hand_rate,
                    hand_rss as f64 / 1024.0,
                    our_rss as f64 / 1024.0
                );
            }
        }
    }
}
