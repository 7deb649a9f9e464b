//! Volumes on disk: a directory the engine keeps, outside every
//! container, so it outlives them all (docker's `local` driver).
//!
//! ```text
//! ROOT/volumes/.lock                 held while volumes are made or removed
//! ROOT/volumes/<name>/_data/         what containers see (bind-mounted)
//! ROOT/volumes/<name>/volume.json    Name, CreatedAt, Driver, Labels, Options, Anonymous
//! ROOT/volumes/<name>/seed.lock      held while the volume is seeded (see `seed`)
//! ```
//!
//! A volume exists once its `volume.json` does: it is written last, with
//! chapter 1's `durable` write (temp + fsync + rename), so a crash halfway
//! leaves a directory without one, which the next `volume create` of that
//! name completes and `volume prune` removes. Making one and removing one
//! both hold `ROOT/volumes/.lock`: ten `run -v data:/x` at once make one
//! volume, and `volume rm` never removes one a new container just claimed
//! by name while it was checking.
//!
//! Named volumes have the name you give; anonymous ones (`-v /path`, an
//! image's `VOLUME`) get 64 random hex digits, as docker's do.

use ch01_images::durable::{self, Flush};
use ch01_images::error::{Error, IoContext, Result};
use ch01_images::explain;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

// ANCHOR: volume_json
/// `volume.json`: a volume as `volume inspect` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    /// RFC 3339, as docker prints it.
    pub created_at: String,
    /// Always `local`: a directory on this machine.
    pub driver: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Made for one container (`-v /path`, an image's VOLUME), not named
    /// by anyone: `rm -v`, `run --rm` and `volume prune` remove these.
    #[serde(default)]
    pub anonymous: bool,
}
// ANCHOR_END: volume_json

/// `ROOT/volumes`.
pub fn volumes_dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

/// `ROOT/volumes/<name>`.
pub fn volume_dir(root: &Path, name: &str) -> PathBuf {
    volumes_dir(root).join(name)
}

/// `ROOT/volumes/<name>/_data`: what a container mounts.
pub fn data_dir(root: &Path, name: &str) -> PathBuf {
    volume_dir(root, name).join("_data")
}

/// Takes `ROOT/volumes/.lock` (making `ROOT/volumes`, mode 0700: the
/// engine's own, as the rest of its root).
pub fn lock(root: &Path) -> Result<durable::Lock> {
    let dir = volumes_dir(root);
    if !dir.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .context("creating", &dir)?;
    }
    durable::lock(&dir.join(".lock"))
}

/// 64 random hex digits: an anonymous volume's name.
pub fn anonymous_name() -> Result<String> {
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading", Path::new("/dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The volume `name`, if it exists (its `volume.json` is readable).
pub fn get(root: &Path, name: &str) -> Option<Volume> {
    let bytes = fs::read(volume_dir(root, name).join("volume.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Every volume, by name.
pub fn list(root: &Path) -> Vec<Volume> {
    let mut volumes: Vec<Volume> = fs::read_dir(volumes_dir(root))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| get(root, &e.file_name().to_string_lossy()))
        .collect();
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    volumes
}

// ANCHOR: ensure
/// The volume `name`, made if missing (under the lock): returns it and
/// whether this call made it. An existing volume keeps its labels.
pub fn ensure(
    root: &Path,
    name: &str,
    labels: &BTreeMap<String, String>,
    anonymous: bool,
) -> Result<(Volume, bool)> {
    let _lock = lock(root)?;
    ensure_locked(root, name, labels, anonymous)
}

/// [`ensure`] for a container being created (`container` is its ID), which
/// also **claims** the volume under the same lock: `claims/<id>` in the
/// volume's directory. Until the container's config names the volume,
/// the claim is what tells `volume rm` and `volume prune` (see [`users`])
/// that the volume is taken; without it, they could remove it between
/// this call and the moment the config is written.
pub fn ensure_for(
    root: &Path,
    name: &str,
    labels: &BTreeMap<String, String>,
    anonymous: bool,
    container: &str,
) -> Result<(Volume, bool)> {
    let _lock = lock(root)?;
    let made = ensure_locked(root, name, labels, anonymous)?;
    let claims = volume_dir(root, name).join("claims");
    fs::create_dir_all(&claims).context("creating", &claims)?;
    let claim = claims.join(container);
    fs::write(&claim, b"").context("writing", &claim)?;
    Ok(made)
}

/// Forgets the claim of `container` on volume `name` (it may be gone).
pub fn drop_claim(root: &Path, name: &str, container: &str) {
    let _ = fs::remove_file(volume_dir(root, name).join("claims").join(container));
}

fn ensure_locked(
    root: &Path,
    name: &str,
    labels: &BTreeMap<String, String>,
    anonymous: bool,
) -> Result<(Volume, bool)> {
    if let Some(volume) = get(root, name) {
        return Ok((volume, false));
    }
    let dir = volume_dir(root, name);
    let data = dir.join("_data");
    explain::step(
        &format!("create volume {name}"),
        Some(&format!("mkdir -p {}", data.display())),
    );
    // A directory without volume.json is a creation a crash interrupted:
    // completed here (its `_data` kept, should anything be in it).
    fs::create_dir_all(&data).context("creating", &data)?;
    let volume = Volume {
        name: name.to_string(),
        created_at: ch03_run::logs::rfc3339(ch03_run::record::now()),
        driver: "local".into(),
        labels: labels.clone(),
        options: BTreeMap::new(),
        anonymous,
    };
    let json = serde_json::to_vec_pretty(&volume).expect("serializes");
    durable::write_flushing(&dir.join("volume.json"), &json, Flush::ToDisk)?;
    Ok((volume, true))
}
// ANCHOR_END: ensure

/// The IDs of the containers (running or not) whose config names volume
/// `name` (see `extension`), and of those being created right now that
/// claimed it (see [`ensure_for`]; a claim whose container is gone, or
/// was created since, counts no more).
pub fn users(root: &Path, name: &str) -> Vec<String> {
    let mut users: Vec<String> = ch03_run::find::list(root)
        .iter()
        .filter(|config| crate::extension::volume_names(config).any(|n| n == name))
        .map(|config| config.id.clone())
        .collect();
    let claims = fs::read_dir(volume_dir(root, name).join("claims"));
    for entry in claims.into_iter().flatten().flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let container = ch03_run::record::containers_dir(root).join(&id);
        if !users.contains(&id) && ch03_run::record::being_created(&container) {
            users.push(id);
        }
    }
    users
}

// ANCHOR: remove
/// Removes volume `name` unless a container uses it (docker's message,
/// exit code 1). Its `volume.json` goes first: a crash halfway leaves a
/// directory `volume prune` removes, never a volume with half its data.
pub fn remove(root: &Path, name: &str) -> Result<()> {
    let _lock = lock(root)?;
    remove_locked(root, name)
}

/// [`remove`], with `ROOT/volumes/.lock` held by the caller.
pub fn remove_locked(root: &Path, name: &str) -> Result<()> {
    if get(root, name).is_none() {
        return Err(Error::new(format!("get {name}: no such volume")).with_exit_code(1));
    }
    let users = users(root, name);
    if !users.is_empty() {
        return Err(Error::new(format!(
            "remove {name}: volume is in use - [{}] — remove those containers first (rm), then the volume",
            users.join(", ")
        ))
        .with_exit_code(1));
    }
    remove_dir(root, name)
}
// ANCHOR_END: remove

/// Deletes a volume's directory (no checks: the caller made them).
pub fn remove_dir(root: &Path, name: &str) -> Result<()> {
    let dir = volume_dir(root, name);
    explain::step(
        &format!("remove volume {name}"),
        Some(&format!("rm -rf {}", dir.display())),
    );
    let json = dir.join("volume.json");
    match fs::remove_file(&json) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ch01_images::error::io_error("removing", &json, e)),
    }
    ch02_layers::unpack::remove_any(&dir)
}

