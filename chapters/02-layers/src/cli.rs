//! The command line of chapter 02: chapter 01's image commands plus the
//! layer commands. [`Command`] is every command so far and [`run_command`]
//! runs one and returns the exit code: chapter 3 flattens `Command` into
//! its own command enum once, as this chapter does with chapter 1's
//! `ImageCommand`.

use crate::changes::layer_changes;
use crate::diff::write_layer;
use crate::layer_store::{layers_with_diff_ids, LayerStore};
use crate::pipeline::apply_layer_blob;
use crate::rootfs::Rootfs;
use crate::unpack::Mode;
use ch01_images::cli::{image_or_pull, GlobalArgs, ImageCommand};
use ch01_images::digest::Digest;
use ch01_images::durable::{write_atomically, Flush};
use ch01_images::error::{Error, IoContext, Result};
use ch01_images::store::{Image, Store};
use ch01_images::table::{human_age, human_size, render};
use clap::Subcommand;
use std::fs;
use std::path::{Path, PathBuf};

// ANCHOR: commands
/// The layer commands (chapter 02).
#[derive(Subcommand, Clone, Debug)]
pub enum LayerCommand {
    /// Mount an image's layers as one tree at DIR, with a throwaway writable layer
    Mount { image: String, dir: PathBuf },
    /// Unmount a tree mounted by `mount` and delete its writable layer
    Umount { dir: PathBuf },
    /// Write what was changed in a mounted tree as a layer tar (OCI whiteouts)
    Diff {
        dir: PathBuf,
        /// The layer tar to write
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Apply an image's layers one after another into DIR (no overlay)
    Unpack { image: String, dir: PathBuf },
    /// Show what each layer adds, changes and deletes
    Layers { image: String },
    /// Show how an image was built, one line per step
    History {
        image: String,
        /// Do not truncate the commands
        #[arg(long)]
        no_trunc: bool,
    },
}
// ANCHOR_END: commands

pub const EXAMPLES: &str = "\
Examples:
  ch02-layers pull localhost:5000/layered
  ch02-layers layers localhost:5000/layered       # what each layer adds, changes, deletes
  mkdir /tmp/m && ch02-layers mount localhost:5000/layered /tmp/m
  echo hi > /tmp/m/new.txt && ch02-layers diff /tmp/m -o change.tar
  ch02-layers umount /tmp/m
  ch02-layers unpack localhost:5000/layered /tmp/flat   # the layers applied in order, no overlay";

// ANCHOR: every_command
/// Every command up to this chapter: chapter 01's, then this chapter's.
/// Chapter 3 flattens this enum into its own, and so on down the chain.
#[derive(Subcommand, Clone, Debug)]
pub enum Command {
    #[command(flatten)]
    Images(ImageCommand),
    #[command(flatten)]
    Layers(LayerCommand),
}

impl Command {
    /// The command's name, for error messages (`mount: …`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Images(command) => ch01_images::cli::command_name(command),
            Command::Layers(command) => command_name(command),
        }
    }
}

/// Runs any command of chapters 01 and 02; returns the exit code.
pub fn run_command(command: Command, globals: &GlobalArgs) -> Result<i32> {
    match command {
        Command::Images(command) => {
            let removes = matches!(command, ImageCommand::Rmi { .. });
            let code = ch01_images::cli::run_image_command(command, globals)?;
            if removes {
                // Removing an image also removes its unpacked layers, unless shared.
                prune_layers(&globals.root, &globals.store()?)?;
            }
            Ok(code)
        }
        Command::Layers(command) => run_layer_command(command, globals).map(|()| 0),
    }
}
// ANCHOR_END: every_command

/// The name of a command, for error messages.
pub fn command_name(command: &LayerCommand) -> &'static str {
    match command {
        LayerCommand::Mount { .. } => "mount",
        LayerCommand::Umount { .. } => "umount",
        LayerCommand::Diff { .. } => "diff",
        LayerCommand::Unpack { .. } => "unpack",
        LayerCommand::Layers { .. } => "layers",
        LayerCommand::History { .. } => "history",
    }
}

