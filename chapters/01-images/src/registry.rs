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

use crate::auth::{self, parse_challenge, Credentials};
use crate::digest::Digest;
use crate::error::{Error, Result};
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

    /// Plain HTTP is only for this machine and registries named insecure.
    pub fn is_insecure(&self, host: &str) -> bool {
        let name = host_without_port(host);
        name == "localhost"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
            || name == "::1"
            || self.insecure.iter().any(|i| i == host || i == name)
    }
}

fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.split(':').next().unwrap_or(host)
}

/// Attempts for one request when the network or server fails transiently.
const ATTEMPTS: u32 = 4;
/// Manifests and configs are small; refuse anything absurd.
pub const MAX_DOCUMENT_SIZE: u64 = 4 << 20;

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
}
// ANCHOR_END: client

impl Registry {
    /// Connects to the repository of `reference`: chooses the endpoint and
    /// scheme, loads stored credentials, and pings `/v2/`.
    pub fn connect(reference: &Reference, options: &RegistryOptions) -> Result<Registry> {
        // `registry` names whose credentials apply: a mirror gets its own,
        // never the user's Docker Hub login.
        let (base, registry) = match (&options.mirror, reference.domain == DOCKER_HUB) {
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
                (format!("{scheme}://{host}"), reference.domain.clone())
            }
        };
        let registry = Registry::new(base, &registry, &reference.path)?;
        registry.ping()?;
        Ok(registry)
    }

    /// A client for `repository` at `base` (no request is made yet).
    pub fn new(base: String, registry: &str, repository: &str) -> Result<Registry> {
        let config = ureq::Agent::config_builder()
            // We look at every status ourselves: 401 starts the auth dance,
            // 404 becomes "manifest unknown", 5xx and 429 are retried.
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("crabbox/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Registry {
            agent: config.new_agent(),
            base,
            registry: registry.to_string(),
            repository: repository.to_string(),
            credentials: auth::stored_credentials(registry)?,
            authorization: Mutex::new(None),
        })
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

    // ANCHOR: ping
    /// `GET /v2/`: is this a v2 registry, and how does it want us to log in?
    /// A 401 here is normal: it carries the challenge, which we answer now
    /// so the requests that follow are authorized from the start.
    pub fn ping(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let response = self.send_once("GET", &url, None).map_err(|e| e.error)?;
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

    /// Fetches the manifest (or index) named by a tag or digest.
    pub fn get_manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let mut response = self.get(&url, Some(&MANIFEST_ACCEPT.join(", ")))?;
        self.check_status(
            &mut response,
            &format!("{}:{reference}", self.repository),
            "manifest",
        )?;
        let media_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT_SIZE)
            .read_to_vec()
            .map_err(|e| self.transport_error(&url, e))?;
        let digest = Digest::of(&bytes);
        if reference.starts_with("sha256:") && digest.as_str() != reference {
            return Err(Error::new(format!(
                "digest mismatch: asked {} for {reference} and got content with digest {digest} — nothing stored",
                self.registry
            )));
        }
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Opens a blob for streaming. The caller verifies the digest while it
    /// reads (see `store::Store::write_blob`).
    pub fn open_blob(&self, digest: &Digest) -> Result<(impl Read + 'static, Option<u64>)> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let mut response = self.get(&url, None)?;
        self.check_status(
            &mut response,
            &format!("{}@{digest}", self.repository),
            "blob",
        )?;
        let length = response.body().content_length();
        Ok((response.into_body().into_reader(), length))
    }

    /// Reads a small blob (an image config) whole, verifying its digest.
    pub fn get_small_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let (reader, _) = self.open_blob(digest)?;
        let mut bytes = Vec::new();
        reader
            .take(MAX_DOCUMENT_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::new(format!("reading blob {digest} from {}: {e}", self.base)))?;
        let got = Digest::of(&bytes);
        if &got != digest || bytes.len() as u64 > MAX_DOCUMENT_SIZE {
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
        let mut answered_challenge = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= ATTEMPTS;
            match self.send_once("GET", url, accept) {
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
    fn send_once(
        &self,
        method: &str,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Response<Body>, SendError> {
        let authorization = self.authorization.lock().expect("lock poisoned").clone();
        if explain::enabled() {
            let mut cmd = String::from("curl -sS");
            if method != "GET" {
                cmd.push_str(&format!(" -X {method}"));
            }
            if let Some(accept) = accept {
                cmd.push_str(&format!(
                    " -H {}",
                    shell_quote(&format!("Accept: {accept}"))
                ));
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
            cmd.push_str(&format!(" {}", shell_quote(url)));
            explain::step(&format!("{method} {url}"), Some(&cmd));
        }
        let mut request = http::Request::builder().method(method).uri(url);
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        if let Some(value) = &authorization {
            request = request.header("Authorization", value);
        }
        let request = request.body(()).map_err(|e| SendError {
            error: Error::new(format!("invalid request URL {url}: {e}")),
            retryable: false,
        })?;
        self.agent.run(request).map_err(|e| SendError {
            retryable: is_transient(&e),
            error: self.transport_error(url, e),
        })
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
            return Err(self.denied());
        };
        let value = match challenge.scheme.as_str() {
            "basic" => match &self.credentials {
                Some(c) => c.basic_header(),
                None => return Err(self.login_needed()),
            },
            "bearer" => {
                let realm = challenge.params.get("realm").ok_or_else(|| self.denied())?;
                // The /v2/ ping's challenge names no scope: ask for what we
                // will do next, pulling this repository (none for `login`).
                let scope = challenge.params.get("scope").cloned().or_else(|| {
                    (!self.repository.is_empty())
                        .then(|| format!("repository:{}:pull", self.repository))
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
        let mut response = request.call().map_err(|e| self.transport_error(url, e))?;
        match response.status().as_u16() {
            200 => {}
            401 | 403 => return Err(self.denied()),
            status => {
                return Err(Error::new(format!(
                    "the auth server {url} answered HTTP {status}"
                )))
            }
        }
        let answer: serde_json::Value = response
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT_SIZE)
            .read_json()
            .map_err(|e| Error::new(format!("the auth server {url} sent no JSON token: {e}")))?;
        answer
            .get("token")
            .or_else(|| answer.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| Error::new(format!("the auth server {url} sent no token")))
    }

    /// Turns a registry's error status into a message that says what to do.
    fn check_status(&self, response: &mut Response<Body>, what: &str, kind: &str) -> Result<()> {
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        // Registries explain errors as {"errors":[{"code":…,"message":…}]}.
        let body: serde_json::Value = response
            .body_mut()
            .with_config()
            .limit(64 << 10)
            .read_json()
            .unwrap_or(serde_json::Value::Null);
        let code = body["errors"][0]["code"].as_str().unwrap_or("").to_string();
        Err(match (status, code.as_str()) {
            (404, "NAME_UNKNOWN") => Error::new(format!(
                "repository unknown: {} has no repository {} — check the name",
                self.registry, self.repository
            )),
            (404, _) => Error::new(format!("{kind} unknown: {what} — check the name and tag")),
            (401, _) if self.credentials.is_some() => Error::new(format!(
                "authentication refused by {} for {} — check your login (login {})",
                self.registry, self.repository, self.registry
            )),
            (401, _) | (403, _) => self.denied(),
            (429, _) => Error::new(format!(
                "{} is rate-limiting pulls (HTTP 429) — wait, or log in",
                self.registry
            )),
            _ => Error::new(format!(
                "{} answered HTTP {status} {code} for {what}",
                self.registry
            )),
        })
    }

    fn denied(&self) -> Error {
        Error::new(format!(
            "pull access denied for {}: the repository does not exist or needs a login (login {})",
            self.repository, self.registry
        ))
    }

    fn login_needed(&self) -> Error {
        Error::new(format!(
            "{} requires a login — run: login {}",
            self.registry, self.registry
        ))
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
            _ => " — is the registry running and reachable?".to_string(),
        };
        Error::new(format!("cannot reach {url}: {e}{hint}"))
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
    fn encodes_a_scope() {
        assert_eq!(
            percent_encode("repository:library/alpine:pull"),
            "repository%3Alibrary%2Falpine%3Apull"
        );
    }
}
