//! A client for the registry HTTP API v2 (the OCI distribution spec).
//!
//! Pulling an image is a handful of plain HTTP requests:
//!
//! ```text
//! GET /v2/                                 "do you speak v2? who are you?"
//! GET /v2/<repository>/manifests/<tag>     the manifest (or index)
//! GET /v2/<repository>/blobs/<digest>      the config, then each layer
//! ```
//!
//! What makes a real client is everything around them: picking HTTPS or
//! plain HTTP, answering the auth challenge (anonymous tokens for Docker Hub,
//! Basic for a private registry), asking for the right media types, and
//! retrying when the network or the server hiccups. Each is here.
//!
//! Publishing an image (chapter 5's `push`) speaks the same API the other
//! way round, with `HEAD`, `POST`, `PUT` and `PATCH`. For it, this client is
//! widened in three generic ways, none of which changes a pull:
//!
//! * [`Access`]: a client made with [`Registry::connect_with_access`] and
//!   [`Access::Push`] asks the auth server for a token scoped
//!   `repository:NAME:pull,push` instead of `…:pull`, never goes through
//!   a mirror (a pull-through cache takes no uploads), and says "push
//!   access denied" when refused;
//! * [`Registry::request`] and [`Registry::request_once`]: any method,
//!   with extra headers and a [`Payload`], authorized, narrated as curl,
//!   and (for the first) retried as every GET is;
//! * [`Registry::check_status`] is public, so those callers turn a
//!   registry's error into the same one-line messages as a pull.

use crate::auth::{self, parse_challenge, Credentials};
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::explain::{self, shell_quote};
use crate::manifest::MANIFEST_ACCEPT;
use crate::reference::{Reference, DOCKER_HUB};
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;
use ureq::http::{self, Response};
use ureq::Body;

/// How to reach registries: which ones speak plain HTTP, and whether a
/// mirror serves Docker Hub's images.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Registries (`host` or `host:port`) to reach over plain HTTP.
    pub insecure: Vec<String>,
    /// A registry that serves docker.io's repositories (a pull-through cache),
    /// as `http://host:port` or `https://host`.
    pub mirror: Option<String>,
}

impl RegistryOptions {
    /// Options from the environment (`CRABBOX_INSECURE_REGISTRIES=a,b`,
    /// `CRABBOX_REGISTRY_MIRROR=URL`) plus any given on the command line.
    pub fn from_env(mut insecure: Vec<String>) -> RegistryOptions {
        if let Ok(list) = std::env::var("CRABBOX_INSECURE_REGISTRIES") {
            insecure.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        let mirror = std::env::var("CRABBOX_REGISTRY_MIRROR")
            .ok()
            .filter(|m| !m.is_empty());
        RegistryOptions { insecure, mirror }
    }

    // ANCHOR: is_insecure
    /// Plain HTTP is only for this machine and registries named insecure.
    ///
    /// Host names are case-insensitive (DNS says so): `LOCALHOST:5000` is
    /// this machine as much as `localhost:5000` is. Comparing them as typed
    /// would send a learner's `LOCALHOST:5000/app` over HTTPS to a registry
    /// that speaks plain HTTP, and a `--insecure-registry Reg.Lan` would not
    /// match `reg.lan`.
    pub fn is_insecure(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let name = host_without_port(&host);
        name == "localhost"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
            || name == "::1"
            || self.insecure.iter().any(|i| {
                let i = i.to_ascii_lowercase();
                i == host || i == name
            })
    }
    // ANCHOR_END: is_insecure
}

fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.split(':').next().unwrap_or(host)
}

/// Attempts for one request when the network or server fails transiently.
const ATTEMPTS: u32 = 4;
/// Manifests and configs are small; refuse anything absurd. (Docker and
/// containerd refuse manifests over 4 MiB too.) Without a bound, a hostile
/// registry could make us hold gigabytes of "manifest" in memory.
pub const MAX_DOCUMENT_SIZE: u64 = 4 << 20;

// ANCHOR: limits
/// How slow a registry may be before we give up on it.
///
/// A timeout on each read only catches a registry that sends *nothing*.
/// A hostile (or broken) one can send one byte a second forever: every read
/// succeeds, no timeout ever fires, and the pull hangs for days while it
/// holds the store's pull lock. So every read from a registry (manifests,
/// blobs, tokens, error bodies) also obeys a minimum rate, measured over
/// windows as long as the idle timeout: curl's `--speed-limit` and
/// `--speed-time`, in other words.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransferLimits {
    /// Nothing received for this long: the transfer is stalled.
    pub idle_timeout: Duration,
    /// Fewer bytes per second than this, over a whole `idle_timeout`
    /// window: the transfer is too slow. 0 turns the rule off.
    pub min_rate: u64,
}