/// The record of one `mount`, kept in `ROOT/mounts/<id>/mount.json`.
#[derive(serde::Serialize, serde::Deserialize)]
struct MountRecord {
    image: String,
    target: PathBuf,
}

pub fn run_layer_command(command: LayerCommand, globals: &GlobalArgs) -> Result<()> {
    let store = globals.store()?;
    match command {
        LayerCommand::Mount { image, dir } => {
            let image = image_or_pull(globals, &store, &image)?;
            let target = dir.canonicalize().context("mounting on", &dir)?;
            let id = random_id();
            let mount_dir = globals.root.join("mounts").join(&id);
            let rootfs = Rootfs::prepare(
                &globals.root,
                &store,
                &image,
                &mount_dir,
                &target,
                Flush::ToDisk,
            )?;
            let record = MountRecord {
                image: image.name.clone(),
                target: target.clone(),
            };
            write_atomically(
                &mount_dir.join("mount.json"),
                &serde_json::to_vec(&record).expect("serializes"),
            )?;
            if let Err(e) = rootfs.mount() {
                let _ = fs::remove_dir_all(&mount_dir);
                return Err(e);
            }
            println!("mounted {} at {}", image.name, target.display());
            println!(
                "  {} read-only layers, shared, under {}",
                rootfs.layers.len(),
                globals.root.join("layers").display()
            );
            println!("  your writes go to {}", rootfs.upper().display());
            Ok(())
        }
        LayerCommand::Umount { dir } => {
            // The record alone is enough: the image may be gone already.
            let (mount_dir, record) = find_mount(&globals.root, &dir)?;
            if crate::overlay::is_mounted(&record.target) {
                crate::overlay::unmount(&record.target)?;
            }
            fs::remove_dir_all(&mount_dir).context("removing", &mount_dir)?;
            LayerStore::open(&globals.root)?.unregister_user(&mount_dir)?;
            println!("unmounted {}", record.target.display());
            // Layers kept only for this mount (its image was removed) can go now.
            prune_layers(&globals.root, &store)?;
            Ok(())
        }
        LayerCommand::Diff { dir, output } => {
            let (mount_dir, _) = find_mount(&globals.root, &dir)?;
            let partial = ch01_images::durable::temp_path_beside(&output);
            let file = fs::File::create(&partial).context("creating", &partial)?;
            let result = write_layer(&mount_dir.join("upper"), file)
                .and_then(|_| fs::rename(&partial, &output).context("writing", &output));
            if result.is_err() {
                let _ = fs::remove_file(&partial);
            }
            result
        }
        LayerCommand::Unpack { image, dir } => {
            let image = image_or_pull(globals, &store, &image)?;
            flat_unpack(&store, &image, &dir)
        }
        LayerCommand::Layers { image } => {
            let image = store.get(&image)?;
            print!("{}", layers_table(&store, &image)?);
            Ok(())
        }
        LayerCommand::History { image, no_trunc } => {
            let image = store.get(&image)?;
            print!("{}", history_table(&image, no_trunc));
            Ok(())
        }
    }
}

// ANCHOR: flat_unpack
/// Applies the layers in order into one plain directory (no overlay).
pub fn flat_unpack(store: &Store, image: &Image, dir: &Path) -> Result<()> {
    if dir.exists() && fs::read_dir(dir).context("reading", dir)?.next().is_some() {
        return Err(Error::new(format!(
            "{} is not empty — unpack into a new or empty directory",
            dir.display()
        )));
    }
    fs::create_dir_all(dir).context("creating", dir)?;
    for (layer, diff_id) in layers_with_diff_ids(image)? {
        ch01_images::explain::step(
            &format!(
                "apply layer {} onto {} (its whiteouts delete, its opaque dirs empty)",
                layer.digest,
                dir.display()
            ),
            Some(&format!(
                "tar -xzf {} -C {}",
                store.blob_path(&layer.digest).display(),
                dir.display()
            )),
        );
        // The diff ID check, as for the shared layers: an uncompressed
        // layer has no gzip checksum to catch a flipped byte.
        let (_, got) = apply_layer_blob(store, layer, dir, Mode::Flat)?;
        if &got != diff_id {
            return Err(Error::new(format!(
                "layer {} does not match its diff ID {diff_id} (got {got}): {} is incomplete — pull the image again",
                layer.digest,
                dir.display()
            )));
        }
    }
    Ok(())
}
// ANCHOR_END: flat_unpack

