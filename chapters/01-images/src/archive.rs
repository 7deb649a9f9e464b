//! `save` and `load`: images as one tar file, to carry without a registry.
//!
//! The archive is what `docker save` writes since Docker 25, so `docker
//! load`, `skopeo … docker-archive:` and this engine all read it:
//!
//! ```text
//! manifest.json          [{"Config": "blobs/sha256/<id>", "RepoTags": ["busybox:latest"],
//!                          "Layers": ["blobs/sha256/<diff id>", …]}]   (docker's own index)
//! oci-layout, index.json an OCI image layout of the same images
//! blobs/sha256/…         the config, the manifest, and each layer as an
//!                        *uncompressed* tar named by its diff ID
//! ```
//!
//! `load` reads `manifest.json`, so it also takes archives from older
//! Docker versions (`<id>.json`, `<layer>/layer.tar`) and from skopeo.

use crate::digest::{Digest, DigestWriter};
use crate::error::{Error, IoContext, Result};
use crate::explain;
use crate::manifest::{self, Descriptor, ImageConfig, Index, Manifest};
use crate::reference::Reference;
use crate::store::{Image, Store};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// One entry of docker's `manifest.json`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Removes a temporary directory however the function using it ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Opens a layer blob as an uncompressed tar stream, whatever its compression.
pub fn open_layer(store: &Store, layer: &Descriptor) -> Result<Box<dyn Read>> {
    let file = BufReader::new(store.open_blob(&layer.digest)?);
    decompress(file, &layer.media_type, &layer.digest.to_string())
}

/// Wraps a layer stream in the decoder its media type (or magic bytes) needs.
pub fn decompress<R: Read + 'static>(
    mut reader: BufReader<R>,
    media_type: &str,
    what: &str,
) -> Result<Box<dyn Read>> {
    use std::io::BufRead;
    if media_type.ends_with("zstd") {
        return Err(Error::new(format!(
            "layer {what} is zstd-compressed, which this engine does not support yet"
        )));
    }
    let head = reader
        .fill_buf()
        .map_err(|e| Error::new(format!("reading layer {what}: {e}")))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(Error::new(format!(
            "layer {what} is zstd-compressed, which this engine does not support yet"
        )))
    } else {
        Ok(Box::new(reader))
    }
}

