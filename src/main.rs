//! The `amber` server: reads flags, environment and an optional TOML file, opens the store and
//! serves the HTTP API until SIGTERM or Ctrl-C.

mod config;
mod server;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = config::Cli::parse();
    let config = config::Config::load(cli)?;
    config::init_logging(&config.log_format);
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(server::run(config))
}
