//! `amber inspect` and `amber verify`: wiring only. The store is opened read-only by
//! [`amber_storage::inspect::ReadOnlyStore`] (safe beside a running Amber), which also does the
//! analysis and the checks; this prints them and draws the progress bar.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use amber_storage::inspect::{Count, InspectOptions, Inspection, Progress, ReadOnlyStore};
use amber_storage::verify::Verification;
use anyhow::Context;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Flags both commands share.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Data directory of the store (opened read-only: an Amber may be running on it).
    #[arg(long, env = "AMBER_DATA_DIR")]
    data_dir: PathBuf,
    /// What the server calls the tenant of requests without X-Scope-OrgID (its --default-tenant).
    #[arg(long, env = "AMBER_DEFAULT_TENANT", default_value = "anonymous")]
    default_tenant: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Report on this tenant only (block and byte figures stay store-wide).
    #[arg(long)]
    tenant: Option<String>,
    /// Entries in each top list.
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    store: StoreArgs,
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let dir = &args.store.data_dir;
    let bar = Bar::new();
    let store = ReadOnlyStore::open(dir, &args.store.default_tenant);
    if store.is_err() {
        bar.clear();
    }
    let store = store.with_context(|| format!("opening {} read-only", dir.display()))?;
    let tenant = match &args.tenant {
        None => None,
        Some(name) => match store.tenant(name) {
            Some(t) => Some(t),
            None => {
                bar.clear();
                let known: Vec<String> = store.tenants().into_iter().map(|(_, n)| n).collect();
                anyhow::bail!("{} has no tenant {name:?} (it has {})", dir.display(), known.join(", "));
            }
        },
    };
    let report = store.inspect(&InspectOptions { tenant, limit: args.limit }, &bar);
    bar.clear();
    let report = report?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Text => write_text(&mut out, dir, &report)?,
    }
    Ok(())
}

/// Exits 0 when every block and log record reads back, 1 when anything is corrupt, 2 when the
/// store cannot be opened or read.
pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let dir = &args.store.data_dir;
    let bar = Bar::new();
    let store = match ReadOnlyStore::open(dir, &args.store.default_tenant) {
        Ok(s) => s,
        Err(e) => {
            bar.clear();
            exit(2, &format!("amber verify: opening {} read-only: {e}", dir.display()))
        }
    };
    let v = store.verify(&bar);
    bar.clear();
    // Closed before `exit`, which runs no destructors: the secondary's temporary directory goes.
    drop(store);
    let v = match v {
        Ok(v) => v,
        Err(e) => exit(2, &format!("amber verify: reading {}: {e}", dir.display())),
    };
    let mut out = std::io::stdout().lock();
    write_verification(&mut out, &v)?;
    out.flush()?;
    if v.problems() > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn exit(code: i32, message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(code)
}

/// Progress on stderr, drawn only when stderr is a terminal (so never into a script's logs).
struct Bar(ProgressBar);

impl Bar {
    /// A spinner while the store opens (RocksDB replays its log, the index state is read).
    fn new() -> Bar {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(spinner())
        } else {
            ProgressBar::hidden()
        };
        let bar = Bar(bar);
        bar.begin("opening the store", None);
        bar
    }

    /// Takes the bar off the terminal, before the report or an error is printed.
    fn clear(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn begin(&self, what: &str, total: Option<u64>) {
        let bar = &self.0;
        bar.reset();
        match total {
            Some(n) => {
                bar.disable_steady_tick();
                bar.set_length(n);
                bar.set_style(
                    ProgressStyle::with_template("{msg:>20} [{bar:40}] {human_pos}/{human_len} ({eta})")
                        .expect("a valid template")
                        .progress_chars("=> "),
                );
            }
            None => {
                bar.set_style(spinner());
                bar.unset_length();
                bar.enable_steady_tick(Duration::from_millis(100));
            }
        }
        bar.set_message(what.to_string());
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
        // The length is RocksDB's estimate of the keys; grow it rather than overflow the bar.
        if self.0.length().is_some_and(|len| self.0.position() > len) {
            self.0.set_length(self.0.position());
        }
    }
}

fn spinner() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg}").expect("a valid template")
}

