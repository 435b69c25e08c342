//! The operator's commands (`opengslb status`, `backends`, `override set`, ...; docs/cli.md): a client
//! of a running overwatch's HTTP API (docs/api.md), and nothing more. It talks HTTP only, so it works
//! against any overwatch it can reach, and reads the replies into its own small types (`reply.rs`)
//! rather than the server's, which would tie it to the server's internals.

mod client;
mod commands;
mod explain;
mod reply;
mod table;

use std::{net::IpAddr, time::Duration};

use clap::{ArgAction, Args, Subcommand};
use url::Url;

pub use client::Failure;

/// Exit status: the API answered with an error, or with something that is not its JSON.
pub const EXIT_API: u8 = 1;
/// Exit status: the command line is wrong (clap uses the same).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: no answer from the API (connection refused, DNS, TLS, timeout).
pub const EXIT_UNREACHABLE: u8 = 3;

/// The default `--api`.
pub const DEFAULT_API: &str = "http://127.0.0.1:8080";

/// The options every API command takes. Global, so that `override` takes them before or after
/// `set`.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The overwatch's API: its base URL (a path prefix is kept, for a proxy); `HOST:PORT` means
    /// `http://HOST:PORT`.
    #[arg(long = "api", value_name = "URL", env = "OPENGSLB_API", default_value = DEFAULT_API,
        value_parser = parse_api, global = true)]
    pub api: Url,
    /// The overwatch's `api.token`, sent as `Authorization: Bearer` (changes need it when it is set).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "OPENGSLB_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Print the API's JSON, pretty, instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for each reply (`10s`, `500ms`; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout,
        global = true)]
    pub timeout: Duration,
}

/// The commands that talk to a running overwatch's API.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Whether the overwatch is ready, its version, and counts of backends, overrides and agents.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The servers configured: the config file's and those made through the API (not agents').
    Servers {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Every backend (static, agent and API ones) with its effective status and why.
    Backends {
        /// Only this service's (any spelling of the name).
        #[arg(long)]
        service: Option<String>,
        /// Only this region's.
        #[arg(long)]
        region: Option<String>,
        /// Only those with this effective status.
        #[arg(long, value_parser = ["healthy", "unhealthy", "stale", "draining"])]
        status: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Take a backend out of DNS or put it back (operators' overrides, which persist).
    Override {
        #[command(subcommand)]
        command: OverrideCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Every domain: the config file's and those made through the API.
    Domains {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The agents that report to this overwatch.
    Agents {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// What a query for NAME gets now, and why each backend is in or out.
    Explain {
        /// The name asked for.
        name: String,
        /// The query type.
        #[arg(long = "type", value_name = "TYPE", default_value = "A", ignore_case = true,
            value_parser = ["A", "AAAA"])]
        qtype: String,
        /// The client's address, for geolocation.
        #[arg(long, value_name = "IP")]
        client: Option<IpAddr>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// `opengslb override ...`
#[derive(Debug, Subcommand)]
pub enum OverrideCommand {
    /// Set an override on one backend: out of DNS (the default) or, with `--healthy`, in whatever its
    /// checks say.
    Set {
        #[command(flatten)]
        backend: BackendArgs,
        /// `false` (the default): out of DNS; `true` (or a bare `--healthy`): in.
        #[arg(long, value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1,
            default_value_t = false, default_missing_value = "true")]
        healthy: bool,
        /// Why, for the record.
        #[arg(long, default_value = "", hide_default_value = true)]
        reason: String,
        /// Who sets it, recorded with it (sent as `X-User`); default: `$USER`.
        #[arg(long, value_name = "NAME", value_parser = parse_user)]
        by: Option<String>,
    },
    /// Clear one backend's override: its checks decide again.
    Clear {
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Every override in force.
    List,
}

/// One backend: service, address, port.
#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// The service name (`app.demo.local`).
    pub service: String,
    /// The backend's IP address (IPv6 bare or in brackets).
    #[arg(value_parser = parse_address)]
    pub address: IpAddr,
    /// The backend's port.
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
}

fn parse_api(text: &str) -> Result<Url, String> {
    let full = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&full).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?}: the API is http:// or https://"));
    }
    if url.host().is_none() {
        return Err(format!("{text:?} has no host"));
    }
    Ok(url)
}

pub(crate) fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?,
    };
    if d.is_zero() {
        return Err("must be more than 0".to_owned());
    }
    Ok(d)
}

fn parse_address(text: &str) -> Result<IpAddr, String> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse()
        .map_err(|_| format!("{text:?} is not an IP address"))
}

/// What the API takes in `X-User`.
fn parse_user(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.is_empty() || t.len() > 256 || !t.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        return Err("1 to 256 visible ASCII characters".to_owned());
    }
    Ok(t.to_owned())
}

/// Runs one command; on failure, [`Failure::exit_code`] says how it failed.
pub fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Status { api } => commands::status(&api),
        Command::Servers { api } => commands::servers(&api),
        Command::Backends {
            service,
            region,
            status,
            api,
        } => commands::backends(&api, service, region, status),
        Command::Override { command, api } => match command {
            OverrideCommand::Set {
                backend,
                healthy,
                reason,
                by,
            } => {
                // $USER only when the API would take it; otherwise the API records `api`.
                let by =
                    by.or_else(|| std::env::var("USER").ok().and_then(|u| parse_user(&u).ok()));
                commands::override_set(&api, &backend, healthy, &reason, by.as_deref())
            }
            OverrideCommand::Clear { backend } => commands::override_clear(&api, &backend),
            OverrideCommand::List => commands::override_list(&api),
        },
        Command::Domains { api } => commands::domains(&api),
        Command::Agents { api } => commands::agents(&api),
        Command::Explain {
            name,
            qtype,
            client,
            api,
        } => explain::run(&api, &name, &qtype.to_ascii_uppercase(), client),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_take_a_bare_host_and_port_and_refuse_other_schemes() {
        assert_eq!(
            parse_api("127.0.0.1:8080").unwrap().as_str(),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(
            parse_api("https://gslb.example/prefix/").unwrap().as_str(),
            "https://gslb.example/prefix/"
        );
        assert!(parse_api("ftp://x").is_err());
        assert!(parse_api("http://").is_err());
        assert!(parse_api("not a url").is_err());
    }

    #[test]
    fn timeouts_are_seconds_or_durations_and_not_zero() {
        assert_eq!(parse_timeout("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn addresses_may_be_bracketed() {
        assert_eq!(
            parse_address("[2001:db8::1]"),
            Ok("2001:db8::1".parse().unwrap())
        );
        assert!(parse_address("10.0.0.300").is_err());
    }
}
