//! Who may pull: registry credentials and the challenges that ask for them.
//!
//! A registry says "who are you?" by answering `401 Unauthorized` with a
//! `WWW-Authenticate` header, the **challenge**. Two kinds matter:
//!
//! * `Basic realm="…"`: send `Authorization: Basic base64(user:password)`
//!   on every request (private registries with an htpasswd file).
//! * `Bearer realm="https://auth.docker.io/token",service="…",scope="…"`:
//!   go to the realm, get a short-lived **token** for exactly that scope
//!   (`repository:library/alpine:pull`), and send
//!   `Authorization: Bearer <token>`. Docker Hub does this even for
//!   anonymous pulls of public images.
//!
//! `login` stores credentials where docker keeps them, in
//! `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`), as
//! `{"auths": {"host": {"auth": "base64(user:password)"}}}`, mode 0600.

use crate::durable::write_atomically_with_mode;
use crate::error::{Error, IoContext, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A user name and password (or access token) for one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    /// The value of an `Authorization: Basic …` header.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            base64_encode(format!("{}:{}", self.username, self.password).as_bytes())
        )
    }
}

/// Docker Hub's credentials live under this historical key.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// Where docker keeps its client config (and so its logins).
pub fn config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".docker").join("config.json")
}

/// The key a registry's credentials are stored under.
pub fn auth_key(registry: &str) -> String {
    if registry == crate::reference::DOCKER_HUB || registry == crate::reference::DOCKER_HUB_API_HOST
    {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// `https://host/v1/` → `host`: config files written by other tools use
/// URLs as keys, so compare hosts.
fn key_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn read_config() -> Result<serde_json::Value> {
    let path = config_path();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(format!(
                "{} is not valid JSON ({e}) — fix or remove it",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(e) => Err(crate::error::io_error("reading", &path, e)),
    }
}

/// The stored credentials for `registry`, if `login` saved some.
pub fn stored_credentials(registry: &str) -> Result<Option<Credentials>> {
    let config = read_config()?;
    let want = key_host(&auth_key(registry)).to_string();
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    for (key, entry) in auths {
        if key_host(key) != want {
            continue;
        }
        let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()) else {
            continue;
        };
        let decoded = base64_decode(encoded)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                Error::new(format!(
                    "the stored login for {key} is not valid base64 — log in again"
                ))
            })?;
        if let Some((username, password)) = decoded.split_once(':') {
            return Ok(Some(Credentials {
                username: username.into(),
                password: password.into(),
            }));
        }
    }
    Ok(None)
}

/// Saves (or, with `None`, removes) the credentials for `registry`, keeping
/// every other key of the file as it was. Returns whether anything changed.
pub fn store_credentials(registry: &str, credentials: Option<&Credentials>) -> Result<bool> {
    let path = config_path();
    let mut config = read_config()?;
    if !config.is_object() {
        config = serde_json::json!({});
    }
    let key = auth_key(registry);
    let auths = config
        .as_object_mut()
        .expect("checked above")
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}));
    let Some(auths) = auths.as_object_mut() else {
        return Err(Error::new(format!(
            "{}: \"auths\" is not an object — fix or remove it",
            path.display()
        )));
    };
    let changed = match credentials {
        Some(c) => {
            let auth = base64_encode(format!("{}:{}", c.username, c.password).as_bytes());
            auths.insert(key, serde_json::json!({ "auth": auth }));
            true
        }
        None => {
            let host = key_host(&key).to_string();
            let before = auths.len();
            auths.retain(|k, _| key_host(k) != host);
            auths.len() != before
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).context("creating", dir)?;
    }
    let mut text = serde_json::to_string_pretty(&config).expect("JSON values always serialize");
    text.push('\n');
    write_atomically_with_mode(&path, text.as_bytes(), 0o600)?;
    Ok(changed)
}

// ANCHOR: challenge
/// A parsed `WWW-Authenticate` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lowercased).
    pub scheme: String,
    /// realm, service, scope…
    pub params: BTreeMap<String, String>,
}

/// Parses `Bearer realm="https://auth.docker.io/token",service="…",scope="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_lowercase();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            // A quoted value may contain commas (a scope listing two actions).
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(',').map_or((after, ""), |(v, a)| (v, a))
        };
        params.insert(key, value.to_string());
        rest = after.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_lowercase(),
        params,
    })
}
// ANCHOR_END: challenge

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (what HTTP Basic auth and docker's config use).
pub fn base64_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` if it is not base64.
pub fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in input.trim_end_matches('=').bytes() {
        let v = BASE64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hubs_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/alpine:pull");
        let c = parse_challenge(r#"Bearer realm="r",scope="repository:a:pull,push""#).unwrap();
        assert_eq!(c.params["scope"], "repository:a:pull,push");
        assert_eq!(
            parse_challenge(r#"Basic realm="basic-realm""#)
                .unwrap()
                .scheme,
            "basic"
        );
    }

    #[test]
    fn base64_round_trips() {
        for s in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "user:pässword",
        ] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert!(base64_decode("not base64!").is_none());
    }
}
