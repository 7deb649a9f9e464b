//! [`Volumes`]: this chapter plugged into chapter 3 through its one seam,
//! the `Extension` trait. Nothing of chapter 3 changes: its `run`,
//! `create`, `rm`, `prune` and `inspect` call these methods.
//!
//! ```text
//! run/create -v -–mount --tmpfs ─▶ create: parse and check every mount (nothing made yet),
//!                                  then mkdir -p bind sources, make volumes, append the
//!                                  mounts to the spec, save them in config.json
//! first start, child at the gate ─▶ after_create: seed empty volumes (see `seed`)
//! the child                      ─▶ chapter 3's mounts::apply: mount --rbind _data DST
//! rm -v, --rm, a failed create   ─▶ on_remove: remove the container's anonymous volumes
//! inspect                        ─▶ Mounts, in docker's shape
//! ```
//!
//! The lesson in one sentence: the container's writable layer is in its
//! own directory and goes with `rm`; a volume is in `ROOT/volumes` and
//! only `volume rm` (or `rm -v`, for an anonymous one) removes it.

use crate::mountspec::{self, Kind, MountRequest};
use crate::seed;
use crate::volume;
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use ch01_images::manifest::RunConfig;
use ch02_layers::contain;
use ch03_run::extension::{Creating, Extension, NoArgs, Removing};
use ch03_run::lifecycle::{Config, Container};
use ch03_run::spec::Mount;
use clap::Args;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The name this extension saves its data under in `config.json`.
pub const NAME: &str = "volumes";

// ANCHOR: flags
/// The flags this chapter adds to `run` and `create`.
#[derive(Args, Clone, Debug, Default)]
#[group(skip)]
pub struct VolumeArgs {
    /// `-v SRC:DST[:OPTS]` or `-v DST` (an anonymous volume).
    #[arg(
        short = 'v',
        long = "volume",
        value_name = "SRC:DST[:OPTS]",
        help = "Bind mount a host path or mount a volume: SRC:DST[:OPTS] (SRC: /abs, ./rel or a volume name; OPTS: ro, rw, nocopy, z), or DST alone (anonymous volume)"
    )]
    pub volumes: Vec<String>,
    /// `--mount type=…,source=…,target=…`, docker's long form.
    #[arg(
        long = "mount",
        value_name = "type=…,target=…",
        help = "A mount, docker's long form: type=bind|volume|tmpfs,source=…,target=…[,readonly][,volume-nocopy][,tmpfs-size=…]"
    )]
    pub mounts: Vec<String>,
    /// `--tmpfs PATH[:OPTS]`: memory, gone when the container stops.
    #[arg(
        long = "tmpfs",
        value_name = "PATH[:OPTS]",
        help = "Mount a tmpfs (memory) at PATH: PATH[:size=64m,mode=1777,exec,…]"
    )]
    pub tmpfs: Vec<String>,
}

/// The flag this chapter adds to `rm`.
#[derive(Args, Clone, Debug, Default)]
#[group(skip)]
pub struct RmVolumeArgs {
    /// Also remove the container's anonymous volumes (never named ones)
    #[arg(short = 'v', long = "volumes")]
    pub volumes: bool,
}
// ANCHOR_END: flags

// ANCHOR: saved
/// One mount of a container, as saved in its `config.json` (under
/// `extensions.volumes`): all that `start`, `rm` and `inspect` need.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedMount {
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The volume's name (volumes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The host path mounted: a bind's source, a volume's `_data`
    /// (empty for a tmpfs).
    pub source: String,
    pub destination: String,
    pub rw: bool,
    /// `-v`'s options as typed, for `inspect`.
    #[serde(default)]
    pub mode: String,
    /// Never seeded (`nocopy`).
    #[serde(default)]
    pub nocopy: bool,
    /// An anonymous volume: removed by `rm -v` and `--rm`.
    #[serde(default)]
    pub anonymous: bool,
    /// Made by this container's `create` (removed if that create fails).
    #[serde(default)]
    pub created: bool,
    /// Tmpfs options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}
// ANCHOR_END: saved

