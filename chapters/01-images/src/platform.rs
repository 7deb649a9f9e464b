//! Platforms: one image name, several builds (amd64, arm64, …).
//!
//! A multi-platform image is an **index** whose entries each carry a
//! platform (`os`, `architecture`, optional `variant`). A client picks the
//! entry that matches the machine it runs on, as `docker pull` does, or the
//! one asked for with `--platform linux/arm64`.

use crate::error::{Error, Result};
use crate::manifest::Descriptor;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// The platform of this machine, in the Go names images use
    /// (`amd64`, not `x86_64`).
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
            os_version: None,
        }
    }

    /// Parses `os/arch[/variant]`, as `--platform` takes it.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || {
            Error::new(format!(
                "invalid platform {s:?}: expected os/arch[/variant], e.g. linux/arm64"
            ))
        };
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        let mut architecture = parts[1].to_lowercase();
        // The same aliases docker accepts.
        if architecture == "x86_64" || architecture == "x86-64" {
            architecture = "amd64".into();
        } else if architecture == "aarch64" {
            architecture = "arm64".into();
        }
        Ok(Platform {
            os: parts[0].to_lowercase(),
            architecture,
            variant: parts.get(2).map(|v| v.to_lowercase()),
            os_version: None,
        })
    }

    /// Does an index entry's platform serve a machine of this platform?
    /// arm64 images usually leave out the variant, which then means v8.
    pub fn matches(&self, candidate: &Platform) -> bool {
        let normal_variant = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(str::to_string),
        };
        self.os == candidate.os
            && self.architecture == candidate.architecture
            && (self.variant.is_none() || normal_variant(self) == normal_variant(candidate))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

// ANCHOR: choose
/// Picks the index entry for `wanted`, or says which platforms exist.
pub fn choose<'a>(entries: &'a [Descriptor], wanted: &Platform) -> Result<&'a Descriptor> {
    let found = entries
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| wanted.matches(p)));
    found.ok_or_else(|| {
        let available: Vec<String> = entries
            .iter()
            .filter_map(|d| d.platform.as_ref())
            // Attestation manifests are marked unknown/unknown: not platforms.
            .filter(|p| p.os != "unknown")
            .map(|p| p.to_string())
            .collect();
        Error::new(format!(
            "no image for platform {wanted} in this index; it has: {} — pick one with --platform",
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        ))
    })
}
// ANCHOR_END: choose

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_without_variant_means_v8() {
        let wanted = Platform::parse("linux/arm64/v8").unwrap();
        let entry = Platform::parse("linux/arm64").unwrap();
        assert!(wanted.matches(&entry));
        assert!(!Platform::parse("linux/amd64").unwrap().matches(&entry));
        assert!(Platform::parse("linux/arm64")
            .unwrap()
            .matches(&Platform::parse("linux/arm64/v8").unwrap()));
        assert!(Platform::parse("linux").is_err());
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().architecture,
            "amd64"
        );
    }
}
