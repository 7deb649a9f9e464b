//! What each layer does: files added, changed and deleted (the `layers`
//! command, in the spirit of the `dive` tool).
//!
//! A layer's tar only lists paths; whether a path is *added* or *changed*
//! depends on the layers below. So we walk the layers bottom to top,
//! keeping the set of paths that exist so far.

use crate::contain::entry_components;
use crate::whiteout::{classify, Marker};
use ch01_images::archive::open_layer;
use ch01_images::error::{Error, Result};
use ch01_images::store::{Image, Store};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The effect of one layer on the files below it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LayerChanges {
    pub added: u64,
    pub changed: u64,
    pub deleted: u64,
}

// ANCHOR: changes
/// Counts, per layer, the files (not directories) it adds, changes and deletes.
pub fn layer_changes(store: &Store, image: &Image) -> Result<Vec<LayerChanges>> {
    // Every path that exists so far, and whether it is a directory.
    let mut existing: BTreeMap<PathBuf, bool> = BTreeMap::new();
    let mut result = Vec::new();
    for layer in &image.manifest.layers {
        let mut changes = LayerChanges::default();
        let mut archive = tar::Archive::new(open_layer(store, layer)?);
        let entries = archive
            .entries()
            .map_err(|e| Error::new(format!("reading layer {}: {e}", layer.digest)))?;
        let mut this_layer: Vec<(PathBuf, bool)> = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::new(format!("reading layer {}: {e}", layer.digest)))?;
            let path: PathBuf =
                entry_components(&entry.path().map_err(|e| Error::new(e.to_string()))?)?
                    .into_iter()
                    .collect();
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let parent = path.parent().map(PathBuf::from).unwrap_or_default();
            let gone: Vec<PathBuf> = match classify(&name)? {
                Marker::AufsMeta => continue,
                Marker::Whiteout(victim) => {
                    let victim = parent.join(victim);
                    existing
                        .keys()
                        .filter(|p| p.starts_with(&victim))
                        .cloned()
                        .collect()
                }
                Marker::Opaque => existing
                    .keys()
                    .filter(|p| p.starts_with(&parent) && **p != parent)
                    .cloned()
                    .collect(),
                Marker::None => {
                    this_layer.push((path, entry.header().entry_type().is_dir()));
                    continue;
                }
            };
            for p in gone {
                if existing.remove(&p) == Some(false) {
                    changes.deleted += 1;
                }
            }
        }
        for (path, is_dir) in this_layer {
            let existed = existing.insert(path, is_dir).is_some();
            if !is_dir {
                if existed {
                    changes.changed += 1;
                } else {
                    changes.added += 1;
                }
            }
        }
        result.push(changes);
    }
    Ok(result)
}
// ANCHOR_END: changes
