//! Bulk import, the client side of the `Import` stream: reads a CSV or NDJSON file, sends it in chunks over
//! parallel streams, writes rejected rows with their reasons to a side file, and shows progress.
//!
//! Re-running an import is safe: every item is idempotent on its own id, so rows already stored come back as
//! duplicates. Rows of one item (the same order id) always travel on the same stream, in file order, so a later row
//! for an order (a cancellation) is applied after the earlier one.

pub mod rows;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boomerang_auth::TenantId;
use boomerang_proto::ingestion as pb;
use boomerang_proto::ingestion::ingestion_service_client::IngestionServiceClient;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use rows::{CustomerColumn, Row};

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ItemKind {
    Customers,
    Orders,
    Transactions,
    Events,
}

impl ItemKind {
    /// The column that identifies an item, for keeping its rows on one stream.
    fn key_column(self) -> &'static str {
        match self {
            ItemKind::Customers => "customer_id",
            ItemKind::Orders => "order_id",
            ItemKind::Transactions => "transaction_id",
            ItemKind::Events => "event_id",
        }
    }
}

/// How a file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    /// The format a file name suggests (`.ndjson`, `.jsonl` or `.json` are NDJSON; anything else is CSV).
    pub fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("ndjson" | "jsonl" | "json") => Format::Ndjson,
            _ => Format::Csv,
        }
    }
}

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub kind: ItemKind,
    pub file: PathBuf,
    pub tenant: TenantId,
    pub format: Format,
    /// How `customer_id` columns name customers, unless a row's `customer_kind` says otherwise.
    pub customer_column: CustomerColumn,
    /// Rows per chunk (at most the server's batch limit).
    pub chunk_size: usize,
    /// Streams in parallel. Customer files always use one: identity resolution serialises them anyway.
    pub parallel: usize,
    /// Where rejected rows go.
    pub rejects: PathBuf,
    pub show_progress: bool,
}

/// The outcome of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub rows: u64,
    pub accepted: u64,
    pub duplicates: u64,
    /// Rows the file or the server found invalid.
    pub invalid: u64,
    /// Rows the server refused (erased people).
    pub refused: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "{} rows in {:.1}s ({rate:.0} rows/s): {} accepted, {} duplicates, {} invalid, {} refused",
            self.rows,
            self.elapsed.as_secs_f64(),
            self.accepted,
            self.duplicates,
            self.invalid,
            self.refused
        )
    }
}