impl Default for TransferLimits {
    /// 30 s of silence, or under 1 KiB/s for 30 s: a real registry on a
    /// poor link stays well above both.
    fn default() -> Self {
        TransferLimits {
            idle_timeout: Duration::from_secs(30),
            min_rate: 1024,
        }
    }
}

impl TransferLimits {
    /// The defaults, changed by `CRABBOX_REGISTRY_IDLE_TIMEOUT` (seconds,
    /// fractions allowed) and `CRABBOX_REGISTRY_MIN_RATE` (bytes per second).
    pub fn from_env() -> Result<TransferLimits> {
        let mut limits = TransferLimits::default();
        if let Some(value) = env_value("CRABBOX_REGISTRY_IDLE_TIMEOUT") {
            limits.idle_timeout = value
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e6)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    Error::new(format!(
                        "CRABBOX_REGISTRY_IDLE_TIMEOUT={value:?} is not a number of seconds above 0"
                    ))
                })?;
        }
        if let Some(value) = env_value("CRABBOX_REGISTRY_MIN_RATE") {
            limits.min_rate = value.parse::<u64>().map_err(|_| {
                Error::new(format!(
                    "CRABBOX_REGISTRY_MIN_RATE={value:?} is not a number of bytes per second (0 turns it off)"
                ))
            })?;
        }
        Ok(limits)
    }
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `30 s`, `0.5 s`: a duration as a person reads it.
fn seconds(d: Duration) -> String {
    format!("{} s", (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// Wraps every body we read from a registry: turns "nothing for a while"
/// and "far too little for a while" into one clear error.
pub struct GuardedReader<R> {
    inner: R,
    limits: TransferLimits,
    /// Who is slow, for the message: "registry" or "auth server".
    who: &'static str,
    window_start: std::time::Instant,
    window_bytes: u64,
}

impl<R: Read> GuardedReader<R> {
    pub fn new(inner: R, limits: TransferLimits, who: &'static str) -> GuardedReader<R> {
        GuardedReader {
            inner,
            limits,
            who,
            window_start: std::time::Instant::now(),
            window_bytes: 0,
        }
    }
}

impl<R: Read> Read for GuardedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if is_timeout(&e) => {
                return Err(too_slow(format!(
                    "{} sent nothing for {}: stalled, giving up",
                    self.who,
                    seconds(self.limits.idle_timeout)
                )))
            }
            Err(e) => return Err(e),
        };
        self.window_bytes += n as u64;
        let elapsed = self.window_start.elapsed();
        if n > 0 && elapsed >= self.limits.idle_timeout {
            // At least `min_rate` bytes per second over the window that just
            // ended, or we stop listening.
            let wanted = self.limits.min_rate as f64 * elapsed.as_secs_f64();
            if (self.window_bytes as f64) < wanted {
                return Err(too_slow(format!(
                    "{} sent {} bytes in {}: too slow (under {} bytes/s), giving up",
                    self.who,
                    self.window_bytes,
                    seconds(elapsed),
                    self.limits.min_rate
                )));
            }
            self.window_start = std::time::Instant::now();
            self.window_bytes = 0;
        }
        Ok(n)
    }
}
// ANCHOR_END: limits

/// The I/O error a guarded read fails with: `TimedOut`, so that callers
/// know not to retry (a slow registry is slow again on the next attempt,
/// and each retry would give a hostile one another window to hold us).
fn too_slow(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, message)
}

/// Did a read fail because ureq's per-read timeout fired?
fn is_timeout(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_) | ureq::Error::BodyStalled))
}

/// Reads at most `max` bytes of a document; `Ok(None)` when there is more.
fn read_bounded(reader: impl Read, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

// ANCHOR: access
/// What a client asks a registry's auth server for.
///
/// A Bearer token is scoped: `repository:library/busybox:pull` lets its
/// holder read that one repository and nothing else. Pulling asks for
/// `pull`; pushing needs `pull,push` (an upload first asks whether the
/// registry has each blob already, which is a read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Access {
    #[default]
    Pull,
    Push,
}

impl Access {
    /// The actions of the token scope: `repository:NAME:<actions>`.
    pub fn actions(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        }
    }
}
// ANCHOR_END: access