impl SavedMount {
    // ANCHOR: to_mount
    /// The chapter-3 mount for it: a recursive bind (`rbind`), read-only
    /// all the way down with `ro` (`rro`: chapter 3's mounts::apply
    /// makes every submount read-only too), or a tmpfs.
    pub fn mount(&self) -> Mount {
        let rw = if self.rw { "rw" } else { "ro" };
        match self.kind {
            Kind::Bind | Kind::Volume => {
                let mut options = vec!["rbind", rw];
                if !self.rw {
                    options.push("rro");
                }
                Mount::new(&self.destination, "bind", &self.source, &options)
            }
            Kind::Tmpfs => {
                let mut options: Vec<&str> = self.options.iter().map(String::as_str).collect();
                options.push(rw);
                Mount::new(&self.destination, "tmpfs", "tmpfs", &options)
            }
        }
    }
    // ANCHOR_END: to_mount

    /// `inspect`'s `Mounts` entry, in docker's shape.
    pub fn inspect(&self) -> serde_json::Value {
        // docker's order: Type, Name, Source, Destination, Driver, Mode,
        // RW, Propagation (Name and Driver only for a volume).
        let mut json = serde_json::Map::new();
        json.insert("Type".into(), self.kind.as_str().into());
        if let Some(name) = &self.name {
            json.insert("Name".into(), name.clone().into());
        }
        json.insert("Source".into(), self.source.clone().into());
        json.insert("Destination".into(), self.destination.clone().into());
        if self.name.is_some() {
            json.insert("Driver".into(), "local".into());
        }
        json.insert("Mode".into(), self.mode.clone().into());
        json.insert("RW".into(), self.rw.into());
        let propagation = if self.kind == Kind::Bind {
            "rprivate"
        } else {
            ""
        };
        json.insert("Propagation".into(), propagation.into());
        json.into()
    }
}

/// The names of the volumes a container's config says it uses.
pub fn volume_names(config: &Config) -> impl Iterator<Item = String> {
    saved(config).into_iter().filter_map(|m| m.name)
}

/// What this extension saved in a container's config.
pub fn saved(config: &Config) -> Vec<SavedMount> {
    config.saved(NAME).unwrap_or_default()
}

// ANCHOR: requests
/// Every mount the command line and the image ask for, parsed and checked
/// (nothing is made yet): `-v`, `--mount`, `--tmpfs`, then the image's
/// `VOLUME`s that no mount of the command line covers; shallow ones
/// first, so `/a` is mounted before `/a/b`. Warnings are printed here.
pub fn requests(args: &VolumeArgs, image: &RunConfig) -> Result<Vec<MountRequest>> {
    let mut warnings = Vec::new();
    let mut requests = Vec::new();
    for spec in &args.volumes {
        requests.push(mountspec::parse_volume(spec, &mut warnings)?);
    }
    for spec in &args.mounts {
        requests.push(mountspec::parse_mount(spec)?);
    }
    for spec in &args.tmpfs {
        requests.push(mountspec::parse_tmpfs(spec)?);
    }
    mountspec::check_duplicates(&requests)?;
    for path in image.volumes.iter().flat_map(|v| v.keys()) {
        let request = mountspec::image_volume(path)?;
        if !requests
            .iter()
            .any(|r| r.destination == request.destination)
        {
            requests.push(request);
        }
    }
    for warning in warnings {
        eprintln!("WARNING: {warning}");
    }
    requests.sort_by_key(|r| r.destination.split('/').count());
    Ok(requests)
}
// ANCHOR_END: requests

/// Makes what `request` needs on the host (a bind's missing source with
/// `-v`, a volume) and returns it as saved in the config.
fn make(root: &Path, container: &str, request: &MountRequest) -> Result<SavedMount> {
    let mut saved = SavedMount {
        kind: request.kind(),
        name: None,
        source: String::new(),
        destination: request.destination.clone(),
        rw: !request.readonly,
        mode: request.mode.clone(),
        nocopy: request.nocopy,
        anonymous: false,
        created: false,
        options: Vec::new(),
    };
    match request.kind() {
        Kind::Bind => {
            let source = request.source.clone().unwrap_or_default();
            if request.create_source && Path::new(&source).symlink_metadata().is_err() {
                // docker's -v: a missing host path becomes a directory.
                explain::step(
                    &format!("-v: the host path {source} is missing: create it, as docker does"),
                    Some(&format!("mkdir -p {}", explain::shell_quote(&source))),
                );
                std::fs::create_dir_all(&source)
                    .map_err(|e| Error::new(format!("creating the host path {source}: {e}")))?;
            }
            saved.source = source;
        }
        Kind::Volume => {
            let anonymous = request.source.is_none();
            let name = match &request.source {
                Some(name) => name.clone(),
                None => volume::anonymous_name()?,
            };
            let (_, created) =
                volume::ensure_for(root, &name, &request.labels, anonymous, container)?;
            saved.source = volume::data_dir(root, &name).to_string_lossy().into_owned();
            saved.name = Some(name);
            saved.anonymous = anonymous;
            saved.created = created;
        }
        Kind::Tmpfs => saved.options = request.tmpfs_options.clone(),
    }
    Ok(saved)
}

