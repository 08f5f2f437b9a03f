//! `switchyard import products FILE|URL`: a product feed (CSV with a header row:
//! `sku,name,price_minor,currency,stock`, in any order, other columns ignored) read a
//! record at a time and imported into inventory one transaction per chunk. The feed's
//! version is the SHA-256 of its content: the same file imported again is skipped, and
//! one killed at any point continues after its last committed chunk. Rows that cannot
//! be imported are rejected with their line and reason, never aborting the import. A
//! feed over HTTP(S) is downloaded first (to a temporary file, a chunk at a time), asked
//! for with the `ETag` and `Last-Modified` of the version imported last: a server that
//! answers `304 Not Modified` costs nothing more.

use std::fmt;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inventory::{FeedCounts, FeedImport, FeedRow};
use orchestration::{Fabric, FabricError, UnitOfWorkError};
use sha2::{Digest, Sha256};

/// The columns a feed must have.
pub const COLUMNS: [&str; 5] = ["sku", "name", "price_minor", "currency", "stock"];

/// An import could not run (a bad row is not an error: it is rejected).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The feed cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The feed.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The feed is not CSV (an unterminated quote, say), or its header is not.
    #[error("{feed} is not a CSV feed: {source}")]
    Csv {
        /// The feed (its path or URL).
        feed: String,
        /// Why.
        source: csv::Error,
    },
    /// The header lacks a column.
    #[error(
        "{feed} has no `{column}` column (a feed's header names sku, name, price_minor, currency and stock)"
    )]
    MissingColumn {
        /// The feed (its path or URL).
        feed: String,
        /// The column.
        column: &'static str,
    },
    /// The feed's server could not be reached, or the download broke off.
    #[error("cannot fetch {url}: {source}")]
    Fetch {
        /// The feed.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The feed's server answered with an error.
    #[error("{url} answered {status}")]
    Status {
        /// The feed.
        url: String,
        /// Its answer.
        status: reqwest::StatusCode,
    },
    /// The rejects report cannot be written.
    #[error("cannot write the rejects report {path}: {source}")]
    Report {
        /// The report.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Inventory failed.
    #[error(transparent)]
    Inventory(#[from] inventory::Error),
    /// A chunk's unit of work failed; the chunks before it stay imported.
    #[error(transparent)]
    UnitOfWork(#[from] UnitOfWorkError),
    /// The inventory boundary is not composed.
    #[error(transparent)]
    Fabric(#[from] FabricError),
}

/// What an import run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// The feed's version: the SHA-256 of its content, in hex.
    pub feed: String,
    /// Whether this version was imported to its end before: then nothing ran.
    pub already_imported: bool,
    /// Rows consumed by earlier runs that this one skipped.
    pub resumed_from: u64,
    /// Rows this run consumed.
    pub rows: u64,
    /// What every row of the feed did (this run's and earlier runs').
    pub counts: FeedCounts,
    /// Where the rejected rows are listed (when there are any).
    pub rejects: Option<PathBuf>,
    /// How long this run took.
    pub elapsed: Duration,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = &self.feed[..12.min(self.feed.len())];
        if self.already_imported {
            write!(f, "feed {short} was imported already: nothing to do")?;
        } else {
            let seconds = self.elapsed.as_secs_f64();
            #[allow(clippy::cast_precision_loss)]
            let rate = if seconds > 0.0 {
                self.rows as f64 / seconds
            } else {
                0.0
            };
            write!(
                f,
                "feed {short}: {} rows in {seconds:.1} s ({rate:.0} rows/s)",
                self.rows
            )?;
            if self.resumed_from > 0 {
                write!(f, ", resumed after row {}", self.resumed_from)?;
            }
        }
        let c = self.counts;
        write!(
            f,
            "\ninserted {}, updated {}, unchanged {}, rejected {}",
            c.inserted, c.updated, c.unchanged, c.rejected
        )?;
        if let Some(path) = &self.rejects {
            write!(f, " (listed in {})", path.display())?;
        }
        Ok(())
    }
}

/// How far an import is, for a person watching.
pub trait Progress: Send {
    /// `done` of about `total` rows imported.
    fn advance(&mut self, done: u64, total: u64);
    /// The import ended.
    fn finish(&mut self);
}

/// A progress bar on a terminal (rows, rate, ETA), or a plain line at most every few
/// seconds otherwise.
pub fn progress_for_stderr() -> Box<dyn Progress> {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} rows  {per_sec}  ETA {eta}",
            )
            .expect("a valid template"),
        );
        Box::new(Bar(bar))
    } else {
        Box::new(Lines { last: None })
    }
}

struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn advance(&mut self, done: u64, total: u64) {
        self.0.set_length(total.max(done));
        self.0.set_position(done);
    }

    fn finish(&mut self) {
        self.0.finish_and_clear();
    }
}

struct Lines {
    last: Option<Instant>,
}

impl Progress for Lines {
    fn advance(&mut self, done: u64, total: u64) {
        if self
            .last
            .is_none_or(|last| last.elapsed() >= Duration::from_secs(2))
        {
            eprintln!("imported {done} of about {total} rows");
            self.last = Some(Instant::now());
        }
    }

    fn finish(&mut self) {}
}

/// The SHA-256 of `path`'s content (hex) and its number of lines, read once.
fn fingerprint(path: &Path) -> Result<(String, u64), ImportError> {
    let read = |source| ImportError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read)?;
    let mut hasher = Sha256::new();
    let mut lines = 0_u64;
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buffer).map_err(read)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    let hash = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hash, lines))
}

/// Where a feed is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSource {
    /// A file.
    Path(PathBuf),
    /// An `http://` or `https://` URL.
    Url(reqwest::Url),
}

impl FeedSource {
    /// `http://…` and `https://…` are URLs; anything else is a path.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        match reqwest::Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Self::Url(url),
            _ => Self::Path(PathBuf::from(text)),
        }
    }

    /// Where the rejects report of a command-line import goes: `FILE.rejects.csv` beside
    /// a file, `<last path segment>.rejects.csv` in the current directory for a URL.
    #[must_use]
    pub fn rejects_report(&self) -> PathBuf {
        match self {
            Self::Path(path) => rejects_path(path),
            Self::Url(url) => {
                let name = url
                    .path_segments()
                    .and_then(|mut segments| segments.next_back())
                    .filter(|name| !name.is_empty())
                    .unwrap_or("feed");
                rejects_path(Path::new(name))
            }
        }
    }
}

impl fmt::Display for FeedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(path) => write!(f, "{}", path.display()),
            Self::Url(url) => write!(f, "{url}"),
        }
    }
}

/// A downloaded feed's temporary file, removed when dropped.
struct Download(PathBuf);