/// The body of a request (`push`'s blob uploads and its manifest), and,
/// for `--explain`, where the curl command that does the same reads it:
/// `@/path/to/blob`, or `@<(tail -c +N FILE | head -c M)` for a part of one.
pub struct Payload<'a> {
    pub bytes: &'a [u8],
    pub shown_as: String,
}

/// A manifest as the registry sent it.
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: Option<String>,
    pub digest: Digest,
}

// ANCHOR: client
/// A connection to one repository of one registry.
pub struct Registry {
    agent: ureq::Agent,
    /// `https://registry-1.docker.io`, `http://127.0.0.1:5000`, or a mirror.
    base: String,
    /// The registry as the user named it (for messages and credentials).
    registry: String,
    repository: String,
    credentials: Option<Credentials>,
    /// The `Authorization` header value once a challenge was answered.
    authorization: Mutex<Option<String>>,
    /// How slow the registry may be (see [`TransferLimits`]).
    limits: TransferLimits,
    /// What tokens are asked for: pull, or pull and push.
    access: Access,
}
// ANCHOR_END: client

impl Registry {
    /// Connects to the repository of `reference` to pull: chooses the
    /// endpoint and scheme, loads stored credentials, and pings `/v2/`.
    pub fn connect(reference: &Reference, options: &RegistryOptions) -> Result<Registry> {
        Registry::connect_with_access(reference, options, Access::Pull)
    }

    /// [`Registry::connect`], for `access`. With [`Access::Push`] the
    /// token asked for at the ping is scoped `pull,push`, and a mirror is
    /// never used: it is a cache to pull docker.io's images through, and
    /// an upload must reach the registry the name points at.
    pub fn connect_with_access(
        reference: &Reference,
        options: &RegistryOptions,
        access: Access,
    ) -> Result<Registry> {
        let mirror = options.mirror.as_ref().filter(|_| access == Access::Pull);
        // `registry` names whose credentials apply: a mirror gets its own,
        // never the user's Docker Hub login.
        let (base, registry) = match (mirror, reference.domain == DOCKER_HUB) {
            (Some(mirror), true) => {
                explain::step(&format!("docker.io is served by the mirror {mirror}"), None);
                let host = mirror
                    .split("://")
                    .nth(1)
                    .unwrap_or(mirror)
                    .split('/')
                    .next()
                    .unwrap_or(mirror);
                (mirror.trim_end_matches('/').to_string(), host.to_string())
            }
            _ => {
                let host = reference.api_host();
                let scheme = if options.is_insecure(host) {
                    "http"
                } else {
                    "https"
                };
                // Host names are case-insensitive: talk to `localhost`
                // whether the user typed it so or `LOCALHOST`.
                let host = host.to_ascii_lowercase();
                (format!("{scheme}://{host}"), reference.domain.clone())
            }
        };
        let registry = Registry::new(base, &registry, &reference.path)?.with_access(access);
        registry.ping()?;
        Ok(registry)
    }

    /// A client for `repository` at `base` (no request is made yet).
    pub fn new(base: String, registry: &str, repository: &str) -> Result<Registry> {
        let limits = TransferLimits::from_env()?;
        let config = ureq::Agent::config_builder()
            // We look at every status ourselves: 401 starts the auth dance,
            // 404 becomes "manifest unknown", 5xx and 429 are retried.
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            // Silence before the headers, or between two reads, is bounded
            // by the idle timeout; a trickle is caught by GuardedReader.
            .timeout_recv_response(Some(limits.idle_timeout))
            .timeout_per_read(Some(limits.idle_timeout))
            .user_agent(concat!("crabbox/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Registry {
            agent: config.new_agent(),
            base,
            registry: registry.to_string(),
            repository: repository.to_string(),
            credentials: auth::stored_credentials(registry)?,
            authorization: Mutex::new(None),
            limits,
            access: Access::Pull,
        })
    }

    /// Asks for tokens for `access` (made with [`Registry::new`], which
    /// asks for pull).
    pub fn with_access(mut self, access: Access) -> Registry {
        self.access = access;
        self
    }

    /// Uses these limits instead of the environment's.
    pub fn with_limits(mut self, limits: TransferLimits) -> Registry {
        self.limits = limits;
        self
    }

    /// A body reader under the slow-registry rules.
    fn guard<R: Read>(&self, reader: R, who: &'static str) -> GuardedReader<R> {
        GuardedReader::new(reader, self.limits, who)
    }