/// The import failed as a whole (individual bad rows never fail it; they go to the rejects file).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    File(String),
    #[error("cannot write the rejects file: {0}")]
    Rejects(#[from] csv::Error),
    #[error("the server ended the import: {}: {}", .0.code(), .0.message())]
    Server(#[from] tonic::Status),
}

/// Counters shared by the reader and the streams.
#[derive(Default)]
struct Tally {
    rows: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    invalid: AtomicU64,
    refused: AtomicU64,
}

impl Tally {
    fn message(&self) -> String {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        format!(
            "{} rows: {} accepted, {} duplicates, {} invalid, {} refused",
            get(&self.rows),
            get(&self.accepted),
            get(&self.duplicates),
            get(&self.invalid),
            get(&self.refused)
        )
    }
}

/// The rejects file, created on the first rejected row: `line,reason,record`.
struct Rejects {
    path: PathBuf,
    writer: Option<csv::Writer<File>>,
}

impl Rejects {
    fn write(&mut self, line: u64, reason: &str, record: &str) -> Result<(), csv::Error> {
        if self.writer.is_none() {
            let mut writer = csv::Writer::from_path(&self.path)?;
            writer.write_record(["line", "reason", "record"])?;
            self.writer = Some(writer);
        }
        let writer = self.writer.as_mut().expect("created above");
        writer.write_record([line.to_string().as_str(), reason, record])?;
        Ok(())
    }
}

struct Shared {
    tally: Tally,
    rejects: Mutex<Rejects>,
    progress: ProgressBar,
}

impl Shared {
    fn reject(&self, line: u64, reason: &str, record: &str) -> Result<(), ImportError> {
        self.rejects
            .lock()
            .expect("rejects lock")
            .write(line, reason, record)?;
        Ok(())
    }
}

/// The source rows (line, text) of each chunk sent and not yet answered, by chunk id.
type Pending = Arc<Mutex<HashMap<i64, Vec<(u64, String)>>>>;

/// One chunk on its way: the request, the rows it came from (to report rejects by line), and the ids in it.
struct Chunk {
    request: pb::ImportRequest,
    rows: Vec<(u64, String)>,
    keys: HashSet<String>,
}

/// Imports a file through the ingestion service behind `channel`, authenticating with `token`.
pub async fn import(
    channel: Channel,
    token: &str,
    options: ImportOptions,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let file = File::open(&options.file).map_err(|source| ImportError::Read {
        path: options.file.clone(),
        source,
    })?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = if options.show_progress {
        ProgressBar::new(size)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}\n{msg}",
        )
        .expect("valid template"),
    );
    // A rejects file from an earlier run would mix with this run's.
    let _ = std::fs::remove_file(&options.rejects);
    let shared = Arc::new(Shared {
        tally: Tally::default(),
        rejects: Mutex::new(Rejects {
            path: options.rejects.clone(),
            writer: None,
        }),
        progress: progress.clone(),
    });

    let streams = if options.kind == ItemKind::Customers {
        1
    } else {
        options.parallel.max(1)
    };
    let mut senders = Vec::with_capacity(streams);
    let mut tasks = Vec::with_capacity(streams);
    for _ in 0..streams {
        // Two chunks in flight per stream: the server works on one while the next is on the wire.
        let (sender, receiver) = mpsc::channel(2);
        senders.push(sender);
        tasks.push(tokio::spawn(run_stream(
            IngestionServiceClient::new(channel.clone())
                .max_decoding_message_size(64 * 1024 * 1024)
                .max_encoding_message_size(64 * 1024 * 1024),
            token.to_owned(),
            receiver,
            shared.clone(),
        )));
    }
    let reader = {
        let shared = shared.clone();
        let options = options.clone();
        // File reading and parsing is blocking work: it runs on a blocking thread, feeding the async streams.
        tokio::task::spawn_blocking(move || read_file(file, &options, senders, &shared))
    };
    let read = reader
        .await
        .map_err(|err| ImportError::File(format!("reader failed: {err}")))?;
    let mut first_error = read.err();
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => first_error = first_error.or(Some(err)),
            Err(err) => {
                first_error =
                    first_error.or(Some(ImportError::File(format!("stream failed: {err}"))))
            }
        }
    }
    progress.finish_with_message(shared.tally.message());
    if let Some(writer) = shared.rejects.lock().expect("rejects lock").writer.as_mut() {
        writer.flush().map_err(csv::Error::from)?;
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
    let tally = &shared.tally;
    Ok(ImportSummary {
        rows: get(&tally.rows),
        accepted: get(&tally.accepted),
        duplicates: get(&tally.duplicates),
        invalid: get(&tally.invalid),
        refused: get(&tally.refused),
        elapsed: started.elapsed(),
    })
}

/// Reads every row, rejects the unreadable ones, and sends the rest in chunks, each row to the stream its key
/// hashes to.
fn read_file(
    file: File,
    options: &ImportOptions,
    senders: Vec<mpsc::Sender<Chunk>>,
    shared: &Shared,
) -> Result<(), ImportError> {
    let reader = BufReader::with_capacity(1 << 20, shared.progress.wrap_read(file));
    let rows: Box<dyn Iterator<Item = Result<Row, rows::Unreadable>>> = match options.format {
        Format::Csv => Box::new(rows::csv_rows(reader)),
        Format::Ndjson => Box::new(rows::ndjson_rows(reader)),
    };
    let parent = options.tenant.resource_name();
    let mut building: Vec<Chunk> = (0..senders.len()).map(|_| empty_chunk(&parent)).collect();
    let mut next_chunk_id = 0_i64;
    let send = |chunk: Chunk, stream: usize, next_id: &mut i64| -> Result<(), ImportError> {
        let mut chunk = chunk;
        chunk.request.chunk_id = *next_id;
        *next_id += 1;
        senders[stream]
            .blocking_send(chunk)
            .map_err(|_| ImportError::File("an import stream ended early".into()))
    };
    for row in rows {
        shared.tally.rows.fetch_add(1, Ordering::Relaxed);
        let row = match row {
            Ok(row) => row,
            Err((line, raw, reason)) if line == 0 => {
                // A CSV that cannot be read any further (a broken header or quoting) stops the import.
                shared.reject(line, &reason, &raw)?;
                return Err(ImportError::File(reason));
            }
            Err((line, raw, reason)) => {
                shared.tally.invalid.fetch_add(1, Ordering::Relaxed);
                shared.reject(line, &reason, &raw)?;
                continue;
            }
        };
        let key = row.key(options.kind.key_column());
        let stream = stream_of(key, senders.len());
        // A second row for the same item starts a new chunk: rows apply in file order (a cancellation after the
        // sale), whatever the chunk size, instead of counting as a conflicting repeat within one batch.
        if !key.is_empty() && building[stream].keys.contains(key) {
            let full = std::mem::replace(&mut building[stream], empty_chunk(&parent));
            send(full, stream, &mut next_chunk_id)?;
        }
        let chunk = &mut building[stream];
        let added = add_row(&mut chunk.request, &row, options);
        match added {
            Ok(()) => {
                chunk.keys.insert(key.to_owned());
                chunk.rows.push((row.line, row.raw));
            }
            Err(reason) => {
                shared.tally.invalid.fetch_add(1, Ordering::Relaxed);
                shared.reject(row.line, &reason, &row.raw)?;
                continue;
            }
        }
        if chunk.rows.len() >= options.chunk_size {
            let full = std::mem::replace(chunk, empty_chunk(&parent));
            send(full, stream, &mut next_chunk_id)?;
        }
    }
    for (stream, chunk) in building.into_iter().enumerate() {
        if !chunk.rows.is_empty() {
            send(chunk, stream, &mut next_chunk_id)?;
        }
    }
    Ok(())
}

