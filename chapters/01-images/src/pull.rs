//! `pull`: from a name to an image in the store.
//!
//! The whole of `docker pull`, in order:
//!
//! 1. resolve the name to a registry and repository (`reference`);
//! 2. fetch the manifest for the tag; if it is an index, pick this
//!    machine's platform and fetch that manifest by digest;
//! 3. fetch the config (it lists the layers' uncompressed digests);
//! 4. fetch the layers that are not here yet, a few at a time, each one
//!    verified while it streams to disk;
//! 5. only then, give the image its name in `index.json`.
//!
//! Step 5 comes last on purpose: whenever the pull stops, a name never
//! points at an image whose blobs are missing.

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::explain;
use crate::manifest::{self, parse_manifest, Descriptor, ImageConfig, ManifestKind};
use crate::platform::{self, Platform};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::{backoff, Registry, RegistryOptions};
use crate::store::{Image, Store};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How many layers download at once (docker's default is 3 too).
const PARALLEL_DOWNLOADS: usize = 3;
/// Attempts per layer when a download breaks off mid-way.
const LAYER_ATTEMPTS: u32 = 3;

#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// `--platform`; the host's platform when `None`.
    pub platform: Option<Platform>,
    /// `-q`: print only the image name at the end.
    pub quiet: bool,
}

// ANCHOR: pull
/// Pulls `reference` into `store`, printing docker-style progress.
pub fn pull(
    store: &Store,
    reference: &Reference,
    registry_options: &RegistryOptions,
    options: &PullOptions,
) -> Result<Image> {
    let progress = Progress::new();
    let say = |line: &str| {
        if !options.quiet {
            progress.println(line);
        }
    };
    say(&format!(
        "{}: Pulling from {}",
        reference.manifest_reference(),
        reference.path
    ));
    store.clean_stale_downloads()?;
    let _pin = store.pin_for_pull()?;
    let registry = Registry::connect(reference, registry_options)?;

    // 2. The manifest, or an index to choose from.
    let wanted = options.platform.clone().unwrap_or_else(Platform::host);
    let top = registry.get_manifest(reference.manifest_reference())?;
    let content_type = top.media_type.clone().unwrap_or_default();
    let top_doc = parse_manifest(
        &top.bytes,
        &reference.to_string(),
        &[("the registry's Content-Type", &content_type)],
    )?;
    let (manifest_bytes, image_manifest, manifest_media_type, index_bytes) = match top_doc.kind {
        ManifestKind::Image(m) => (top.bytes, m, top_doc.media_type, None),
        ManifestKind::Index(index) => {
            let chosen = platform::choose(&index.manifests, &wanted)?;
            explain::step(
                &format!("the tag names an index; {wanted} is {}", chosen.digest),
                None,
            );
            let (bytes, manifest, media_type) = fetch_index_entry(&registry, chosen)?;
            (bytes, manifest, media_type, Some(top.bytes))
        }
    };

    // 3. The config: small, read whole, verified.
    let config_bytes = match store.has_blob(&image_manifest.config.digest) {
        true => store.read_blob(&image_manifest.config.digest)?,
        false => registry.get_small_blob(&image_manifest.config.digest)?,
    };
    let config = ImageConfig::parse(&config_bytes)?;
    let actual = config.platform();
    if !config.os.is_empty() && !wanted.matches(&actual) {
        if options.platform.is_some() {
            // Asked for a platform the image is not built for: say so, as docker does.
            return Err(Error::new(format!(
                "{reference} was found but is built for {actual}, not the requested {wanted}"
            )));
        }
        eprintln!(
            "WARNING: the image's platform ({actual}) does not match this machine's ({wanted})"
        );
    }
    store.put_blob(&config_bytes)?;

    // 4. The layers.
    for layer in &image_manifest.layers {
        if layer.media_type == manifest::OCI_LAYER_ZSTD {
            explain::step(&format!("layer {} is zstd-compressed", layer.digest), None);
        }
    }
    download_layers(
        store,
        &registry,
        &image_manifest.layers,
        &progress,
        options.quiet,
    )?;

    // 5. Name the image, now that everything it needs is here.
    let name = reference.store_name();
    let previous = store.find(&name)?.map(|i| i.descriptor.digest);
    // The type the document was checked to have (see parse_manifest),
    // never a type some header or index entry merely claimed. The index,
    // if the tag named one, is stored only now, with the name.
    let image = store.commit_manifest(
        &name,
        &manifest_bytes,
        &manifest_media_type,
        index_bytes.as_deref(),
    )?;

    // The digest the tag named: the index's, for a multi-platform image.
    say(&format!("Digest: {}", image.repo_digest()));
    if previous.as_ref() == Some(&image.descriptor.digest) {
        say(&format!(
            "Status: Image is up to date for {}",
            reference.familiar()
        ));
    } else {
        say(&format!(
            "Status: Downloaded newer image for {}",
            reference.familiar()
        ));
    }
    println!("{reference}");
    Ok(image)
}
// ANCHOR_END: pull