    /// Uses these credentials instead of the stored ones (for `login`).
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> Registry {
        self.credentials = credentials;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The registry as the user named it: `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    // ANCHOR: ping
    /// `GET /v2/`: is this a v2 registry, and how does it want us to log in?
    /// A 401 here is normal: it carries the challenge, which we answer now
    /// so the requests that follow are authorized from the start.
    pub fn ping(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let response = self
            .send_once("GET", &url, &[], None)
            .map_err(|e| e.error)?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            401 => self.answer_challenge(&response),
            404 => Err(Error::new(format!("{url} is not a registry (no /v2/ API)"))),
            status => Err(Error::new(format!(
                "{url} answered HTTP {status} to the API check"
            ))),
        }
    }
    // ANCHOR_END: ping

    // ANCHOR: get_manifest
    /// Fetches the manifest (or index) named by a tag or digest, and checks
    /// that it is what was asked for.
    pub fn get_manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let by_digest = reference.starts_with("sha256:");
        let what = match by_digest {
            true => format!("{}@{reference}", self.repository),
            false => format!("{}:{reference}", self.repository),
        };
        let mut response = self.get(&url, Some(&MANIFEST_ACCEPT.join(", ")))?;
        self.check_status(
            &mut response,
            &format!("{}:{reference}", self.repository),
            "manifest",
        )?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
        };
        let media_type =
            header("content-type").map(|v| v.split(';').next().unwrap_or(&v).trim().to_string());
        let announced = header("docker-content-digest");
        // A manifest is a few kB. Refuse a huge one before reading it when
        // the registry announces its size, and stop reading at the bound
        // when it does not: either way, memory stays bounded.
        let too_big = || {
            Error::new(format!(
                "manifest of {what} is larger than {} MiB: refusing it",
                MAX_DOCUMENT_SIZE >> 20
            ))
        };
        if response
            .body()
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_SIZE)
        {
            return Err(too_big());
        }
        let reader = self.guard(response.into_body().into_reader(), "registry");
        let bytes = read_bounded(reader, MAX_DOCUMENT_SIZE)
            .map_err(|e| read_error(&format!("manifest of {what}"), &url, e))?
            .ok_or_else(too_big)?;
        let digest = Digest::of(&bytes);
        if by_digest && digest.as_str() != reference {
            return Err(Error::new(format!(
                "digest mismatch: asked {} for {reference} and got content with digest {digest} — nothing stored",
                self.registry
            )));
        }
        if !by_digest {
            check_announced_digest(&what, announced.as_deref(), &digest)?;
        }
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }
    // ANCHOR_END: get_manifest

    /// Opens a blob for streaming. The caller verifies the digest while it
    /// reads (see `store::Store::write_blob`); the reader gives up on a
    /// stalled or trickling registry.
    pub fn open_blob(&self, digest: &Digest) -> Result<(impl Read + 'static, Option<u64>)> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let mut response = self.get(&url, None)?;
        self.check_status(
            &mut response,
            &format!("{}@{digest}", self.repository),
            "blob",
        )?;
        let length = response.body().content_length();
        let reader = self.guard(response.into_body().into_reader(), "registry");
        Ok((reader, length))
    }

    /// Reads a small blob (an image config) whole, verifying its digest.
    pub fn get_small_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let (reader, length) = self.open_blob(digest)?;
        let too_big = || {
            Error::new(format!(
                "blob {digest} (an image config) is larger than {} MiB: refusing it",
                MAX_DOCUMENT_SIZE >> 20
            ))
        };
        if length.is_some_and(|n| n > MAX_DOCUMENT_SIZE) {
            return Err(too_big());
        }
        let bytes = read_bounded(reader, MAX_DOCUMENT_SIZE)
            .map_err(|e| read_error(&format!("blob {digest}"), &self.base, e))?
            .ok_or_else(too_big)?;
        let got = Digest::of(&bytes);
        if &got != digest {
            return Err(Error::new(format!(
                "digest mismatch for blob {digest}: the registry sent content with digest {got} — nothing stored"
            )));
        }
        Ok(bytes)
    }

    // ANCHOR: get
    /// A GET with authorization and retries: a 401 is answered once (a token
    /// may have expired), while connection errors, 5xx and 429 are retried
    /// with growing pauses.
    pub fn get(&self, url: &str, accept: Option<&str>) -> Result<Response<Body>> {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("Accept", *a)).collect();
        self.request("GET", url, &headers, None)
    }

    /// Any request, authorized and retried as a GET is (chapter 5's `push`
    /// sends HEAD, POST and PUT this way). Only for requests that are
    /// harmless to send twice: a retried one may be the second copy of a
    /// request whose answer was lost.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        payload: Option<&Payload>,
    ) -> Result<Response<Body>> {
        self.send(method, url, headers, payload, ATTEMPTS)
    }

    /// Like [`Registry::request`], but a failure is final: for a step of a
    /// blob upload (a PATCH of a chunk), which a registry must not receive
    /// twice. A 401 is still answered and the request sent again: a refused
    /// request did nothing.
    pub fn request_once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        payload: Option<&Payload>,
    ) -> Result<Response<Body>> {
        self.send(method, url, headers, payload, 1)
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        payload: Option<&Payload>,
        attempts: u32,
    ) -> Result<Response<Body>> {
        let mut answered_challenge = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= attempts;
            match self.send_once(method, url, headers, payload) {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if status == 401 && !answered_challenge {
                        answered_challenge = true;
                        self.answer_challenge(&response)?;
                        attempt -= 1; // answering a challenge is not a failure
                        continue;
                    }
                    if (status == 429 || status >= 500) && !last {
                        backoff(attempt, &format!("{url} answered HTTP {status}"));
                        continue;
                    }
                    return Ok(response);
                }
                Err(e) if !last && e.retryable => backoff(attempt, &e.error.to_string()),
                Err(e) => return Err(e.error),
            }
        }
    }
    // ANCHOR_END: get

    /// One request, narrated as the `curl` command that does the same.
    ///
    /// The `Authorization` header goes only to this registry's own URLs:
    /// an upload's `Location` may name another host, and a hostile
    /// registry must not be able to collect our password that way.
    fn send_once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        payload: Option<&Payload>,
    ) -> Result<Response<Body>, SendError> {
        let authorization = self
            .authorization
            .lock()
            .expect("lock poisoned")
            .clone()
            .filter(|_| self.is_own_url(url));
        if explain::enabled() {
            let mut cmd = String::from("curl -sS");
            match method {
                "GET" => {}
                // curl -X HEAD would wait for a body that never comes.
                "HEAD" => cmd.push_str(" -I"),
                // -i: show the answer's headers (Location, Docker-Content-Digest).
                _ => cmd.push_str(&format!(" -i -X {method}")),
            }
            for (name, value) in headers {
                cmd.push_str(&format!(" -H {}", shell_quote(&format!("{name}: {value}"))));
            }
            if let Some(value) = &authorization {
                // Never print a secret: show where it would go.
                let shown = if value.starts_with("Bearer") {
                    "Bearer $TOKEN"
                } else {
                    "Basic $(printf %s \"$USER:$PASSWORD\" | base64)"
                };
                cmd.push_str(&format!(" -H \"Authorization: {shown}\""));
            }
            if let Some(payload) = payload {
                cmd.push_str(&format!(" --data-binary {}", payload.shown_as));
            }
            cmd.push_str(&format!(" {}", shell_quote(url)));
            explain::step(&format!("{method} {url}"), Some(&cmd));
        }
        let mut request = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(value) = &authorization {
            request = request.header("Authorization", value);
        }
        let invalid = |e: http::Error| SendError {
            error: Error::new(format!("invalid request {method} {url}: {e}")),
            retryable: false,
        };
        // POST, PUT and PATCH always carry a body, empty or not, so that
        // the registry (or a proxy before it) sees `Content-Length: 0`
        // rather than no length at all.
        let result = match (payload, method) {
            (Some(p), _) => self.agent.run(request.body(p.bytes).map_err(invalid)?),
            (None, "POST" | "PUT" | "PATCH") => {
                self.agent.run(request.body(&[][..]).map_err(invalid)?)
            }
            (None, _) => self.agent.run(request.body(()).map_err(invalid)?),
        };
        result.map_err(|e| SendError {
            retryable: is_transient(&e),
            error: self.transport_error(url, e),
        })
    }

    /// Is `url` on this registry (same scheme, host and port as `base`)?
    fn is_own_url(&self, url: &str) -> bool {
        url.strip_prefix(&self.base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    // ANCHOR: answer_challenge
    /// Reads `WWW-Authenticate` and sets the `Authorization` header that
    /// answers it: Basic with stored credentials, or a Bearer token fetched
    /// from the realm for this repository's pull scope.
    fn answer_challenge(&self, response: &Response<Body>) -> Result<()> {
        let header = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some(challenge) = parse_challenge(header) else {
            return Err(self.denied(&format!("the registry {}", self.registry)));
        };
        let value = match challenge.scheme.as_str() {
            "basic" => match &self.credentials {
                Some(c) => c.basic_header(),
                None => return Err(self.login_needed()),
            },
            "bearer" => {
                let realm = challenge
                    .params
                    .get("realm")
                    .ok_or_else(|| self.denied(&format!("the registry {}", self.registry)))?;
                // The /v2/ ping's challenge names no scope: ask for what we
                // will do next, pulling this repository (or pulling and
                // pushing, see `Access`; nothing for `login`).
                let scope = challenge.params.get("scope").cloned().or_else(|| {
                    (!self.repository.is_empty()).then(|| {
                        format!("repository:{}:{}", self.repository, self.access.actions())
                    })
                });
                let mut query = Vec::new();
                if let Some(scope) = scope {
                    query.push(format!("scope={}", percent_encode(&scope)));
                }
                if let Some(service) = challenge.params.get("service") {
                    query.push(format!("service={}", percent_encode(service)));
                }
                if let Some(c) = &self.credentials {
                    query.push(format!("account={}", percent_encode(&c.username)));
                }
                let separator = if realm.contains('?') { '&' } else { '?' };
                let url = format!("{realm}{separator}{}", query.join("&"));
                format!("Bearer {}", self.fetch_token(&url)?)
            }
            other => {
                return Err(Error::new(format!(
                    "{} asks for {other} authentication, which this engine does not speak",
                    self.registry
                )))
            }
        };
        *self.authorization.lock().expect("lock poisoned") = Some(value);
        Ok(())
    }
    // ANCHOR_END: answer_challenge

    /// `GET realm?scope=…&service=…` → `{"token": "…"}` (or `access_token`).
    /// Anonymous unless we have credentials for this registry.
    fn fetch_token(&self, url: &str) -> Result<String> {
        let mut cmd = String::from("curl -sS");
        if self.credentials.is_some() {
            cmd.push_str(" -u \"$USER:$PASSWORD\"");
        }
        explain::step(
            "ask the auth server for a token for this repository (anonymous unless logged in)",
            Some(&format!("{cmd} {}", shell_quote(url))),
        );
        let mut request = self.agent.get(url);
        if let Some(c) = &self.credentials {
            request = request.header("Authorization", c.basic_header());
        }
        let response = request.call().map_err(|e| self.transport_error(url, e))?;
        match response.status().as_u16() {
            200 => {}
            401 | 403 => return Err(self.denied("the auth server")),
            status => {
                return Err(Error::new(format!(
                    "the auth server {url} answered HTTP {status}"
                )))
            }
        }
        // A token is a few kB: the same bounds as a manifest, and the same
        // slow-server rules (a token server can trickle too).
        let reader = self.guard(response.into_body().into_reader(), "auth server");
        let bytes = read_bounded(reader, MAX_DOCUMENT_SIZE)
            .map_err(|e| read_error("token", url, e))?
            .ok_or_else(|| {
                Error::new(format!(
                    "the auth server {url} sent a token larger than {} MiB: refusing it",
                    MAX_DOCUMENT_SIZE >> 20
                ))
            })?;
        let answer: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::new(format!("the auth server {url} sent no JSON token: {e}")))?;
        answer
            .get("token")
            .or_else(|| answer.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| Error::new(format!("the auth server {url} sent no token")))
    }

    /// Turns a registry's error status into a message that says what to do.
    /// `what` names the object (`app:v1`, `app@sha256:…`) and `kind` what
    /// it is (`manifest`, `blob`), for the "unknown" message.
    pub fn check_status(
        &self,
        response: &mut Response<Body>,
        what: &str,
        kind: &str,
    ) -> Result<()> {
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        // Registries explain errors as {"errors":[{"code":…,"message":…}]}.
        // Read at most 64 kB of it, under the slow-registry rules.
        let reader = self.guard(response.body_mut().as_reader(), "registry");
        let body: serde_json::Value = read_bounded(reader, 64 << 10)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null);
        let code = body["errors"][0]["code"].as_str().unwrap_or("").to_string();
        Err(match (status, code.as_str()) {
            (404, "NAME_UNKNOWN") => Error::new(format!(
                "repository unknown: {} has no repository {} — check the name",
                self.registry, self.repository
            )),
            (404, _) => Error::new(format!("{kind} unknown: {what} — check the name and tag")),
            (401, _) if self.credentials.is_some() => match self.access {
                Access::Pull => Error::new(format!(
                    "authentication refused by {} for {} — check your login (login {})",
                    self.registry, self.repository, self.registry
                )),
                Access::Push => Error::new(format!(
                    "push access denied for {}/{}: the registry {} refused the login of {} — check your login (login {}) or your rights",
                    self.registry,
                    self.repository,
                    self.registry,
                    self.credentials.as_ref().map_or("", |c| c.username.as_str()),
                    self.registry
                )),
            },
            (401, _) | (403, _) => self.denied(&format!("the registry {}", self.registry)),
            (429, _) => Error::new(format!(
                "{} is rate-limiting {} (HTTP 429) — wait, or log in",
                self.registry,
                match self.access {
                    Access::Pull => "pulls",
                    Access::Push => "pushes",
                }
            )),
            (405, _) if self.access == Access::Push => Error::new(format!(
                "{} does not take pushes (HTTP 405 Method Not Allowed): it is read-only or a mirror — push to a registry that accepts uploads",
                self.registry
            )),
            _ => {
                let code = match code.as_str() {
                    "" => String::new(),
                    code => format!(" ({code})"),
                };
                Error::new(format!(
                    "{} answered HTTP {status}{code} for {what}",
                    self.registry
                ))
            }
        })
    }

    /// Refused: `who` ("the auth server", "the registry HOST") said no.
    /// A pull's message is docker's: a registry does not tell strangers
    /// whether a private repository exists. A push's says who refused.
    fn denied(&self, who: &str) -> Error {
        match self.access {
            Access::Pull => Error::new(format!(
                "pull access denied for {}: the repository does not exist or needs a login (login {})",
                self.repository, self.registry
            )),
            Access::Push => Error::new(format!(
                "push access denied for {}/{}: {who} refused — log in first (login {}) or check your rights",
                self.registry, self.repository, self.registry
            )),
        }
    }

    fn login_needed(&self) -> Error {
        match self.access {
            Access::Pull => Error::new(format!(
                "{} requires a login — run: login {}",
                self.registry, self.registry
            )),
            Access::Push => Error::new(format!(
                "push access denied for {}/{}: the registry {} requires a login — log in first (login {})",
                self.registry, self.repository, self.registry, self.registry
            )),
        }
    }

    fn transport_error(&self, url: &str, e: ureq::Error) -> Error {
        let hint = match &e {
            ureq::Error::Tls(_) | ureq::Error::Protocol(_) if url.starts_with("https") => {
                format!(
                    " — if {} speaks plain HTTP, add --insecure-registry {}",
                    self.registry, self.registry
                )
            }
            ureq::Error::HostNotFound => " — check the registry name and your network".to_string(),
            ureq::Error::Timeout(_) => format!(
                " — no answer within {} (CRABBOX_REGISTRY_IDLE_TIMEOUT), giving up",
                seconds(self.limits.idle_timeout)
            ),
            _ => " — is the registry running and reachable?".to_string(),
        };
        Error::new(format!("cannot reach {url}: {e}{hint}"))
    }
}

// ANCHOR: announced_digest
/// When a tag is pulled, the registry names the digest of what it sends in
/// the `Docker-Content-Digest` header. A mirror or a proxy in the middle
/// that serves other content than the registry meant would be caught here:
/// the digest we print, store and let users pin must be that of the bytes
/// we got. (A pull by digest needs no header: the body is checked against
/// the digest we asked for.)
fn check_announced_digest(what: &str, announced: Option<&str>, got: &Digest) -> Result<()> {
    let Some(announced) = announced else {
        return Ok(()); // the header is optional
    };
    if !announced.starts_with("sha256:") {
        return Ok(()); // another algorithm: nothing we can compare
    }
    match Digest::parse(announced) {
        Ok(d) if &d == got => Ok(()),
        _ => Err(Error::new(format!(
            "digest mismatch: the registry says {what} is {announced} (Docker-Content-Digest) \
             but sent a manifest whose digest is {got} — nothing stored"
        ))),
    }
}
// ANCHOR_END: announced_digest

/// One line for a failed read of a body: the slow-registry rules speak for
/// themselves; anything else is a broken connection.
fn read_error(what: &str, url: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::TimedOut {
        Error::new(format!("{what} from {url}: {e}"))
    } else {
        Error::new(format!(
            "reading {what} from {url} broke off: {e} — is the registry running and reachable?"
        ))
        .with_kind(ErrorKind::BrokeOff)
    }
}

struct SendError {
    error: Error,
    retryable: bool,
}

/// Connection failures and timeouts may pass; a bad name or TLS will not.
fn is_transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(_)
            | ureq::Error::BodyStalled
    )
}

/// Waits before a retry: 250 ms, 500 ms, 1 s…
pub fn backoff(attempt: u32, why: &str) {
    let pause = Duration::from_millis(250 << (attempt - 1).min(4));
    explain::step(
        &format!("{why}; retrying in {} ms", pause.as_millis()),
        None,
    );
    std::thread::sleep(pause);
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved set).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_named_registries() {
        let o = RegistryOptions {
            insecure: vec!["registry.lan:5000".into(), "10.0.0.7".into()],
            mirror: None,
        };
        assert!(o.is_insecure("localhost:5000"));
        assert!(o.is_insecure("127.0.0.1:41234"));
        assert!(o.is_insecure("127.8.9.10"));
        assert!(o.is_insecure("[::1]:5000"));
        assert!(o.is_insecure("registry.lan:5000"));
        assert!(o.is_insecure("10.0.0.7:5000"));
        assert!(!o.is_insecure("registry.lan"));
        assert!(!o.is_insecure("registry-1.docker.io"));
        assert!(!o.is_insecure("128.0.0.1:5000"));
    }

    #[test]
    fn host_names_are_case_insensitive() {
        let o = RegistryOptions {
            insecure: vec!["Registry.LAN:5000".into()],
            mirror: None,
        };
        assert!(o.is_insecure("LOCALHOST:5000"));
        assert!(o.is_insecure("LocalHost"));
        assert!(o.is_insecure("registry.lan:5000"));
        assert!(o.is_insecure("REGISTRY.lan:5000"));
        assert!(!o.is_insecure("LOCALHOST.example.com:5000"));
    }

    /// A reader that yields one byte per `pause`, `total` times.
    struct Trickle {
        pause: Duration,
        left: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.left == 0 || buf.is_empty() {
                return Ok(0);
            }
            std::thread::sleep(self.pause);
            self.left -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn a_trickle_is_too_slow_and_a_fast_body_is_fine() {
        let limits = TransferLimits {
            idle_timeout: Duration::from_millis(200),
            min_rate: 1000,
        };
        let trickle = Trickle {
            pause: Duration::from_millis(20),
            left: 1000,
        };
        let started = std::time::Instant::now();
        let err =
            read_bounded(GuardedReader::new(trickle, limits, "registry"), 1 << 20).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        let message = err.to_string();
        assert!(
            message.starts_with("registry sent ")
                && message.ends_with("too slow (under 1000 bytes/s), giving up"),
            "{message}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        // The same trickle with the rule off completes.
        let trickle = Trickle {
            pause: Duration::from_millis(1),
            left: 50,
        };
        let off = TransferLimits {
            min_rate: 0,
            ..limits
        };
        let bytes = read_bounded(GuardedReader::new(trickle, off, "registry"), 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(bytes.len(), 50);
        // A body over the bound is reported as such, not cut silently.
        assert!(read_bounded(&[0u8; 11][..], 10).unwrap().is_none());
        assert_eq!(read_bounded(&[0u8; 10][..], 10).unwrap().unwrap().len(), 10);
    }

    #[test]
    fn announced_digest_must_match_the_body() {
        let body = Digest::of(b"manifest");
        let other = Digest::of(b"another");
        assert!(check_announced_digest("a:b", None, &body).is_ok());
        assert!(check_announced_digest("a:b", Some(body.as_str()), &body).is_ok());
        assert!(check_announced_digest("a:b", Some("sha512:abcd"), &body).is_ok());
        let err = check_announced_digest("a:b", Some(other.as_str()), &body).unwrap_err();
        assert!(
            err.message().contains(other.as_str()) && err.message().contains(body.as_str()),
            "{}",
            err.message()
        );
        assert!(check_announced_digest("a:b", Some("sha256:zz"), &body).is_err());
    }

    #[test]
    fn credentials_go_only_to_the_registrys_own_urls() {
        let r = Registry::new("http://127.0.0.1:5000".into(), "127.0.0.1:5000", "app").unwrap();
        assert!(r.is_own_url("http://127.0.0.1:5000/v2/app/blobs/uploads/u?_state=s"));
        assert!(r.is_own_url("http://127.0.0.1:5000"));
        assert!(!r.is_own_url("http://127.0.0.1:50001/v2/"));
        assert!(!r.is_own_url("http://elsewhere.example/v2/app/blobs/uploads/u"));
        assert!(!r.is_own_url("https://127.0.0.1:5000/v2/"));
    }

    #[test]
    fn a_push_asks_for_pull_and_push() {
        assert_eq!(Access::default(), Access::Pull);
        assert_eq!(Access::Pull.actions(), "pull");
        assert_eq!(Access::Push.actions(), "pull,push");
    }

    #[test]
    fn encodes_a_scope() {
        assert_eq!(
            percent_encode("repository:library/alpine:pull"),
            "repository%3Alibrary%2Falpine%3Apull"
        );
    }
}