fn empty_chunk(parent: &str) -> Chunk {
    Chunk {
        request: pb::ImportRequest {
            parent: parent.to_owned(),
            mode: pb::BatchMode::Partial as i32,
            ..Default::default()
        },
        rows: Vec::new(),
        keys: HashSet::new(),
    }
}

fn stream_of(key: &str, streams: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % streams as u64) as usize
}

fn add_row(
    request: &mut pb::ImportRequest,
    row: &Row,
    options: &ImportOptions,
) -> Result<(), String> {
    let customers = &options.customer_column;
    match options.kind {
        ItemKind::Customers => request.customers.push(rows::customer(row)?),
        ItemKind::Orders => request.orders.push(rows::order(row, customers)?),
        ItemKind::Transactions => request
            .transactions
            .push(rows::transaction(row, customers)?),
        ItemKind::Events => request
            .engagement_events
            .push(rows::engagement(row, customers)?),
    }
    Ok(())
}

/// Sends chunks on one Import stream and tallies the server's verdict on every row.
async fn run_stream(
    mut client: IngestionServiceClient<Channel>,
    token: String,
    chunks: mpsc::Receiver<Chunk>,
    shared: Arc<Shared>,
) -> Result<(), ImportError> {
    let pending: Pending = Arc::default();
    let requests = {
        let pending = pending.clone();
        ReceiverStream::new(chunks).map(move |chunk| {
            pending
                .lock()
                .expect("pending lock")
                .insert(chunk.request.chunk_id, chunk.rows);
            chunk.request
        })
    };
    let mut request = tonic::Request::new(requests);
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| ImportError::File("the token is not a valid header value".into()))?;
    request.metadata_mut().insert("authorization", bearer);
    let mut responses = client.import(request).await?.into_inner();
    while let Some(response) = responses.message().await? {
        let rows = pending
            .lock()
            .expect("pending lock")
            .remove(&response.chunk_id)
            .unwrap_or_default();
        let tally = &shared.tally;
        for result in response.results {
            let counter = match result.status() {
                pb::ItemStatus::Accepted => &tally.accepted,
                pb::ItemStatus::Duplicate => &tally.duplicates,
                pb::ItemStatus::Refused => &tally.refused,
                pb::ItemStatus::Invalid | pb::ItemStatus::Unspecified => &tally.invalid,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if matches!(
                result.status(),
                pb::ItemStatus::Invalid | pb::ItemStatus::Refused
            ) {
                let reason = result
                    .violations
                    .iter()
                    .map(|v| {
                        if v.field.is_empty() {
                            v.description.clone()
                        } else {
                            format!("{}: {}", v.field, v.description)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let (line, raw) = rows
                    .get(result.index as usize)
                    .cloned()
                    .unwrap_or((0, String::new()));
                shared.reject(line, &reason, &raw)?;
            }
        }
        shared.progress.set_message(tally.message());
    }
    Ok(())
}