impl Drop for Download {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Imports the product feed at `source`, `chunk_size` rows per transaction, writing the
/// rejected rows to `report` (when given and there are any).
///
/// # Errors
/// The feed cannot be fetched or read or is not CSV, its header lacks a column, or a
/// database failed (the chunks committed before stay imported; run it again to
/// continue).
pub async fn import_products(
    fabric: &Fabric,
    source: &FeedSource,
    chunk_size: usize,
    progress: &mut dyn Progress,
    report: Option<&Path>,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let url = match source {
        FeedSource::Path(path) => {
            return import_file(
                fabric,
                path,
                &source.to_string(),
                chunk_size,
                progress,
                report,
            )
            .await;
        }
        FeedSource::Url(url) => url,
    };
    let name = url.to_string();
    let fetch_error = |source| ImportError::Fetch {
        url: name.clone(),
        source,
    };
    let conn = fabric.connection(inventory::SCHEMA)?;
    let last = inventory::last_import_from(conn, &name).await?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(fetch_error)?;
    let mut request = client.get(url.clone());
    if let Some(last) = &last {
        if let Some(etag) = &last.validators.etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(modified) = &last.validators.last_modified {
            request = request.header(reqwest::header::IF_MODIFIED_SINCE, modified);
        }
    }
    let mut response = request.send().await.map_err(fetch_error)?;
    if response.status() == reqwest::StatusCode::NOT_MODIFIED
        && let Some(last) = last
    {
        return Ok(summary(last, true, 0, None, started));
    }
    if !response.status().is_success() {
        return Err(ImportError::Status {
            url: name,
            status: response.status(),
        });
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let validators = inventory::Validators {
        etag: header(reqwest::header::ETAG),
        last_modified: header(reqwest::header::LAST_MODIFIED),
    };
    let download = Download(
        std::env::temp_dir().join(format!("switchyard-feed-{}.csv", uuid::Uuid::now_v7())),
    );
    let written = |source| ImportError::Read {
        path: download.0.clone(),
        source,
    };
    let mut file = tokio::fs::File::create(&download.0)
        .await
        .map_err(written)?;
    while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
            .await
            .map_err(written)?;
    }
    tokio::io::AsyncWriteExt::flush(&mut file)
        .await
        .map_err(written)?;
    drop(file);
    let mut summary = import_file(fabric, &download.0, &name, chunk_size, progress, report).await?;
    inventory::set_validators(conn, &summary.feed, &validators).await?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Imports the feed in the file at `path`, recording it as read from `source`.
async fn import_file(
    fabric: &Fabric,
    path: &Path,
    source: &str,
    chunk_size: usize,
    progress: &mut dyn Progress,
    report: Option<&Path>,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let owned = path.to_owned();
    let (feed, lines) = tokio::task::spawn_blocking(move || fingerprint(&owned))
        .await
        .map_err(|err| ImportError::Read {
            path: path.to_owned(),
            source: std::io::Error::other(err),
        })??;
    let conn = fabric.connection(inventory::SCHEMA)?;
    let record = inventory::start_feed(conn, &feed, source, fabric.clock().now()).await?;
    if record.finished_at.is_some() {
        return Ok(summary(record, true, 0, report, started));
    }
    let csv_error = |error| ImportError::Csv {
        feed: source.to_owned(),
        source: error,
    };
    let file = std::fs::File::open(path).map_err(|source| ImportError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 16, file));
    let header = reader.byte_headers().map_err(csv_error)?.clone();
    let mut at = [0_usize; 5];
    for (slot, column) in at.iter_mut().zip(COLUMNS) {
        *slot = header
            .iter()
            .position(|name| name.trim_ascii() == column.as_bytes())
            .ok_or_else(|| ImportError::MissingColumn {
                feed: source.to_owned(),
                column,
            })?;
    }
    let total = lines.saturating_sub(1);
    let resumed_from = record.position;
    let mut position = 0_u64;
    let mut byte_record = csv::ByteRecord::new();
    let field = |record: &csv::ByteRecord, i: usize| {
        String::from_utf8_lossy(record.get(i).unwrap_or_default()).into_owned()
    };
    let chunk_size = chunk_size.max(1);
    let mut chunk: Vec<FeedRow> = Vec::with_capacity(chunk_size);
    loop {
        let more = reader
            .read_byte_record(&mut byte_record)
            .map_err(csv_error)?;
        if more {
            position += 1;
            if position <= resumed_from {
                continue;
            }
            chunk.push(FeedRow {
                line: byte_record
                    .position()
                    .map_or(position + 1, csv::Position::line),
                sku: field(&byte_record, at[0]),
                name: field(&byte_record, at[1]),
                price_minor: field(&byte_record, at[2]),
                currency: field(&byte_record, at[3]),
                stock: field(&byte_record, at[4]),
            });
        }
        if chunk.len() == chunk_size || (!more && !chunk.is_empty()) {
            let now = fabric.clock().now();
            let from = position - chunk.len() as u64;
            fabric
                .unit_of_work("import_products")
                .run(async |uow| -> Result<_, ImportError> {
                    uow.step(inventory::SCHEMA, "import_chunk", async |tx| {
                        inventory::import_feed_chunk(tx, &feed, from, &chunk, now).await
                    })
                    .await
                })
                .await?;
            chunk.clear();
            progress.advance(position, total);
        }
        if !more {
            break;
        }
    }
    progress.finish();
    let record = inventory::finish_feed(conn, &feed, fabric.clock().now()).await?;
    let rows = record.position - resumed_from;
    let mut summary = summary(record, false, resumed_from, report, started);
    summary.rows = rows;
    if let Some(report) = &summary.rejects {
        write_rejects(fabric, &feed, report).await?;
    }
    Ok(summary)
}

fn rejects_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".rejects.csv");
    PathBuf::from(name)
}

