//! `amber import` and `amber export`: flags, progress bars and summaries around
//! [`amber_transfer`].

use std::path::PathBuf;
use std::time::Instant;

use amber_transfer::progress::Journal;
use amber_transfer::sink::{Sink, Target, Totals};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

/// The Amber an import writes to or an export reads from.
#[derive(Debug, clap::Args)]
pub struct AmberArgs {
    /// Base URL of the running Amber.
    #[arg(long, env = "AMBER_URL", default_value = "http://localhost:9201", global = true)]
    pub url: String,
    /// Tenant (`X-Scope-OrgID`); the default tenant when unset.
    #[arg(long, env = "AMBER_TENANT", global = true)]
    pub tenant: Option<String>,
    /// Bearer token, when the tenant has credentials.
    #[arg(long, env = "AMBER_BEARER_TOKEN", global = true)]
    pub bearer_token: Option<String>,
}

impl AmberArgs {
    fn target(&self) -> Target {
        Target { url: self.url.clone(), tenant: self.tenant.clone(), bearer_token: self.bearer_token.clone() }
    }
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub source: ImportSource,
    #[command(flatten)]
    pub amber: AmberArgs,
    /// The resume journal: the parts already imported, skipped by a rerun [default: a file in the
    /// current directory named after the source].
    #[arg(long, global = true)]
    pub journal: Option<PathBuf>,
    /// Forget the journal and import everything again (what Amber holds is still not written twice).
    #[arg(long, global = true)]
    pub fresh: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImportSource {
    /// From a running Prometheus over remote read (samples and native histograms), with its
    /// exemplars from query_exemplars.
    Prometheus {
        /// Base URL of the Prometheus.
        #[arg(long)]
        prometheus_url: String,
        /// Series selector; repeat for more [default: every series].
        #[arg(long = "match")]
        selectors: Vec<String>,
        /// First time to import: RFC 3339 or Unix seconds.
        #[arg(long)]
        start: String,
        /// Last time to import [default: now].
        #[arg(long)]
        end: Option<String>,
        /// Time range of one remote read request.
        #[arg(long, default_value = "2h")]
        slice: String,
        /// Do not copy exemplars.
        #[arg(long)]
        no_exemplars: bool,
    },
    /// From a Prometheus data directory or snapshot: every block under it.
    Tsdb {
        /// The directory (or one block's directory).
        dir: PathBuf,
    },
    /// From OpenMetrics text with timestamps, exemplars included.
    Openmetrics {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub amber: AmberArgs,
    /// Series selector; repeat for more.
    #[arg(long = "match", required = true)]
    pub selectors: Vec<String>,
    /// First time to export: RFC 3339 or Unix seconds [default: the oldest data].
    #[arg(long)]
    pub start: Option<String>,
    /// Last time to export [default: now].
    #[arg(long)]
    pub end: Option<String>,
    /// Write the JSON lines here [default: standard output].
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

fn time_arg(name: &str, value: &str) -> anyhow::Result<i64> {
    amber_api::params::parse_time(value)
        .with_context(|| format!("--{name} {value:?} is neither RFC 3339 nor Unix seconds"))
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
        .expect("a valid template");
    bar.set_style(style);
    bar
}

pub fn import(args: ImportArgs) -> anyhow::Result<()> {
    let description = match &args.source {
        ImportSource::Prometheus { prometheus_url, selectors, start, end, .. } => {
            format!("prometheus {prometheus_url} {selectors:?} {start} {end:?}")
        }
        ImportSource::Tsdb { dir } => format!("tsdb {}", dir.display()),
        ImportSource::Openmetrics { file } => format!("openmetrics {}", file.display()),
    };
    let journal_path = args.journal.clone().unwrap_or_else(|| {
        PathBuf::from(format!(".amber-import-{:08x}.journal", crc32fast::hash(description.as_bytes())))
    });
    let journal = Journal::open(&journal_path, args.fresh)?;
    if journal.done_count() > 0 {
        eprintln!(
            "resuming: {} parts already imported, per {} (--fresh to import them again)",
            journal.done_count(),
            journal_path.display()
        );
    }
    let mut sink = Sink::new(args.amber.target(), journal)?;
    let bar = progress_bar();
    let started = Instant::now();
    let mut notes = Vec::new();
    match &args.source {
        ImportSource::Prometheus { prometheus_url, selectors, start, end, slice, no_exemplars } => {
            let source = amber_transfer::remote_read::Source {
                url: prometheus_url.clone(),
                selectors: if selectors.is_empty() {
                    vec![r#"{__name__=~".+"}"#.to_string()]
                } else {
                    selectors.clone()
                },
                start: time_arg("start", start)?,
                end: match end {
                    Some(end) => time_arg("end", end)?,
                    None => amber_storage::now_ms(),
                },
                slice_ms: amber_api::params::parse_duration_ms(slice)
                    .with_context(|| format!("--slice {slice:?} is not a duration"))?,
                exemplars: !no_exemplars,
            };
            amber_transfer::remote_read::import(&source, &mut sink, &bar)?;
        }
        ImportSource::Tsdb { dir } => {
            let read = amber_transfer::blocks::import(dir, &mut sink, &bar)?;
            if read.blocks_skipped > 0 {
                notes.push(format!("{} blocks were imported before (journal)", read.blocks_skipped));
            }
            if read.chunks_skipped > 0 {
                notes.push(format!(
                    "{} native histogram chunks were not imported: this reader decodes float (XOR) chunks only; import those series over remote read (amber import prometheus)",
                    read.chunks_skipped
                ));
            }
        }
        ImportSource::Openmetrics { file } => amber_transfer::openmetrics::import(file, &mut sink, &bar)?,
    }
    let totals = sink.finish()?;
    bar.finish_and_clear();
    summarise(&totals, started.elapsed().as_secs_f64(), &notes)
}

/// Prints what an import did; an error when Amber refused some of it.
fn summarise(t: &Totals, seconds: f64, notes: &[String]) -> anyhow::Result<()> {
    let per_second = (t.samples_written + t.histograms_written) as f64 / seconds.max(1e-9);
    println!(
        "imported {} samples, {} histogram samples and {} exemplars in {seconds:.1} s ({per_second:.0} samples/s, {} requests); {} entries were already held or refused",
        t.samples_written,
        t.histograms_written,
        t.exemplars_written,
        t.requests,
        t.not_written()
    );
    for note in notes {
        println!("{note}");
    }
    if t.refused_requests > 0 {
        for refusal in &t.refusals {
            eprintln!("refused: {}", refusal.trim());
        }
        anyhow::bail!(
            "Amber refused part of {} requests (the rest of each was written); the first refusals are above",
            t.refused_requests
        );
    }
    Ok(())
}

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let target = args.amber.target();
    let (start, end) = (args.start.as_deref(), args.end.as_deref());
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            amber_transfer::export::export(&target, &args.selectors, start, end, &mut out)?;
        }
        None => {
            amber_transfer::export::export(&target, &args.selectors, start, end, &mut std::io::stdout().lock())?;
        }
    }
    Ok(())
}