/// `ms` since the epoch as RFC 3339 (UTC, seconds).
fn rfc3339(ms: i64) -> String {
    let t = if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

fn write_top(out: &mut impl Write, title: &str, list: &[Count], bytes: bool) -> std::io::Result<()> {
    writeln!(out, "  {title}:")?;
    if list.is_empty() {
        writeln!(out, "    (none)")?;
    }
    for c in list {
        let n = if bytes { HumanBytes(c.count).to_string() } else { c.count.to_string() };
        writeln!(out, "    {n:>12}  {}", c.name)?;
    }
    Ok(())
}

fn write_text(out: &mut impl Write, dir: &std::path::Path, r: &Inspection) -> std::io::Result<()> {
    let block = humantime::format_duration(Duration::from_millis(r.block_duration_ms.max(0) as u64));
    writeln!(out, "Store {} (block duration {block})", dir.display())?;
    for t in &r.tenants {
        writeln!(out)?;
        writeln!(out, "Tenant {} (id {}): {} series, {} label pairs", t.name, t.id, t.series, t.label_pairs)?;
        write_top(out, "Series per metric name", &t.series_by_metric_name, false)?;
        write_top(out, "Distinct values per label name", &t.values_by_label_name, false)?;
        write_top(out, "Bytes of label values per label name", &t.value_bytes_by_label_name, true)?;
        write_top(out, "Series per label pair", &t.series_by_label_pair, false)?;
        writeln!(out, "  Churn per window (activity sets, head included):")?;
        if t.windows.is_empty() {
            writeln!(out, "    (none)")?;
        }
        for w in &t.windows {
            let (start, end) = (rfc3339(w.start_ms), rfc3339(w.end_ms));
            writeln!(out, "    {start} .. {end}  {:>10} series  {:>10} new", w.series, w.new_series)?;
        }
        write_top(
            out,
            &format!("Sealed exemplars ({}) per metric name", t.sealed_exemplars),
            &t.exemplars_by_metric_name,
            false,
        )?;
    }
    writeln!(out)?;
    writeln!(out, "Sealed blocks (store-wide):")?;
    writeln!(
        out,
        "  {:<18} {:>4}  {:<40} {:>10} {:>12} {:>12} {:>8}",
        "column family", "kind", "holds", "blocks", "entries", "bytes", "B/entry"
    )?;
    for k in &r.block_kinds {
        let per_entry = if k.entries > 0 { format!("{:.2}", k.bytes as f64 / k.entries as f64) } else { "-".into() };
        writeln!(
            out,
            "  {:<18} {:>4}  {:<40} {:>10} {:>12} {:>12} {:>8}",
            k.column_family,
            k.kind,
            k.name,
            k.blocks,
            k.entries,
            HumanBytes(k.bytes).to_string(),
            per_entry
        )?;
    }
    writeln!(out)?;
    writeln!(out, "Column families (RocksDB):")?;
    writeln!(
        out,
        "  {:<18} {:>12} {:>12} {:>12} {:>12}",
        "name", "SST files", "live data", "memtables", "keys (est.)"
    )?;
    for c in &r.column_families {
        writeln!(
            out,
            "  {:<18} {:>12} {:>12} {:>12} {:>12}",
            c.name,
            HumanBytes(c.sst_bytes).to_string(),
            HumanBytes(c.live_data_bytes).to_string(),
            HumanBytes(c.memtable_bytes).to_string(),
            c.estimated_keys
        )?;
    }
    writeln!(out)?;
    writeln!(out, "WAL (the head's log): {} segment files, {}", r.wal.segments, HumanBytes(r.wal.bytes))
}

fn write_verification(out: &mut impl Write, v: &Verification) -> std::io::Result<()> {
    for c in &v.corrupt_blocks {
        let tenant = c.tenant.as_deref().unwrap_or("(unknown)");
        let series = match &c.labels {
            Some(l) => l.to_string(),
            None => format!("id {} (no labels in the index)", c.series),
        };
        let (start, end) = (rfc3339(c.window_start), rfc3339(c.window_end));
        writeln!(
            out,
            "corrupt block in {}: tenant {tenant}, series {series}, window {start}..{end}: {}",
            c.column_family, c.problem
        )?;
    }
    for r in &v.corrupt_wal_records {
        writeln!(out, "corrupt WAL record: segment {:010}, byte {}: {}", r.segment, r.offset, r.problem)?;
    }
    for p in &v.other_problems {
        writeln!(out, "problem: {p}")?;
    }
    for (segment, bytes) in &v.torn_wal_tails {
        writeln!(
            out,
            "note: WAL segment {segment:010} ends in {bytes} bytes of an incomplete record (being written, or cut short by a crash: never acknowledged; replay ignores it)"
        )?;
    }
    let bytes: u64 = v.blocks_checked.iter().map(|(_, _, b)| b).sum();
    writeln!(
        out,
        "verify: {} blocks ({}) and {} WAL segments ({} records) checked: {} corrupt blocks, {} corrupt WAL records, {} other problems",
        v.blocks(),
        HumanBytes(bytes),
        v.wal_segments_checked,
        v.wal_records_checked,
        v.corrupt_blocks.len(),
        v.corrupt_wal_records.len(),
        v.other_problems.len()
    )
}