// ANCHOR: save
/// Writes the named images into one tar archive at `output`.
pub fn save(store: &Store, names: &[String], output: &Path) -> Result<()> {
    let images: Vec<Image> = names.iter().map(|n| store.get(n)).collect::<Result<_>>()?;
    let work = TempDir(store.tmp_dir().join(format!("save-{}", std::process::id())));
    fs::create_dir_all(&work.0).context("creating", &work.0)?;
    let partial = crate::durable::temp_path_beside(output);
    let file = File::create(&partial).context("creating", &partial)?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    let result = (|| {
        let mut written: BTreeSet<Digest> = BTreeSet::new();
        let mut entries = Vec::new();
        let mut index = Index {
            schema_version: 2,
            media_type: Some(manifest::OCI_INDEX.into()),
            manifests: vec![],
            annotations: BTreeMap::new(),
        };
        append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        for image in &images {
            let config_bytes = store.read_blob(image.id())?;
            if written.insert(image.id().clone()) {
                append_bytes(&mut tar, &blob_name(image.id()), &config_bytes)?;
            }
            let mut layers = Vec::new();
            for (layer, diff_id) in image
                .manifest
                .layers
                .iter()
                .zip(&image.config.rootfs.diff_ids)
            {
                // Docker archives hold layers uncompressed, named by diff ID.
                let uncompressed = work.0.join(diff_id.hex());
                if written.insert(diff_id.clone()) {
                    let size = uncompress_layer(store, layer, diff_id, &uncompressed)?;
                    let mut file = File::open(&uncompressed).context("opening", &uncompressed)?;
                    let mut header = tar_header(size);
                    tar.append_data(&mut header, blob_name(diff_id), &mut file)
                        .context("writing", output)?;
                    fs::remove_file(&uncompressed).context("removing", &uncompressed)?;
                    layers.push((diff_id.clone(), size));
                } else {
                    let size = layer_size_in_archive(&entries, diff_id).unwrap_or(0);
                    layers.push((diff_id.clone(), size));
                }
            }
            let manifest = Manifest::assemble(
                Descriptor::of(manifest::OCI_CONFIG, &config_bytes),
                layers
                    .iter()
                    .map(|(d, size)| Descriptor::new(manifest::OCI_LAYER_TAR, d.clone(), *size))
                    .collect(),
            );
            let manifest_bytes = manifest.to_bytes();
            let manifest_digest = Digest::of(&manifest_bytes);
            if written.insert(manifest_digest.clone()) {
                append_bytes(&mut tar, &blob_name(&manifest_digest), &manifest_bytes)?;
            }
            let mut annotations = BTreeMap::new();
            let tag = image.reference().map(|r| r.familiar());
            if let Some(reference) = image.reference() {
                annotations.insert(
                    "io.containerd.image.name".to_string(),
                    reference.to_string(),
                );
                if let Some(t) = &reference.tag {
                    annotations.insert(crate::store::REF_NAME.to_string(), t.clone());
                }
            }
            let mut descriptor = Descriptor::new(
                manifest::OCI_MANIFEST,
                manifest_digest,
                manifest_bytes.len() as u64,
            );
            descriptor.annotations = annotations;
            index.manifests.push(descriptor);
            entries.push((
                ArchiveEntry {
                    config: blob_name(image.id()),
                    repo_tags: Some(tag.into_iter().filter(|t| !t.contains('@')).collect()),
                    layers: layers.iter().map(|(d, _)| blob_name(d)).collect(),
                },
                layers,
            ));
        }
        let docker_manifest: Vec<&ArchiveEntry> = entries.iter().map(|(e, _)| e).collect();
        append_bytes(
            &mut tar,
            "index.json",
            &serde_json::to_vec(&index).expect("serializes"),
        )?;
        append_bytes(
            &mut tar,
            "manifest.json",
            &serde_json::to_vec(&docker_manifest).expect("serializes"),
        )?;
        let mut writer = tar.into_inner().context("writing", output)?;
        writer.flush().context("writing", output)?;
        writer
            .into_inner()
            .map_err(|e| e.into_error())
            .context("writing", output)?
            .sync_all()
            .context("writing", output)?;
        fs::rename(&partial, output).context("writing", output)?;
        explain::step(
            &format!("wrote {} image(s) to {}", images.len(), output.display()),
            Some(&format!("tar -tvf {}", output.display())),
        );
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}
// ANCHOR_END: save

fn layer_size_in_archive(
    entries: &[(ArchiveEntry, Vec<(Digest, u64)>)],
    diff_id: &Digest,
) -> Option<u64> {
    entries
        .iter()
        .flat_map(|(_, l)| l)
        .find(|(d, _)| d == diff_id)
        .map(|(_, s)| *s)
}

/// Decompresses a stored layer into `dest`, checking it against its diff ID.
fn uncompress_layer(
    store: &Store,
    layer: &Descriptor,
    diff_id: &Digest,
    dest: &Path,
) -> Result<u64> {
    let mut reader = open_layer(store, layer)?;
    let file = File::create(dest).context("creating", dest)?;
    let mut writer = DigestWriter::new(BufWriter::new(file));
    std::io::copy(&mut reader, &mut writer)
        .map_err(|e| Error::new(format!("decompressing layer {}: {e}", layer.digest)))?;
    let (digest, size, mut inner) = writer.finish();
    inner.flush().context("writing", dest)?;
    if &digest != diff_id {
        return Err(Error::new(format!(
            "layer {} does not match its diff ID {diff_id} (got {digest})",
            layer.digest
        )));
    }
    Ok(size)
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn tar_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut header = tar_header(bytes.len() as u64);
    tar.append_data(&mut header, name, bytes)
        .map_err(|e| Error::new(format!("writing {name} into the archive: {e}")))
}

// ANCHOR: load
/// Reads an archive written by `save` (or `docker save`, or skopeo) and
/// stores its images. Returns the names loaded.
pub fn load(store: &Store, input: &Path) -> Result<Vec<String>> {
    // Its layers are blobs no name reaches until their image is committed.
    let _pin = store.pin_for_pull()?;
    let work = TempDir(store.tmp_dir().join(format!("load-{}", std::process::id())));
    fs::create_dir_all(&work.0).context("creating", &work.0)?;
    let file = File::open(input).context("opening", input)?;
    // unpack_in refuses entries that would land outside `work` (`..`, absolute paths).
    let mut archive = tar::Archive::new(BufReader::new(file));
    for entry in archive.entries().map_err(|e| not_an_archive(input, e))? {
        let mut entry = entry.map_err(|e| not_an_archive(input, e))?;
        if matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Directory
        ) {
            entry
                .unpack_in(&work.0)
                .map_err(|e| not_an_archive(input, e))?;
        }
    }
    let manifest_path = work.0.join("manifest.json");
    let bytes = fs::read(&manifest_path).map_err(|_| {
        Error::new(format!(
            "{} has no manifest.json: it is not an image archive made by save",
            input.display()
        ))
    })?;
    let entries: Vec<ArchiveEntry> = serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(format!(
            "{}: manifest.json is malformed: {e}",
            input.display()
        ))
    })?;
    let mut loaded = Vec::new();
    for entry in entries {
        let config_bytes = fs::read(inside(&work.0, &entry.config)?)
            .context("reading", Path::new(&entry.config))?;
        let config = ImageConfig::parse(&config_bytes)?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(Error::new(format!(
                "{}: the config lists {} layers but the archive has {}",
                input.display(),
                config.rootfs.diff_ids.len(),
                entry.layers.len()
            )));
        }
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            layers.push(store.import_layer(&inside(&work.0, path)?, diff_id)?);
        }
        let tags = entry.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            // An untagged image is still stored, named by its ID.
            let id = Digest::of(&config_bytes);
            store.commit_image(id.as_str(), &config_bytes, &layers)?;
            loaded.push(format!("Loaded image ID: {id}"));
        }
        for tag in tags {
            let reference = Reference::parse(&tag)?;
            store.commit_image(&reference.store_name(), &config_bytes, &layers)?;
            loaded.push(format!("Loaded image: {}", reference.familiar()));
        }
    }
    Ok(loaded)
}
// ANCHOR_END: load

/// A path named inside the archive, refused if it climbs out.
fn inside(dir: &Path, name: &str) -> Result<PathBuf> {
    let relative = Path::new(name);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Error::new(format!(
            "the archive names {name:?}, outside itself — refusing it"
        )));
    }
    Ok(dir.join(relative))
}

fn not_an_archive(input: &Path, e: std::io::Error) -> Error {
    Error::new(format!(
        "{} is not a readable tar archive: {e}",
        input.display()
    ))
}
