//! The subcommands of `amber`: tools around a store, each a thin wrapper over a library crate.

mod inspect;
mod transfer;

/// `amber <command>`; without one, `amber` serves.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Backfill history into a running Amber from a Prometheus, a Prometheus TSDB directory or
    /// snapshot, or OpenMetrics text; resumable, and a rerun imports nothing twice.
    Import(transfer::ImportArgs),
    /// Stream series with their samples and exemplars from a running Amber as JSON lines.
    Export(transfer::ExportArgs),
    /// Report a store's cardinality, churn, exemplars and bytes (read-only; safe while it runs).
    Inspect(inspect::InspectArgs),
    /// Read every block of a store and check its checksum; exit code 1 names the corrupt ones.
    Verify(inspect::VerifyArgs),
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Import(args) => transfer::import(args),
        Command::Export(args) => transfer::export(args),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Verify(args) => inspect::verify(args),
    }
}