/// Removes the volumes in `mounts` that `remove` picks, unless another
/// container (not `id`) uses them. Every one is tried; the first error
/// is returned.
fn remove_volumes(
    root: &Path,
    id: &str,
    mounts: &[SavedMount],
    remove: impl Fn(&SavedMount) -> bool,
) -> Result<()> {
    let mut result = Ok(());
    for mount in mounts
        .iter()
        .filter(|m| m.kind == Kind::Volume && remove(m))
    {
        let Some(name) = &mount.name else { continue };
        let removed = volume::lock(root).and_then(|_lock| {
            let others = volume::users(root, name).into_iter().any(|user| user != id);
            if others || volume::get(root, name).is_none() {
                return Ok(());
            }
            volume::remove_dir(root, name)
        });
        if result.is_ok() {
            result = removed;
        }
    }
    result
}

/// Docker's message for a file mounted onto a directory or the reverse.
fn not_a_directory(source: &str, destination: &str) -> Error {
    Error::new(format!(
        "error mounting \"{source}\" to rootfs at \"{destination}\": not a directory: Are you trying to mount a directory onto a file (or vice-versa)? Check if the specified host path exists and is the expected type"
    ))
}

/// This chapter's extension: volumes, bind mounts and tmpfs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Volumes;

// ANCHOR: extension
impl Extension for Volumes {
    type RunArgs = VolumeArgs;
    type StartArgs = NoArgs;
    type RmArgs = RmVolumeArgs;

    /// Checks every mount first (an error makes nothing), then makes the
    /// volumes and bind sources, appends the mounts, saves them.
    fn create(&self, args: &VolumeArgs, new: &mut Creating) -> Result<()> {
        let requests = requests(args, &new.image.config.config)?;
        let mut saved = Vec::new();
        for request in &requests {
            match make(new.root, new.id, request) {
                Ok(mount) => saved.push(mount),
                Err(e) => {
                    // Nothing half-made: the volumes this create made go.
                    let _ = remove_volumes(new.root, new.id, &saved, |m| m.created);
                    return Err(e);
                }
            }
        }
        new.spec.mounts.extend(saved.iter().map(SavedMount::mount));
        if !saved.is_empty() {
            new.save(NAME, &saved);
        }
        Ok(())
    }

    /// At the container's first start, its root filesystem mounted and
    /// its PID 1 at the gate (no mount made yet): each mount's kind is
    /// checked against the image's path, and empty volumes are seeded.
    fn after_create(&self, container: &Container, _pid: Pid) -> Result<()> {
        let mounts = saved(&container.config);
        if mounts.is_empty() {
            return Ok(());
        }
        let first_start = ch03_run::record::read_state(&container.dir)
            .is_ok_and(|s| s.status == ch03_run::state::Status::Created);
        let rootfs = &container.rootfs.target;
        for mount in mounts.iter().filter(|m| m.kind != Kind::Tmpfs) {
            let parts = contain::entry_components(Path::new(&mount.destination))?;
            // Resolved as the container will: a symlink in the image stays inside.
            let target = contain::resolve_in_root(rootfs, &parts, true)?;
            let source_is_dir = Path::new(&mount.source).is_dir();
            if let Ok(meta) = target.symlink_metadata() {
                if meta.is_dir() != source_is_dir {
                    return Err(not_a_directory(&mount.source, &mount.destination));
                }
            }
            if mount.kind == Kind::Volume && !mount.nocopy && first_start {
                let data = Path::new(&mount.source);
                if !data.is_dir() {
                    return Err(Error::new(format!(
                        "the volume {} is gone (removed while this container was being made) — run it again",
                        mount.name.as_deref().unwrap_or_default()
                    )));
                }
                seed::seed(&target, data)?;
            }
        }
        Ok(())
    }