/// Bytes under `path` (files counted once per name; symlinks not followed).
pub fn size(path: &Path) -> u64 {
    let Ok(meta) = path.symlink_metadata() else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| size(&e.path()))
        .sum()
}

/// Directories under `ROOT/volumes` with no readable `volume.json` (a
/// creation interrupted by a crash): `volume prune` removes them. The
/// caller holds the lock.
pub fn half_made(root: &Path) -> Vec<String> {
    fs::read_dir(volumes_dir(root))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.') && get(root, name).is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(label: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("crabbox-vol-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        root
    }

    #[test]
    fn ensure_makes_once_and_remove_removes() {
        let root = temp_root("ensure");
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let (made, created) = ensure(&root, "data", &labels, false).unwrap();
        assert!(created);
        assert_eq!(made.driver, "local");
        let (again, created) = ensure(&root, "data", &BTreeMap::new(), false).unwrap();
        assert!(!created);
        assert_eq!(again.labels, labels);
        assert!(data_dir(&root, "data").is_dir());
        assert_eq!(list(&root).len(), 1);
        // A crash before volume.json: completed by the next ensure.
        fs::create_dir_all(data_dir(&root, "half")).unwrap();
        assert_eq!(half_made(&root), ["half"]);
        assert!(ensure(&root, "half", &BTreeMap::new(), false).unwrap().1);
        assert!(half_made(&root).is_empty());
        remove(&root, "data").unwrap();
        assert!(!volume_dir(&root, "data").exists());
        let missing = remove(&root, "data").unwrap_err();
        assert_eq!(missing.exit_code(), 1);
        assert_eq!(missing.to_string(), "get data: no such volume");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_volume_claimed_by_a_container_being_created_is_in_use() {
        let root = temp_root("claim");
        let id = "c".repeat(64);
        let container = ch03_run::record::containers_dir(&root).join(&id);
        fs::create_dir_all(&container).unwrap();
        // The container is being created: its lock is held, no state yet.
        let creating = ch03_run::record::lock(&container).unwrap();
        ensure_for(&root, "data", &BTreeMap::new(), false, &id).unwrap();
        assert_eq!(users(&root, "data"), std::slice::from_ref(&id));
        let refused = remove(&root, "data").unwrap_err();
        assert!(
            refused.to_string().contains("volume is in use"),
            "{refused}"
        );
        // Its creator died (lock released, no state): the claim counts no more.
        drop(creating);
        assert!(users(&root, "data").is_empty());
        remove(&root, "data").unwrap();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn anonymous_names_are_64_hex() {
        let name = anonymous_name().unwrap();
        assert_eq!(name.len(), 64);
        assert!(name.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(ch03_run::names::valid_name(&name));
    }
}
