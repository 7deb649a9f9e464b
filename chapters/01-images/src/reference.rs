//! Image references: what `busybox`, `alpine:3.20` or
//! `localhost:5000/team/app@sha256:…` really name.
//!
//! A reference is the address of an image: **which registry** (domain),
//! **which repository** there (path), and **which version** (a tag, which can
//! move, or a digest, which cannot). Docker lets you leave most of it out and
//! fills in the rest with a few rules, which this module follows exactly as
//! Docker's own `distribution/reference` does:
//!
//! * no domain means Docker Hub, `docker.io`; `index.docker.io` is the same;
//! * the first path component is a domain only if it is `localhost`, or
//!   contains a `.` or a `:`, or has an uppercase letter;
//! * on Docker Hub a one-word name is an *official image*, under `library/`;
//! * no tag means `latest`; a digest, when given, wins over the tag.

use crate::digest::Digest;
use crate::error::{Error, Result};
use std::fmt;

/// Docker Hub's name in references, and the host that really serves its API.
pub const DOCKER_HUB: &str = "docker.io";
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const MAX_NAME_LENGTH: usize = 255;

/// A fully normalized image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Registry host, with port if any: `docker.io`, `localhost:5000`.
    pub domain: String,
    /// Repository path inside the registry: `library/busybox`, `team/app`.
    pub path: String,
    /// Tag, if the reference named one (or `latest` when it named neither).
    pub tag: Option<String>,
    /// Digest, if the reference pinned one. Pulls use it before the tag.
    pub digest: Option<Digest>,
}

impl Reference {
    // ANCHOR: parse
    /// Parses a reference as `docker pull` does, filling in the defaults.
    pub fn parse(input: &str) -> Result<Reference> {
        let invalid = |why: &str| Error::new(format!("invalid reference {input:?}: {why}"));
        if input.is_empty() {
            return Err(invalid("it is empty"));
        }
        if input.len() == 64 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                "a bare 64-hex string is an image ID, not a reference to pull",
            ));
        }

        // 1. "@sha256:…" at the end pins the exact content.
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(Digest::parse(d).map_err(|e| invalid(e.message()))?),
            ),
            None => (input, None),
        };

        // 2. ":tag" is a colon after the last slash (a colon before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !valid_tag(tag) {
                    return Err(invalid(
                        "a tag is 1 to 128 of [A-Za-z0-9_.-] and cannot start with . or -",
                    ));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };

        // 3. Is the first component a registry host?
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder)) if looks_like_domain(first) => {
                (first.to_string(), remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let domain = if domain == LEGACY_DOCKER_HUB {
            DOCKER_HUB.to_string()
        } else {
            domain
        };
        if !valid_domain(&domain) {
            return Err(invalid("the registry host is not a valid host[:port]"));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("repository names must be lowercase"));
        }

        // 4. Official images live under library/ on Docker Hub.
        let path = if domain == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if !path.split('/').all(valid_path_component) {
            return Err(invalid(
                "each part of a repository name is lowercase letters and digits, \
                 joined by '.', '_', '__' or dashes",
            ));
        }
        if domain.len() + 1 + path.len() > MAX_NAME_LENGTH {
            return Err(invalid("the repository name is longer than 255 characters"));
        }

        // 5. No tag and no digest means :latest.
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }
    // ANCHOR_END: parse

    /// `domain/path`, the repository without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.as_str(),
            (None, Some(t)) => t,
            (None, None) => "latest",
        }
    }

    /// The host whose `/v2/` API serves this repository. Docker Hub's name
    /// in references (`docker.io`) is not the host that answers the API.
    pub fn api_host(&self) -> &str {
        if self.domain == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.domain
        }
    }

    /// The name an image is stored under: `domain/path:tag`, or
    /// `domain/path@digest` when a digest was given (it is what was pulled).
    pub fn store_name(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("{}@{d}", self.repository()),
            (None, Some(t)) => format!("{}:{t}", self.repository()),
            (None, None) => format!("{}:latest", self.repository()),
        }
    }

    /// The short form docker prints: `busybox` for `docker.io/library/busybox`,
    /// `user/app` for `docker.io/user/app`, everything else unchanged.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DOCKER_HUB {
            self.path
                .strip_prefix("library/")
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.repository()
        }
    }

    /// `busybox:latest`, as docker names an image in messages.
    pub fn familiar(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), None) => format!("{}:{t}", self.familiar_repository()),
            (_, Some(d)) => format!("{}@{d}", self.familiar_repository()),
            (None, None) => self.familiar_repository(),
        }
    }
}

