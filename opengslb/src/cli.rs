//! The command line: `overwatch`, `agent`, `config validate`, `xdp counters`, the operator's commands
//! that talk to a running overwatch's API (`status`, `backends`, `override`, ...: [`ctl`]); and, with
//! no subcommand, the original's `opengslb [--config FILE] [--mode MODE]`, which runs whichever mode
//! the file names.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use crate::{
    agent,
    config::{self, Config, DEFAULT_CONFIG_PATH, Mode},
    ctl, overwatch, xdp,
};

/// OpenGSLB: DNS-based global server load balancing with an XDP fast path.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace), over the config's `logging.level`; `RUST_LOG` wins.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// Without a subcommand: the config file, whose `mode` says what to run (the original's command
    /// line); default `/etc/opengslb/config.yaml`. A file that holds secrets (gossip keys, tokens) must
    /// be readable and writable by its owner only (`chmod 600`).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Without a subcommand: run this mode whatever the file's `mode` says (`overwatch` or `agent`).
    #[arg(long, value_parser = clap::value_parser!(Mode))]
    pub mode: Option<Mode>,
    /// What to do; without one, run the config file's mode.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the overwatch: authoritative DNS for the configured zones, XDP attached to `dns.xdp.interfaces`.
    Overwatch {
        /// The config file (YAML, the original's format). Without it, the embedded default config.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Detach XDP and remove its pins on exit. Without it, XDP stays attached and keeps answering
        /// from the last table until the next overwatch takes it over, with no query lost.
        #[arg(long)]
        detach_on_exit: bool,
        /// Load the XDP program from this object instead of the one built in (e.g. a newer program build
        /// rolled out without a new binary; it must come from the same sources' map definitions or
        /// newer).
        #[arg(long, value_name = "FILE")]
        xdp_object: Option<PathBuf>,
        /// The bpffs directory the program's link and maps are pinned under.
        #[arg(long, default_value = xdp::BPFFS_ROOT)]
        bpffs_root: PathBuf,
        /// No userspace DNS listener, and fail if XDP cannot attach: only XDP answers (a testing aid).
        #[arg(long)]
        xdp_only: bool,
    },
    /// Run the agent beside an app (`mode: agent` config), or tell a running one to drain.
    Agent {
        /// The config file (YAML, the original's format, `mode: agent`).
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// The control socket of the running agent (default: the config's `agent.control_socket`).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Without a subcommand, run the agent.
        #[command(subcommand)]
        command: Option<AgentCommand>,
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
    /// The operator's commands, over a running overwatch's HTTP API.
    #[command(flatten)]
    Api(ctl::Command),
}

