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

impl Descriptor {
    /// A plain pointer: type, digest and size, nothing else.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            urls: vec![],
        }
    }

    /// A pointer to these bytes (a config or a manifest held in memory).
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64)
    }
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

impl Manifest {
    /// The manifest of an image made here (`load`, `save`, and chapter
    /// 5's `build`): an OCI manifest of this config and these layers.
    /// A pulled image keeps the registry's manifest instead, byte for byte,
    /// since its digest is its name.
    pub fn assemble(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config,
            layers,
            annotations: BTreeMap::new(),
        }
    }

    /// The document as stored: compact JSON (its digest names it).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serializes")
    }
}

/// What a manifest document turned out to be.
pub enum ManifestKind {
    Image(Manifest),
    Index(Index),
}

/// A fetched document, parsed, with the media type it really has (the one
/// to store in its descriptor).
pub struct Document {
    pub media_type: String,
    pub kind: ManifestKind,
}

/// Is this one of the four manifest and index types we read?
pub fn is_manifest_type(media_type: &str) -> bool {
    MANIFEST_ACCEPT.contains(&media_type)
}

// ANCHOR: parse_manifest
/// Decides what a fetched document is, and refuses one that lies about it.
///
/// A document can be described three times: by the `mediaType` field inside
/// it, by the `Content-Type` the registry sent it with, and (for an index
/// entry) by the descriptor that pointed to it. `declared` lists the last
/// two as `(who says it, media type)`. They must agree: the type is what
/// we write into the store's `index.json`, and a manifest stored as an
/// "index" poisons the store (skopeo refuses the layout, and garbage
/// collection, reading the manifest as an index, keeps nothing it uses).
/// A `Content-Type` that is not a manifest type (`application/json`,
/// `text/plain` from a plain web server) says nothing and is ignored.
pub fn parse_manifest(bytes: &[u8], what: &str, declared: &[(&str, &str)]) -> Result<Document> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| {
        Error::new(format!(
            "the registry sent a manifest for {what} that is not JSON: {e}"
        ))
    })?;
    if probe.schema_version == Some(1) {
        return Err(Error::new(
            "this image uses Docker's old schema 1 manifest, which registries stopped serving; \
             ask for a newer tag",
        ));
    }
    let declared: Vec<&(&str, &str)> = declared
        .iter()
        .filter(|(_, media_type)| is_manifest_type(media_type))
        .collect();
    // The document's own word first; what others say must match it.
    let (claim_by, claimed) = match (&probe.media_type, declared.first()) {
        (Some(own), _) => ("the document itself", own.as_str()),
        (None, Some((who, media_type))) => (*who, *media_type),
        (None, None) if probe.manifests.is_some() => ("its shape", OCI_INDEX),
        (None, None) => ("its shape", OCI_MANIFEST),
    };
    if let Some((who, media_type)) = declared.iter().find(|(_, m)| *m != claimed) {
        return Err(Error::new(format!(
            "{what} has type {claimed} according to {claim_by}, but {who} says {media_type}: \
             refusing a document that lies about its type — nothing stored"
        )));
    }
    let media_type = claimed.to_string();
    let bad = |e: serde_json::Error| {
        Error::new(format!("malformed {media_type} document for {what}: {e}"))
    };
    let kind = match media_type.as_str() {
        OCI_INDEX | DOCKER_MANIFEST_LIST => {
            ManifestKind::Index(serde_json::from_slice(bytes).map_err(bad)?)
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            ManifestKind::Image(serde_json::from_slice(bytes).map_err(bad)?)
        }
        other => {
            return Err(Error::new(format!(
                "unsupported manifest media type {other:?} for {what} (this engine reads OCI and Docker schema 2)"
            )))
        }
    };
    Ok(Document { media_type, kind })
}
// ANCHOR_END: parse_manifest

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
    /// Every other field, kept as it was (`Healthcheck`, `OnBuild`,
    /// `Shell`…): this engine does not act on them, but an image built
    /// here (chapter 5) records them, and one read here keeps them.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
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

    /// The platform the image says it is for.
    pub fn platform(&self) -> crate::platform::Platform {
        crate::platform::Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
            os_version: None,
        }
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
        let doc = parse_manifest(index, "x", &[]).unwrap();
        assert!(matches!(doc.kind, ManifestKind::Index(_)));
        assert_eq!(doc.media_type, OCI_INDEX);
        // No mediaType field: the Content-Type header decides.
        let list = br#"{"schemaVersion":2,"manifests":[]}"#;
        let doc = parse_manifest(list, "x", &[("Content-Type", DOCKER_MANIFEST_LIST)]).unwrap();
        assert!(matches!(doc.kind, ManifestKind::Index(_)));
        assert_eq!(doc.media_type, DOCKER_MANIFEST_LIST);
        // An uninformative Content-Type is ignored; the shape decides.
        let doc = parse_manifest(list, "x", &[("Content-Type", "application/json")]).unwrap();
        assert_eq!(doc.media_type, OCI_INDEX);
        let schema1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        let err = parse_manifest(schema1, "x", &[]).err().unwrap();
        assert!(err.message().contains("schema 1"));
    }

    /// The poisoned index: an entry that says "index" but whose
    /// document is a manifest must be refused, not stored as an index.
    #[test]
    fn refuses_a_document_whose_type_disagrees_with_its_descriptor() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{d}","size":0}},"layers":[]}}"#
        );
        let err = parse_manifest(manifest.as_bytes(), "m", &[("the index entry", OCI_INDEX)])
            .err()
            .unwrap();
        assert!(
            err.message().contains(OCI_MANIFEST) && err.message().contains(OCI_INDEX),
            "{}",
            err.message()
        );
        // Without a mediaType inside, the descriptor decides, and the
        // document must have that shape.
        let bare = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{d}","size":0}},"layers":[]}}"#
        );
        let err = parse_manifest(bare.as_bytes(), "m", &[("the index entry", OCI_INDEX)])
            .err()
            .unwrap();
        assert!(err.message().contains("malformed"), "{}", err.message());
        // Content-Type and descriptor disagreeing is refused too.
        assert!(parse_manifest(
            bare.as_bytes(),
            "m",
            &[
                ("the index entry", OCI_MANIFEST),
                ("Content-Type", DOCKER_MANIFEST)
            ]
        )
        .is_err());
        // Agreement is fine.
        let doc = parse_manifest(
            manifest.as_bytes(),
            "m",
            &[
                ("the index entry", OCI_MANIFEST),
                ("Content-Type", OCI_MANIFEST),
            ],
        )
        .unwrap();
        assert!(matches!(doc.kind, ManifestKind::Image(_)));
    }
}
