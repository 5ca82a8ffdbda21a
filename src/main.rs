//! The `amber` binary. Without a subcommand it is the server: reads flags, environment and an
//! optional TOML file, opens the store and serves the HTTP API until SIGTERM or Ctrl-C. The
//! subcommands (`import`, `export`, `inspect`, `verify`) are the tools around a store.

mod commands;
mod config;
mod server;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let mut cli = config::Cli::parse();
    if let Some(command) = cli.command.take() {
        return commands::run(command);
    }
    let config = config::Config::load(cli)?;
    config::init_logging(&config.log_format);
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(server::run(config))
}