/// `opengslb agent ...`
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Drain the agent's backends (`on`) or end the drain (`off`), as the drain file does.
    Drain {
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// Return once every overwatch the agent reports to has published a table without (`on`) or
        /// with (`off`) its backends. Exit 1 if some did not within `--timeout` (they are named), 2 if
        /// one still answers with a drained backend because its name's all-down policy does.
        #[arg(long)]
        wait: bool,
        /// How long `--wait` waits (`10s`, `500ms`; a bare number is seconds; at most 10m).
        #[arg(long, default_value = "10s", value_parser = crate::ctl::parse_timeout, requires = "wait")]
        timeout: std::time::Duration,
    },
    /// Print whether the agent is drained by hand.
    Status,
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
    /// Detach the XDP program a stopped overwatch left attached, and remove its pins.
    Detach {
        /// The bpffs directory the overwatch pinned under (its `--bpffs-root`).
        #[arg(long, default_value = xdp::BPFFS_ROOT)]
        bpffs_root: PathBuf,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let level = cli.log_level.as_deref();
    let Some(command) = cli.command else {
        return run_file_mode(cli.config.as_deref(), cli.mode, level);
    };
    if cli.mode.is_some() || cli.config.is_some() {
        bail!(
            "--config and --mode before a subcommand belong to the bare `opengslb [--config FILE] [--mode \
             MODE]`; give the subcommand its own, e.g. `opengslb overwatch --config FILE`"
        );
    }
    match command {
        Command::Overwatch {
            config,
            detach_on_exit,
            xdp_object,
            bpffs_root,
            xdp_only,
        } => {
            let cfg = load_to_run(config.as_deref(), level)?;
            if cfg.mode == Mode::Agent {
                bail!("the config has mode: agent; run it with `opengslb agent --config FILE`");
            }
            overwatch::run(
                cfg,
                overwatch::Options {
                    detach_on_exit,
                    xdp_object,
                    bpffs_root,
                    xdp_only,
                    config,
                },
            )
        }
        Command::Agent {
            config,
            socket,
            command,
        } => {
            let cmd = match command {
                None => {
                    let cfg = load_to_run(Some(&config), level)?;
                    if cfg.mode != Mode::Agent {
                        bail!(
                            "{} has mode: overwatch; `opengslb agent` needs a config with mode: agent",
                            config.display()
                        );
                    }
                    return agent::run(cfg, Some(config));
                }
                Some(AgentCommand::Drain {
                    state,
                    wait,
                    timeout,
                }) => {
                    let cmd = if state == "on" {
                        agent::drain::Command::Drain
                    } else {
                        agent::drain::Command::Undrain
                    };
                    if timeout > agent::drain::MAX_WAIT {
                        bail!(
                            "--timeout {} is longer than {} s",
                            humantime::format_duration(timeout),
                            agent::drain::MAX_WAIT.as_secs()
                        );
                    }
                    (cmd, wait.then_some(timeout))
                }
                Some(AgentCommand::Status) => (agent::drain::Command::Status, None),
            };
            let (cmd, wait) = cmd;
            let path = match socket {
                Some(p) => {
                    crate::logging::init(level, None);
                    p
                }
                None => load(Some(&config), level)?.agent.control_socket,
            };
            println!("{}", agent::control(&path, cmd, wait)?);
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Validate { file },
        } => {
            let cfg = load(Some(&file), level)?;
            println!("{}: valid", file.display());
            if let Err(e) = config::check_file_mode(&file, &cfg) {
                eprintln!(
                    "warning: {e}; `opengslb overwatch` and `opengslb agent` refuse it until then"
                );
            }
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
            print!("{}", config::DEFAULT_CONFIG_YAML);
            Ok(())
        }
        Command::Xdp {
            command: XdpCommand::Counters { bpffs_root },
        } => {
            crate::logging::init(level, None);
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
        Command::Xdp {
            command: XdpCommand::Detach { bpffs_root },
        } => {
            crate::logging::init(level, None);
            if !bpffs_root.exists() {
                println!("nothing pinned under {}", bpffs_root.display());
                return Ok(());
            }
            xdp::remove_all(&bpffs_root)
                .with_context(|| format!("removing the pins under {}", bpffs_root.display()))?;
            println!("detached; removed the pins under {}", bpffs_root.display());
            Ok(())
        }
        Command::Api(command) => Ok(ctl::run(command)?),
    }
}

/// The exit status for a failed command: what the operator's commands document (docs/cli.md), 1 for
/// the rest.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if let Some(w) = error.downcast_ref::<agent::drain::WaitFailure>() {
        return w.code;
    }
    error
        .downcast_ref::<ctl::Failure>()
        .map_or(1, ctl::Failure::exit_code)
}

/// The original's command line: load the file (refused if it holds secrets others may read, as the
/// original refused a world-readable one), and run the mode it names (or `--mode`).
fn run_file_mode(
    path: Option<&Path>,
    mode: Option<Mode>,
    level: Option<&str>,
) -> anyhow::Result<()> {
    let path = path.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    if !path.exists() {
        bail!(
            "no config at {}: give one with `opengslb --config FILE`, or run `opengslb overwatch` for \
             the embedded demo config (`opengslb --help` lists the subcommands)",
            path.display()
        );
    }
    let mut cfg = load_to_run(Some(path), level)?;
    if let Some(mode) = mode {
        cfg.mode = mode;
        // The rules differ by mode (an agent needs backends and a token, an overwatch a zone).
        cfg.validate().with_context(|| {
            let mode = match mode {
                Mode::Overwatch => "overwatch",
                Mode::Agent => "agent",
            };
            format!("config {} run with --mode {mode}", path.display())
        })?;
    }
    match cfg.mode {
        Mode::Overwatch => overwatch::run(
            cfg,
            overwatch::Options {
                detach_on_exit: false,
                xdp_object: None,
                bpffs_root: PathBuf::from(xdp::BPFFS_ROOT),
                xdp_only: false,
                config: Some(path.to_path_buf()),
            },
        ),
        Mode::Agent => agent::run(cfg, Some(path.to_path_buf())),
    }
}

/// [`load`] for a process that runs from the file: a file that holds secrets must be private to its
/// owner ([`config::check_file_mode`]).
fn load_to_run(path: Option<&Path>, level: Option<&str>) -> anyhow::Result<Config> {
    let cfg = load(path, level)?;
    if let Some(p) = path {
        config::check_file_mode(p, &cfg)?;
    }
    Ok(cfg)
}

/// Loads the config (the embedded default without a path) and starts logging as it says.
fn load(path: Option<&Path>, level: Option<&str>) -> anyhow::Result<Config> {
    let cfg = match path {
        Some(p) => Config::load(p).with_context(|| format!("config {}", p.display()))?,
        None => Config::embedded_default().context("the embedded default config")?,
    };
    crate::logging::init(level, Some(&cfg.logging));
    let unused = cfg.unused_sections();
    if !unused.is_empty() {
        tracing::warn!(
            keys = %unused.join(", "),
            "config keys accepted but not acted on yet"
        );
    }
    Ok(cfg)
}