impl fmt::Display for Reference {
    /// The full normalized form, e.g. `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// The rule that decides whether `a` in `a/b` is a registry or a namespace.
fn looks_like_domain(first: &str) -> bool {
    first == "localhost"
        || first.contains('.')
        || first.contains(':')
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match bytes.next() {
        Some(first) if word(first) => {}
        _ => return false,
    }
    tag.len() <= 128 && bytes.all(|b| word(b) || b == b'.' || b == b'-')
}

/// `host[:port]` where host is dot-separated labels or a bracketed IPv6.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(inner) = domain.strip_prefix('[') {
        match inner.split_once(']') {
            Some((ip, rest)) => {
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                (None, rest.strip_prefix(':'))
            }
            None => return false,
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    match host {
        None => true,
        Some(host) => {
            !host.is_empty()
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        }
    }
}

/// A path component: lowercase alphanumerics separated by `.`, `_`, `__`
/// or one or more `-`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A run of separator characters: must be ".", "_", "__" or "-"+.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// Valid references and their full normalized form.
    #[test]
    fn normalizes_like_docker() {
        let d = D;
        let cases: Vec<(String, String)> = vec![
            ("busybox".into(), "docker.io/library/busybox:latest".into()),
            (
                "busybox:1.36".into(),
                "docker.io/library/busybox:1.36".into(),
            ),
            (
                "library/busybox".into(),
                "docker.io/library/busybox:latest".into(),
            ),
            (
                "docker.io/busybox".into(),
                "docker.io/library/busybox:latest".into(),
            ),
            (
                "index.docker.io/busybox".into(),
                "docker.io/library/busybox:latest".into(),
            ),
            (
                "index.docker.io/library/alpine:3.20".into(),
                "docker.io/library/alpine:3.20".into(),
            ),
            ("user/app".into(), "docker.io/user/app:latest".into()),
            ("user/app:v1.2".into(), "docker.io/user/app:v1.2".into()),
            (
                "docker.io/user/app:v1".into(),
                "docker.io/user/app:v1".into(),
            ),
            ("localhost/app".into(), "localhost/app:latest".into()),
            (
                "localhost:5000/app".into(),
                "localhost:5000/app:latest".into(),
            ),
            (
                "localhost:5000/team/app:tag".into(),
                "localhost:5000/team/app:tag".into(),
            ),
            (
                "127.0.0.1:5000/busybox".into(),
                "127.0.0.1:5000/busybox:latest".into(),
            ),
            (
                "quay.io/podman/hello".into(),
                "quay.io/podman/hello:latest".into(),
            ),
            ("ghcr.io/a/b/c/d:1".into(), "ghcr.io/a/b/c/d:1".into()),
            ("registry:5000/x".into(), "registry:5000/x:latest".into()),
            ("Registry/x".into(), "Registry/x:latest".into()),
            ("[::1]:5000/app".into(), "[::1]:5000/app:latest".into()),
            (
                "my-registry.example.com:443/a_b/c.d/e__f".into(),
                "my-registry.example.com:443/a_b/c.d/e__f:latest".into(),
            ),
            ("a---b/c".into(), "docker.io/a---b/c:latest".into()),
            (
                "busybox:_tag".into(),
                "docker.io/library/busybox:_tag".into(),
            ),
            (
                "busybox:Tag.With-Dash_1".into(),
                "docker.io/library/busybox:Tag.With-Dash_1".into(),
            ),
            (
                format!("busybox@{d}"),
                format!("docker.io/library/busybox@{d}"),
            ),
            (
                format!("busybox:1.36@{d}"),
                format!("docker.io/library/busybox:1.36@{d}"),
            ),
            (
                format!("localhost:5000/app:v1@{d}"),
                format!("localhost:5000/app:v1@{d}"),
            ),
            (
                "a".repeat(200),
                format!("docker.io/library/{}:latest", "a".repeat(200)),
            ),
        ];
        for (input, want) in cases {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), want, "normalizing {input}");
        }
    }

    /// Invalid references, each with the reason it must be refused.
    #[test]
    fn rejects_invalid_references() {
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "empty"),
            ("Busybox".into(), "uppercase in a one-component name"),
            ("docker.io/Library/busybox".into(), "uppercase in the path"),
            ("user/App".into(), "uppercase in the last component"),
            ("busybox:".into(), "empty tag"),
            ("busybox:.tag".into(), "tag starting with a dot"),
            ("busybox:-tag".into(), "tag starting with a dash"),
            (
                format!("busybox:{}", "t".repeat(129)),
                "tag longer than 128",
            ),
            ("busybox@sha256:abc".into(), "short digest"),
            (
                "busybox@md5:d41d8cd98f00b204e9800998ecf8427e".into(),
                "unknown algorithm",
            ),
            ("busybox@".into(), "empty digest"),
            ("bu sy".into(), "space"),
            ("busybox/".into(), "trailing slash"),
            ("/busybox".into(), "leading slash"),
            ("a//b".into(), "empty component"),
            ("-busybox".into(), "component starting with a dash"),
            ("busybox-".into(), "component ending with a dash"),
            ("a...b".into(), "three dots"),
            ("a___b".into(), "three underscores"),
            ("localhost:port/x".into(), "non-numeric port"),
            ("-bad.host/x".into(), "host label starting with a dash"),
            ("[::zz]:5000/x".into(), "bad IPv6"),
            ("a".repeat(260), "name longer than 255"),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
                "an image ID",
            ),
        ];
        for (input, why) in cases {
            assert!(
                Reference::parse(&input).is_err(),
                "{input:?} should be refused ({why})"
            );
        }
    }

    #[test]
    fn digest_wins_over_tag_and_api_host_is_docker_hubs() {
        let r = Reference::parse(&format!("busybox:1.36@{D}")).unwrap();
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.store_name(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.familiar(), format!("busybox@{D}"));
        let r = Reference::parse("localhost:5000/app").unwrap();
        assert_eq!(r.api_host(), "localhost:5000");
        assert_eq!(r.manifest_reference(), "latest");
        assert_eq!(r.familiar(), "localhost:5000/app:latest");
        assert_eq!(
            Reference::parse("user/app").unwrap().familiar(),
            "user/app:latest"
        );
    }

    /// Docker keeps a registry host as it was typed in the canonical form
    /// (distribution/reference does not lower-case it); what must not
    /// depend on case is how the host is reached (see
    /// `RegistryOptions::is_insecure`).
    #[test]
    fn an_uppercase_registry_host_is_a_host() {
        let r = Reference::parse("LOCALHOST:5000/app").unwrap();
        assert_eq!(r.domain, "LOCALHOST:5000");
        assert_eq!(r.path, "app");
        assert_eq!(r.to_string(), "LOCALHOST:5000/app:latest");
        let r = Reference::parse("LOCALHOST/app").unwrap();
        assert_eq!(r.domain, "LOCALHOST");
    }

    #[test]
    fn error_names_the_reference_and_the_rule() {
        let e = Reference::parse("Alpine").unwrap_err();
        assert_eq!(
            e.message(),
            "invalid reference \"Alpine\": repository names must be lowercase"
        );
    }
}
