//! The command line: `overwatch`, `config validate`, and `xdp counters`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::{config::Config, overwatch, xdp};

/// OpenGSLB: DNS-based global server load balancing with an XDP fast path.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace); `RUST_LOG` overrides it.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the overwatch: authoritative DNS for the configured zones, XDP attached to `dns.xdp.interfaces`.
    Overwatch {
        /// The config file (YAML, the original's format). Without it, the embedded default config.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Leave XDP attached and pinned on exit (the next start detaches what it finds).
        #[arg(long)]
        keep_attached: bool,
        /// The bpffs directory the program's link and maps are pinned under.
        #[arg(long, default_value = xdp::BPFFS_ROOT)]
        bpffs_root: PathBuf,
        /// No userspace DNS listener, and fail if XDP cannot attach: only XDP answers (a testing aid).
        #[arg(long)]
        xdp_only: bool,
    },
    /// Config file tools.
    Config {
        /// What to do with a config.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Inspect the running XDP program.
    Xdp {
        /// What to inspect.
        #[command(subcommand)]
        command: XdpCommand,
    },
}

/// `opengslb config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate a config file; print what it serves.
    Validate {
        /// The file.
        file: PathBuf,
    },
    /// Print the embedded default config.
    Default,
}

/// `opengslb xdp ...`
#[derive(Debug, Subcommand)]
pub enum XdpCommand {
    /// Print the XDP program's counters (answers, and passes to userspace by reason).
    Counters {
        /// The bpffs directory the running overwatch pins under (its `--bpffs-root`).
        #[arg(long, default_value = xdp::BPFFS_ROOT)]
        bpffs_root: PathBuf,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Overwatch {
            config,
            keep_attached,
            bpffs_root,
            xdp_only,
        } => {
            let cfg = load(config.as_deref())?;
            overwatch::run(
                cfg,
                overwatch::Options {
                    keep_attached,
                    bpffs_root,
                    xdp_only,
                    config,
                },
            )
        }
        Command::Config {
            command: ConfigCommand::Validate { file },
        } => {
            let cfg = load(Some(&file))?;
            println!("{}: valid", file.display());
            for d in cfg.domain_records() {
                println!(
                    "  {} (zone {}): {} A, {} AAAA, ttl {}, {:?}",
                    d.name,
                    d.zone,
                    d.v4.len(),
                    d.v6.len(),
                    d.ttl,
                    d.algorithm
                );
            }
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{}", crate::config::DEFAULT_CONFIG_YAML);
            Ok(())
        }
        Command::Xdp {
            command: XdpCommand::Counters { bpffs_root },
        } => {
            let dir = xdp::pin_dir(&bpffs_root);
            let c = xdp::Counters::read_pinned(&dir).with_context(|| {
                format!(
                    "reading counters pinned in {} (is an overwatch running?)",
                    dir.display()
                )
            })?;
            println!("answered {}", c.answered());
            print!("{c}");
            Ok(())
        }
    }
}

fn load(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let cfg = match path {
        Some(p) => Config::load(p).with_context(|| format!("config {}", p.display()))?,
        None => Config::embedded_default().context("the embedded default config")?,
    };
    let unused = cfg.unused_sections();
    if !unused.is_empty() {
        tracing::warn!(
            keys = %unused.join(", "),
            "config keys accepted but not acted on yet"
        );
    }
    Ok(cfg)
}
