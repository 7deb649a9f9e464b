//! The documents that describe an image: index, manifest, config.
//!
//! A registry serves an image as a small tree of JSON documents and blobs,
//! each one named by its digest:
//!
//! ```text
//! index (optional)   "which manifest for which platform?"
//!   └─ manifest      "this image is this config plus these layers"
//!        ├─ config   "how to run it: Env, Cmd, WorkingDir… and the diff IDs"
//!        └─ layers   tar archives (usually gzip-compressed), applied in order
//! ```
//!
//! Two families of media types describe the same shapes: Docker's
//! (schema 2 manifest and manifest list) and the OCI image spec's
//! (image manifest and image index). We read both and store them as the
//! registry sent them, byte for byte, because their digest is their name.

use crate::digest::Digest;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

// ANCHOR: media_types
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// What we send as `Accept` when asking for a manifest: a registry answers
/// with the best of these it has. Without the list types, a registry would
/// hand a multi-platform image's manifest down-converted, or refuse.
pub const MANIFEST_ACCEPT: &[&str] = &[
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];
// ANCHOR_END: media_types

/// A pointer to a blob: its type, digest and size (plus, in an index, the
/// platform it is for).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<crate::platform::Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

// ANCHOR: manifest
/// An image manifest (OCI or Docker schema 2): one config and the layers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (OCI) or manifest list (Docker): one manifest per platform.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}
// ANCHOR_END: manifest

/// What a manifest document turned out to be.
pub enum ManifestKind {
    Image(Manifest),
    Index(Index),
}

/// Decides what a fetched document is, from the media type the registry
/// announced (Content-Type) or, failing that, the `mediaType` field inside
/// and the shape of the JSON.
pub fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<ManifestKind> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| {
        Error::new(format!(
            "the registry sent a manifest that is not JSON: {e}"
        ))
    })?;
    if probe.schema_version == Some(1) {
        return Err(Error::new(
            "this image uses Docker's old schema 1 manifest, which registries stopped serving; \
             ask for a newer tag",
        ));
    }
    let media_type =
        probe
            .media_type
            .as_deref()
            .or(content_type)
            .unwrap_or(if probe.manifests.is_some() {
                OCI_INDEX
            } else {
                OCI_MANIFEST
            });
    let bad = |e: serde_json::Error| Error::new(format!("malformed {media_type} document: {e}"));
    match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => Ok(ManifestKind::Index(
            serde_json::from_slice(bytes).map_err(bad)?,
        )),
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(ManifestKind::Image(
            serde_json::from_slice(bytes).map_err(bad)?,
        )),
        other => Err(Error::new(format!(
            "unsupported manifest media type {other:?} (this engine reads OCI and Docker schema 2)"
        ))),
    }
}

// ANCHOR: config
/// The image configuration: how to run a container from this image, and the
/// list of layers by their *uncompressed* digests (diff IDs).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: RunConfig,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

/// The defaults a container starts with (docker calls it `Config`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// One step of how the image was built. `empty_layer` steps (ENV, CMD…)
/// changed only the config and have no layer of their own.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}
// ANCHOR_END: config

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::new(format!("malformed image config: {e}")))
    }
}

/// Is this media type a layer we know how to read (later chapters unpack it)?
pub fn is_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_LAYER_TAR | OCI_LAYER_GZIP | OCI_LAYER_ZSTD | DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_an_index_from_a_manifest() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(matches!(
            parse_manifest(index, None),
            Ok(ManifestKind::Index(_))
        ));
        // No mediaType field: the Content-Type header decides.
        let list = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_manifest(list, Some(DOCKER_MANIFEST_LIST)),
            Ok(ManifestKind::Index(_))
        ));
        let schema1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        let err = parse_manifest(schema1, None).err().unwrap();
        assert!(err.message().contains("schema 1"));
    }
}