fn summary(
    record: FeedImport,
    already_imported: bool,
    resumed_from: u64,
    report: Option<&Path>,
    started: Instant,
) -> ImportSummary {
    ImportSummary {
        rejects: report
            .filter(|_| record.counts.rejected > 0)
            .map(Path::to_owned),
        feed: record.feed,
        already_imported,
        resumed_from,
        rows: 0,
        counts: record.counts,
        elapsed: started.elapsed(),
    }
}

/// Writes every rejected row of `feed` (`line,sku,reason`) to `report`.
async fn write_rejects(fabric: &Fabric, feed: &str, report: &Path) -> Result<(), ImportError> {
    let failed = |source| ImportError::Report {
        path: report.to_owned(),
        source,
    };
    let conn = fabric.connection(inventory::SCHEMA)?;
    let mut writer = csv::Writer::from_path(report).map_err(|err| failed(err.into()))?;
    writer
        .write_record(["line", "sku", "reason"])
        .map_err(|err| failed(err.into()))?;
    let mut after = 0;
    loop {
        let rejects = inventory::feed_rejects(conn, feed, after, 1000).await?;
        let Some(last) = rejects.last() else {
            break;
        };
        after = last.line;
        for reject in &rejects {
            writer
                .write_record([
                    reject.line.to_string().as_str(),
                    reject.sku.as_deref().unwrap_or_default(),
                    reject.reason.as_str(),
                ])
                .map_err(|err| failed(err.into()))?;
        }
    }
    writer.flush().map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rejects_report_sits_beside_the_feed() {
        assert_eq!(
            rejects_path(Path::new("/tmp/feed.csv")),
            PathBuf::from("/tmp/feed.csv.rejects.csv")
        );
    }

    #[test]
    fn a_fingerprint_is_the_content_hash_and_line_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.csv");
        std::fs::write(&path, "sku,name\nA,a\n").unwrap();
        let (hash, lines) = fingerprint(&path).unwrap();
        assert_eq!(lines, 2);
        assert_eq!(hash.len(), 64);
    }
}

/// The `vendor_sync` job: imports the feed at a path or URL on its schedule, one instance at a
/// time (a singleton), skipping a feed imported before and resuming one a crash cut
/// short. Its runs are the feed imports `switchyard import status` and
/// `GET /api/ops/imports` show.
#[derive(Debug, Clone)]
pub(crate) struct VendorSync {
    fabric: Fabric,
    feed: FeedSource,
    chunk_size: usize,
}

impl VendorSync {
    /// The job's name.
    pub(crate) const NAME: &'static str = "vendor_sync";

    pub(crate) fn new(fabric: &Fabric, feed: FeedSource, chunk_size: usize) -> Self {
        Self {
            fabric: fabric.clone(),
            feed,
            chunk_size,
        }
    }
}

/// No one watches a scheduled import: its summary is logged.
struct Silent;

impl Progress for Silent {
    fn advance(&mut self, _done: u64, _total: u64) {}
    fn finish(&mut self) {}
}

impl orchestration::host::Job for VendorSync {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn run(
        &self,
        _tick: orchestration::host::Tick,
        _context: &orchestration::host::WorkerContext,
    ) -> Result<(), orchestration::host::WorkerError> {
        // Its rejected rows are in `inventory.feed_rejects` and the ops API.
        let summary =
            import_products(&self.fabric, &self.feed, self.chunk_size, &mut Silent, None).await?;
        if !summary.already_imported {
            let c = summary.counts;
            tracing::info!(
                feed = %summary.feed,
                rows = summary.rows,
                inserted = c.inserted,
                updated = c.updated,
                unchanged = c.unchanged,
                rejected = c.rejected,
                "vendor feed imported"
            );
        }
        Ok(())
    }
}