// ANCHOR: prune_layers
/// Deletes the unpacked layers that no image and no mount uses any more
/// (after `rmi`): the layer store follows the image store.
pub fn prune_layers(root: &Path, store: &Store) -> Result<Vec<Digest>> {
    let layer_store = LayerStore::open(root)?;
    let _lock = layer_store.lock()?;
    let mut used: std::collections::BTreeSet<Digest> = store
        .images()?
        .into_iter()
        .flat_map(|i| i.config.rootfs.diff_ids)
        .collect();
    // Mounts, containers and build steps register the layers they use.
    used.extend(layer_store.layers_in_use()?);
    let mut removed = Vec::new();
    for entry in fs::read_dir(layer_store.dir())
        .context("reading", layer_store.dir())?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(diff_id) = Digest::parse(&format!("sha256:{name}")) else {
            continue;
        };
        if !used.contains(&diff_id) {
            ch01_images::explain::step(
                &format!("no image uses layer {diff_id} any more"),
                Some(&format!("rm -rf {}", entry.path().display())),
            );
            layer_store.remove_layer(&diff_id)?;
            removed.push(diff_id);
        }
    }
    Ok(removed)
}
// ANCHOR_END: prune_layers

fn find_mount(root: &Path, dir: &Path) -> Result<(PathBuf, MountRecord)> {
    let target = dir.canonicalize().context("looking up", dir)?;
    let mounts = root.join("mounts");
    for entry in fs::read_dir(&mounts).into_iter().flatten().flatten() {
        let Ok(bytes) = fs::read(entry.path().join("mount.json")) else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<MountRecord>(&bytes) else {
            continue;
        };
        if record.target == target {
            return Ok((entry.path(), record));
        }
    }
    Err(Error::new(format!(
        "{} was not mounted by `mount` (see ROOT/mounts)",
        dir.display()
    )))
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ANCHOR: layers_table
/// `layers`: per layer, its digest, size, what it changes, and the step
/// of the image's history that made it.
pub fn layers_table(store: &Store, image: &Image) -> Result<String> {
    let changes = layer_changes(store, image)?;
    let steps: Vec<String> = image
        .config
        .history
        .iter()
        .filter(|h| !h.empty_layer)
        .map(|h| h.created_by.clone().unwrap_or_default())
        .collect();
    let rows: Vec<Vec<String>> = image
        .manifest
        .layers
        .iter()
        .zip(&changes)
        .enumerate()
        .map(|(i, (layer, c))| {
            vec![
                layer.digest.short().to_string(),
                human_size(layer.size),
                c.added.to_string(),
                c.changed.to_string(),
                c.deleted.to_string(),
                steps.get(i).cloned().unwrap_or_default(),
            ]
        })
        .collect();
    Ok(render(
        &["LAYER", "SIZE", "ADDED", "CHANGED", "DELETED", "CREATED BY"],
        &rows,
    ))
}
// ANCHOR_END: layers_table

/// `history`: docker's view, newest step first.
pub fn history_table(image: &Image, no_trunc: bool) -> String {
    let mut layer_sizes = image.manifest.layers.iter().map(|l| l.size);
    let mut rows: Vec<Vec<String>> = image
        .config
        .history
        .iter()
        .map(|h| {
            let size = if h.empty_layer {
                0
            } else {
                layer_sizes.next().unwrap_or(0)
            };
            let mut created_by = h.created_by.clone().unwrap_or_default();
            if !no_trunc && created_by.chars().count() > 45 {
                created_by = format!("{}…", created_by.chars().take(44).collect::<String>());
            }
            vec![
                "<missing>".to_string(),
                human_age(h.created.as_deref()),
                created_by,
                human_size(size),
                h.comment.clone().unwrap_or_default(),
            ]
        })
        .collect();
    rows.reverse();
    if let Some(first) = rows.first_mut() {
        first[0] = image.id().short().to_string();
    }
    render(
        &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        &rows,
    )
}