// ANCHOR: fetch_index_entry
/// Fetches the manifest an index entry points to, by digest, and checks it
/// is what the entry says: an image manifest, of the entry's media type.
/// An entry that calls a manifest an "index" (or the reverse) is refused
/// here, before anything is stored: stored under the entry's word, it would
/// poison the store for skopeo and for garbage collection.
fn fetch_index_entry(
    registry: &Registry,
    entry: &Descriptor,
) -> Result<(Vec<u8>, manifest::Manifest, String)> {
    if !manifest::is_manifest_type(&entry.media_type) {
        return Err(Error::new(format!(
            "the index lists {} as {:?}, which is not a manifest type — refusing it, nothing stored",
            entry.digest, entry.media_type
        )));
    }
    let fetched = registry.get_manifest(entry.digest.as_str())?;
    let content_type = fetched.media_type.clone().unwrap_or_default();
    let document = parse_manifest(
        &fetched.bytes,
        &format!("manifest {}", entry.digest),
        &[
            ("the index entry", &entry.media_type),
            ("the registry's Content-Type", &content_type),
        ],
    )?;
    match document.kind {
        ManifestKind::Image(m) => Ok((fetched.bytes, m, document.media_type)),
        ManifestKind::Index(_) => Err(Error::new(
            "the index points to another index; nested indexes are not supported",
        )),
    }
}
// ANCHOR_END: fetch_index_entry

// ANCHOR: download_layers
/// Downloads the missing layers, `PARALLEL_DOWNLOADS` at a time. Each
/// worker takes the next layer from a shared counter; the first error stops
/// the others from starting new layers.
fn download_layers(
    store: &Store,
    registry: &Registry,
    layers: &[Descriptor],
    progress: &Progress,
    quiet: bool,
) -> Result<()> {
    // A manifest may list one layer twice (the same content added twice):
    // download it once.
    let mut seen = std::collections::HashSet::new();
    let layers: Vec<&Descriptor> = layers.iter().filter(|l| seen.insert(&l.digest)).collect();
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_DOWNLOADS.min(layers.len()) {
            scope.spawn(|| loop {
                if first_error.lock().expect("lock poisoned").is_some() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(layer) = layers.get(i) else { return };
                if let Err(e) = download_layer(store, registry, layer, progress, quiet) {
                    first_error.lock().expect("lock poisoned").get_or_insert(e);
                    return;
                }
            });
        }
    });
    match first_error.into_inner().expect("lock poisoned") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
// ANCHOR_END: download_layers

fn download_layer(
    store: &Store,
    registry: &Registry,
    layer: &Descriptor,
    progress: &Progress,
    quiet: bool,
) -> Result<()> {
    let short = layer.digest.short().to_string();
    if store.has_blob(&layer.digest) {
        if !quiet {
            progress.task(&short, 0).finish("Already exists");
        }
        return Ok(());
    }
    if !layer.urls.is_empty() || layer.media_type == manifest::DOCKER_LAYER_FOREIGN {
        explain::step(
            &format!(
                "layer {} is a foreign layer; fetching it from the registry anyway",
                layer.digest
            ),
            None,
        );
    }
    let task = if quiet {
        None
    } else {
        Some(progress.task(&short, layer.size))
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = registry.open_blob(&layer.digest).and_then(|(reader, _)| {
            store.write_blob(&layer.digest, Some(layer.size), reader, |n| {
                if let Some(t) = &task {
                    t.advance(n)
                }
            })
        });
        match result {
            Ok(_) => break,
            // A download that broke off may work next time; a digest
            // mismatch or a stalled registry will not.
            Err(e) if attempt < LAYER_ATTEMPTS && e.kind() == ErrorKind::BrokeOff => {
                if let Some(t) = &task {
                    t.reset();
                }
                backoff(attempt, e.message());
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(t) = &task {
        t.finish("Pull complete");
    }
    Ok(())
}

/// Checks a blob's digest as stored (what `verify` commands and tests use).
pub fn verify_blob(store: &Store, digest: &Digest) -> Result<bool> {
    let mut file = store.open_blob(digest)?;
    let mut writer = crate::digest::DigestWriter::new(std::io::sink());
    std::io::copy(&mut file, &mut writer)
        .map_err(|e| Error::new(format!("reading blob {digest}: {e}")))?;
    Ok(&writer.finish().0 == digest)
}
