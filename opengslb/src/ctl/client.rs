//! Requests to the API and what can go wrong with them, sorted by who is at fault: the API's answer
//! (exit 1), the command line (2), or the way there (3).

use std::time::Duration;

use reqwest::{
    Method, StatusCode,
    header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue},
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use super::{ApiArgs, EXIT_API, EXIT_UNREACHABLE, EXIT_USAGE};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The API answered with an error status.
    #[error("{method} {url}: HTTP {} {code}: {message}{hint}", status.as_u16())]
    Api {
        method: Method,
        url: String,
        status: StatusCode,
        code: String,
        message: String,
        hint: String,
    },
    /// Something answered, but not with the API's JSON (a web server, a proxy's error page, another
    /// version of the API).
    #[error("{method} {url}: {what}")]
    Reply {
        method: Method,
        url: String,
        what: String,
    },
    /// No answer.
    #[error("cannot reach the API at {url}: {why}")]
    Unreachable { url: String, why: String },
    /// The command line is wrong in a way the parser could not see.
    #[error("{0}")]
    Usage(String),
}

impl Failure {
    /// The process's exit status for this failure (docs/cli.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Api { .. } | Self::Reply { .. } => EXIT_API,
            Self::Usage(_) => EXIT_USAGE,
            Self::Unreachable { .. } => EXIT_UNREACHABLE,
        }
    }
}

/// A URL as messages show it: without a password, should the user have put one in `--api`.
fn shown(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_password(None);
    u.to_string()
}

/// The innermost cause: reqwest's own text only says "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// Text from elsewhere, cut short for a message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(160)
        .collect();
    let one_line = one_line.trim();
    if one_line.is_empty() {
        "an empty body".to_owned()
    } else {
        format!("{one_line:?}")
    }
}

/// A connection to one overwatch's API.
pub struct Client {
    base: Url,
    token: Option<HeaderValue>,
    timeout: Duration,
    http: reqwest::Client,
    // A runtime of its own: one request at a time needs no more, and the rest of the command stays
    // plain sequential code.
    rt: tokio::runtime::Runtime,
}

/// An answer: its status and JSON body, and the request it answers.
pub struct Reply {
    pub method: Method,
    /// The URL as messages show it.
    pub url: String,
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// The body read as `T`; a reply of another shape (another version of the API) is the API's
    /// fault.
    pub fn typed<T: DeserializeOwned>(self) -> Result<T, Failure> {
        serde_json::from_value(self.body).map_err(|e| Failure::Reply {
            method: self.method,
            url: self.url,
            what: format!("the reply is not what this version of opengslb expects: {e}"),
        })
    }
}

impl Client {
    /// A client for `args.api`.
    pub fn new(args: &ApiArgs) -> Result<Self, Failure> {
        let unreachable = |why: String| Failure::Unreachable {
            url: shown(&args.api),
            why,
        };
        let token = args
            .token
            .as_deref()
            .map(|t| {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", t.trim()))
                    .map_err(|_| Failure::Usage("--token: not a valid HTTP header value".into()))?;
                v.set_sensitive(true);
                Ok(v)
            })
            .transpose()?;
        let http = crate::http_client::builder()
            .timeout(args.timeout)
            .connect_timeout(args.timeout)
            .user_agent(concat!("opengslb/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| unreachable(format!("cannot make an HTTP client: {}", root_cause(&e))))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unreachable(format!("cannot start the HTTP client: {e}")))?;
        Ok(Self {
            base: args.api.clone(),
            token,
            timeout: args.timeout,
            http,
            rt,
        })
    }

    /// The base URL as messages show it.
    pub fn base(&self) -> String {
        shown(&self.base)
    }

    /// The URL of `/api/v1/<path...>` under the base, each segment percent-encoded as needed.
    fn url(&self, path: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["api", "v1"]).extend(path);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// GET, which must answer 2xx.
    pub fn get(&self, path: &[&str], query: &[(&str, &str)]) -> Result<Reply, Failure> {
        self.call(Method::GET, path, query, None, None, &[])
    }

    /// A request; any status in `also` is an answer too, not an error.
    pub fn call(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        user: Option<&str>,
        also: &[StatusCode],
    ) -> Result<Reply, Failure> {
        let url = self.url(path, query);
        let mut req = self.http.request(method.clone(), url.clone());
        if let Some(t) = &self.token {
            req = req.header(AUTHORIZATION, t.clone());
        }
        if let Some(u) = user {
            req = req.header("X-User", u);
        }
        if let Some(b) = body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let (status, content_type, bytes) = self
            .rt
            .block_on(async {
                let resp = req.send().await?;
                let status = resp.status();
                let ct = resp
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                Ok((status, ct, resp.bytes().await?))
            })
            .map_err(|e: reqwest::Error| self.unreachable(&url, &e))?;
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() || also.contains(&status) {
            return match json {
                Some(body) => Ok(Reply {
                    method,
                    url: shown(&url),
                    status,
                    body,
                }),
                None => Err(Failure::Reply {
                    method,
                    url: shown(&url),
                    what: format!(
                        "HTTP {status}, but the reply is not JSON ({}): {}; is this the overwatch's API?",
                        if content_type.is_empty() {
                            "no content type"
                        } else {
                            &content_type
                        },
                        excerpt(&bytes)
                    ),
                }),
            };
        }
        let (code, message) = match json.as_ref().and_then(error_body) {
            Some(e) => e,
            // Not the API's error (a proxy's page, say): show what came.
            None => (
                status.canonical_reason().unwrap_or("error").to_owned(),
                format!("{}, not the API's JSON error", excerpt(&bytes)),
            ),
        };
        Err(Failure::Api {
            hint: self.hint(status),
            method,
            url: shown(&url),
            status,
            code,
            message,
        })
    }

    fn unreachable(&self, url: &Url, e: &reqwest::Error) -> Failure {
        let why = if e.is_timeout() {
            format!(
                "no reply within {}",
                humantime::format_duration(self.timeout)
            )
        } else if e.is_redirect() {
            format!("too many redirects ({})", root_cause(e))
        } else {
            root_cause(e)
        };
        Failure::Unreachable {
            url: shown(url),
            why,
        }
    }

    /// What to do about the usual refusals.
    fn hint(&self, status: StatusCode) -> String {
        match status {
            StatusCode::UNAUTHORIZED if self.token.is_none() => {
                "\n  this overwatch has an api.token: give it with --token or OPENGSLB_TOKEN".into()
            }
            StatusCode::UNAUTHORIZED => {
                "\n  the token given is not the overwatch's api.token".into()
            }
            StatusCode::FORBIDDEN => {
                "\n  this machine's address is not in the overwatch's api.allowed_networks".into()
            }
            _ => String::new(),
        }
    }
}

/// The API's `{error, message}`.
fn error_body(v: &Value) -> Option<(String, String)> {
    let code = v.get("error")?.as_str()?;
    let message = v.get("message")?.as_str()?;
    Some((code.to_owned(), message.to_owned()))
}