    /// `rm -v`, `--rm` and a failed `create` remove the container's
    /// anonymous volumes (a failed create also the named ones it made);
    /// named volumes stay. A volume another container uses stays too.
    fn on_remove(&self, args: &RmVolumeArgs, removed: &Removing) -> Result<()> {
        let mounts: Vec<SavedMount> = removed.saved(NAME).unwrap_or_default();
        let failed_create = !removed.dir.join("state.json").exists();
        let anonymous_too = args.volumes || removed.config.auto_remove || failed_create;
        // The claims this container made while it was being created
        // (see `volume::ensure_for`): its config said the rest since.
        for name in mounts.iter().filter_map(|m| m.name.as_deref()) {
            volume::drop_claim(removed.root, name, &removed.config.id);
        }
        remove_volumes(removed.root, &removed.config.id, &mounts, |m| {
            (m.anonymous && anonymous_too) || (m.created && failed_create)
        })
    }

    /// `Mounts` in docker's shape (other chapters' binds kept).
    fn inspect(&self, config: &Config, json: &mut serde_json::Value) {
        let mounts = saved(config);
        let ours = |d: &serde_json::Value| mounts.iter().any(|m| d == m.destination.as_str());
        let mut all: Vec<serde_json::Value> = json["Mounts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| !ours(&m["Destination"]))
            .collect();
        all.extend(mounts.iter().map(SavedMount::inspect));
        json["Mounts"] = all.into();
    }
}
// ANCHOR_END: extension

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn args(volumes: &[&str], mounts: &[&str], tmpfs: &[&str]) -> VolumeArgs {
        let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect();
        VolumeArgs {
            volumes: strings(volumes),
            mounts: strings(mounts),
            tmpfs: strings(tmpfs),
        }
    }

    fn image_with_volumes(paths: &[&str]) -> RunConfig {
        let volumes: BTreeMap<String, serde_json::Value> = paths
            .iter()
            .map(|p| (p.to_string(), serde_json::json!({})))
            .collect();
        RunConfig {
            volumes: Some(volumes),
            ..RunConfig::default()
        }
    }

    #[test]
    fn image_volumes_are_anonymous_unless_a_mount_covers_them() {
        let image = image_with_volumes(&["/var/lib/app", "/logs/"]);
        let found = requests(&args(&["data:/var/lib/app/a"], &[], &["/t"]), &image).unwrap();
        let destinations: Vec<&str> = found.iter().map(|r| r.destination.as_str()).collect();
        assert_eq!(
            destinations,
            ["/t", "/logs", "/var/lib/app", "/var/lib/app/a"]
        );
        let covered = requests(&args(&["data:/var/lib/app"], &[], &[]), &image).unwrap();
        assert_eq!(covered.len(), 2);
        assert_eq!(covered[1].source.as_deref(), Some("data"));
        assert!(requests(&args(&[], &[], &[]), &image_with_volumes(&["rel"])).is_err());
        let dup = requests(&args(&["aa:/d"], &["type=tmpfs,dst=/d"], &[]), &image);
        assert!(dup
            .unwrap_err()
            .to_string()
            .starts_with("Duplicate mount point: /d"));
    }

    #[test]
    fn mounts_for_chapter_3_and_inspect() {
        let saved = SavedMount {
            kind: Kind::Volume,
            name: Some("data".into()),
            source: "/r/volumes/data/_data".into(),
            destination: "/data".into(),
            rw: false,
            mode: "ro".into(),
            nocopy: false,
            anonymous: false,
            created: true,
            options: vec![],
        };
        assert_eq!(
            saved.mount(),
            Mount::new(
                "/data",
                "bind",
                "/r/volumes/data/_data",
                &["rbind", "ro", "rro"]
            )
        );
        let json = saved.inspect();
        assert_eq!(json["Type"], "volume");
        assert_eq!(json["Name"], "data");
        assert_eq!(json["Driver"], "local");
        assert_eq!(json["RW"], false);
        let tmpfs = SavedMount {
            kind: Kind::Tmpfs,
            name: None,
            source: String::new(),
            options: vec!["noexec".into()],
            rw: true,
            ..saved
        };
        assert_eq!(
            tmpfs.mount(),
            Mount::new("/data", "tmpfs", "tmpfs", &["noexec", "rw"])
        );
        assert!(tmpfs.inspect().get("Name").is_none());
    }
}
