//! One filesystem step of a build: a root filesystem, a change, a layer.
//!
//! ```text
//!  layers so far ──▶ overlay (lower) + a fresh upper dir ──▶ mounted at merged/
//!        RUN: a container over merged/   COPY: files written into merged/
//!  unmount ──▶ the upper dir holds exactly what changed
//!        ──▶ tar it (chapter 2's diff) ──▶ gzip ──▶ a blob in the store
//!        ──▶ rename the upper dir itself into ROOT/layers/<diff id>
//! ```
//!
//! The upper dir is already in overlay notation, which is what chapter 2's
//! layer store keeps; renaming it saves unpacking the blob we just made.
//!
//! Three precautions make the layer right:
//!
//! * the overlay is mounted with `redirect_dir=off`, `metacopy=off` and
//!   `index=off` (chapter 2's `Rootfs::with_overlay_options`): a directory
//!   renamed by RUN is copied up whole, so the upper dir diffs correctly;
//! * a RUN step mounts `/proc`, `/dev`, `/sys`, `/etc/hosts`… and chapter
//!   3 creates their mount points when the image lacks them: those empty
//!   stubs are taken out of the upper dir, as buildkit does, or every image
//!   built `FROM scratch` would grow them;
//! * the build works in a mount namespace of its own
//!   ([`private_mounts`]): a build killed in the middle leaves no overlay
//!   mounted behind it, since its mounts die with it. What it leaves on
//!   disk (`ROOT/builds/<pid>/`) the next build removes
//!   ([`remove_leftovers`]).

use crate::cache::Layer;
use ch01_images::digest::{Digest, DigestWriter};
use ch01_images::durable::Flush;
use ch01_images::error::{Error, IoContext, Result};
use ch01_images::explain;
use ch01_images::manifest::{self, Descriptor, RunConfig};
use ch01_images::store::Store;
use ch02_layers::layer_store::LayerStore;
use ch02_layers::rootfs::Rootfs;
use ch03_run::hooks::NarrateHooks;
use ch03_run::spec::{Mount, Overrides, SpecBuilder};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The overlay options of a build step (see the module's doc).
pub const OVERLAY_OPTIONS: [&str; 3] = ["redirect_dir=off", "metacopy=off", "index=off"];

/// The hostname of a RUN step, as buildkit's `buildkitsandbox`.
pub const HOSTNAME: &str = "crabbox-build";

// ANCHOR: private_mounts
/// Gives this process a mount namespace of its own, with every mount
/// private: what the build mounts from now on is invisible to the host,
/// and unmounted by the kernel when the process ends, even by SIGKILL.
pub fn private_mounts() -> Result<()> {
    use nix::mount::{mount, MsFlags};
    explain::step(
        "work in a mount namespace of our own: a killed build leaves no mount behind",
        Some("unshare --mount --propagation private"),
    );
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| Error::new(format!("unshare(CLONE_NEWNS): {e} — building needs root")))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::new(format!("making the build's mounts private: {e}")))
}
// ANCHOR_END: private_mounts

/// Where one build works: `ROOT/builds/<pid>/`, locked while it runs.
pub struct Workspace {
    pub dir: PathBuf,
    _lock: nix::fcntl::Flock<File>,
    steps: usize,
}

impl Workspace {
    /// Removes what interrupted builds left, then makes this build's directory.
    pub fn create(root: &Path) -> Result<Workspace> {
        remove_leftovers(root)?;
        let dir = root.join("builds").join(std::process::id().to_string());
        ch02_layers::unpack::remove_any(&dir)?;
        fs::create_dir_all(&dir).context("creating", &dir)?;
        let lock = try_lock(&dir.join("lock"))?
            .ok_or_else(|| Error::new(format!("{} is in use by another build", dir.display())))?;
        Ok(Workspace {
            dir,
            _lock: lock,
            steps: 0,
        })
    }

    /// A new directory for the next step.
    pub fn next_step(&mut self) -> PathBuf {
        self.steps += 1;
        self.dir.join(format!("step-{}", self.steps))
    }

    /// The cgroup of the next RUN step (its devices rules, as a container's).
    pub fn cgroup_id(&self) -> String {
        format!("build-{}-{}", std::process::id(), self.steps)
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = ch02_layers::unpack::remove_any(&self.dir);
    }
}

/// An exclusive lock on `path`, or `None` if another process holds it.
fn try_lock(path: &Path) -> Result<Option<nix::fcntl::Flock<File>>> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .context("opening", path)?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::new(format!("locking {}: {e}", path.display()))),
    }
}

// ANCHOR: leftovers
/// Removes the directories (and RUN cgroups) of builds that were killed:
/// a build's directory whose lock nobody holds any more. Its mounts died
/// with it (see [`private_mounts`]); if one is still mounted (a build of
/// an engine without that precaution) it is unmounted first. Returns how
/// many builds left something.
pub fn remove_leftovers(root: &Path) -> Result<usize> {
    let builds = root.join("builds");
    let mut removed = 0;
    for entry in fs::read_dir(&builds).into_iter().flatten().flatten() {
        let dir = entry.path();
        let Some(_lock) = try_lock(&dir.join("lock")).ok().flatten() else {
            continue; // a build still running
        };
        for mounted in mounts_under(&dir) {
            let _ = nix::mount::umount2(mounted.as_path(), nix::mount::MntFlags::MNT_DETACH);
        }
        let pid = entry.file_name().to_string_lossy().into_owned();
        for cgroup in leftover_cgroups(&pid) {
            let resources = ch03_run::spec::Resources {
                cgroup,
                ..Default::default()
            };
            let _ = ch03_run::cgroups::remove(&resources);
        }
        explain::step(
            &format!("remove what an interrupted build left in {}", dir.display()),
            Some(&format!("rm -rf {}", dir.display())),
        );
        ch02_layers::unpack::remove_any(&dir)?;
        removed += 1;
    }
    Ok(removed)
}
// ANCHOR_END: leftovers

/// Mount points below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p.starts_with(&prefix))
        .map(PathBuf::from)
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// `crabbox/build-<pid>-N` cgroups of a killed build, in any hierarchy.
fn leftover_cgroups(pid: &str) -> Vec<String> {
    let prefix = format!("build-{pid}-");
    let mut names = std::collections::BTreeSet::new();
    let hierarchies = fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain(std::iter::once(PathBuf::from("/sys/fs/cgroup")));
    for hierarchy in hierarchies {
        for entry in fs::read_dir(hierarchy.join("crabbox"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                names.insert(format!("crabbox/{name}"));
            }
        }
    }
    names.into_iter().collect()
}

/// The root filesystem of one step, mounted.
pub struct StepRoot {
    rootfs: Option<Rootfs>,
    dir: PathBuf,
}

impl StepRoot {
    // ANCHOR: prepare
    /// Mounts `layers` (bottom first) with a fresh upper dir, in `dir`.
    pub fn mount(root: &Path, store: &Store, layers: &[Layer], dir: &Path) -> Result<StepRoot> {
        let list: Vec<(&Descriptor, &Digest)> =
            layers.iter().map(|l| (&l.descriptor, &l.diff_id)).collect();
        let merged = dir.join("merged");
        let rootfs = Rootfs::prepare_layers(root, store, &list, dir, &merged, Flush::Later)?
            .with_overlay_options(&OVERLAY_OPTIONS);
        let step = StepRoot {
            rootfs: Some(rootfs),
            dir: dir.to_path_buf(),
        };
        if list.is_empty() {
            // FROM scratch: nothing to lay over, the upper dir is the tree.
            fs::remove_dir(&merged).context("removing", &merged)?;
            std::os::unix::fs::symlink("upper", &merged).context("creating", &merged)?;
        } else {
            step.rootfs().mount()?;
        }
        Ok(step)
    }
    // ANCHOR_END: prepare

    fn rootfs(&self) -> &Rootfs {
        self.rootfs
            .as_ref()
            .expect("a step root is used before it is finished")
    }

    /// The merged tree: the step's `/`.
    pub fn merged(&self) -> PathBuf {
        self.dir.join("merged")
    }

    // ANCHOR: finish
    /// Unmounts and turns what changed into a layer: `None` if nothing did
    /// (`stubs`: mount points the step created, taken out first).
    pub fn finish(mut self, store: &Store, stubs: &Stubs) -> Result<Option<Layer>> {
        let rootfs = self.rootfs.take().expect("finished once");
        if ch02_layers::overlay::is_mounted(&rootfs.target) {
            rootfs.unmount()?;
        }
        let upper = rootfs.upper().to_path_buf();
        stubs.remove_from(&upper)?;
        let layer = if is_empty_dir(&upper)? {
            None
        } else {
            let layer = write_layer(store, &upper)?;
            let layers = LayerStore::open(store.root())?;
            layers.adopt(&upper, &layer.diff_id)?;
            Some(layer)
        };
        rootfs.remove()?;
        Ok(layer)
    }
    // ANCHOR_END: finish
}

impl Drop for StepRoot {
    /// A step that failed: unmount, forget its upper dir.
    fn drop(&mut self) {
        if let Some(rootfs) = self.rootfs.take() {
            let _ = rootfs.remove();
        }
    }
}

fn is_empty_dir(dir: &Path) -> Result<bool> {
    Ok(fs::read_dir(dir).context("reading", dir)?.next().is_none())
}

// ANCHOR: write_layer
/// Writes the upper dir as a gzip-compressed tar into the store, hashing
/// the tar (its diff ID, which the config lists) and the gzip (its blob
/// digest, which the manifest lists) in the same single pass.
pub fn write_layer(store: &Store, upper: &Path) -> Result<Layer> {
    let tmp = store
        .tmp_dir()
        .join(format!("layer-{}-{}.tar.gz", std::process::id(), nanos()));
    let result = (|| {
        let file = File::create(&tmp).context("creating", &tmp)?;
        let gzip_hash = DigestWriter::new(BufWriter::with_capacity(256 << 10, file));
        // Level 1: a local layer is read back at once; speed matters more
        // than the last few percent of size.
        let gzip = flate2::write::GzEncoder::new(gzip_hash, flate2::Compression::fast());
        let mut tar_hash = DigestWriter::new(gzip);
        explain::step(
            "write what the step changed as a layer (tar | gzip), hashing both",
            Some(&format!(
                "tar -C {} -c . | tee >(sha256sum) | gzip -1 | tee >(sha256sum) > layer.tar.gz",
                upper.display()
            )),
        );
        ch02_layers::diff::write_layer(upper, &mut tar_hash)?;
        let (diff_id, _, gzip) = tar_hash.finish();
        let gzip_hash = gzip.finish().context("compressing", &tmp)?;
        let (digest, size, mut buffered) = gzip_hash.finish();
        buffered.flush().context("writing", &tmp)?;
        drop(buffered);
        if !store.has_blob(&digest) {
            store.write_blob(
                &digest,
                Some(size),
                File::open(&tmp).context("opening", &tmp)?,
                |_| {},
            )?;
        }
        Ok(Layer {
            descriptor: Descriptor::new(manifest::OCI_LAYER_GZIP, digest, size),
            diff_id,
        })
    })();
    let _ = fs::remove_file(&tmp);
    result
}
// ANCHOR_END: write_layer

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A directory's mode, uid and gid.
type Owner = (u32, u32, u32);

/// Mount points a RUN step may create in its root filesystem, and what
/// was there before, so that what it created can be taken out again.
#[derive(Debug, Default)]
pub struct Stubs {
    /// Paths (relative to `/`) that did not exist before the step.
    created: Vec<PathBuf>,
    /// Their parent directories, with the mode and owner they had before
    /// (`None`: created by the step too).
    parents: Vec<(PathBuf, Option<Owner>)>,
}

impl Stubs {
    // ANCHOR: stubs
    /// Looks at the mount points `destinations` in the tree at `merged`,
    /// before the step runs.
    pub fn survey(merged: &Path, destinations: &[String]) -> Stubs {
        let mut stubs = Stubs::default();
        for destination in destinations {
            let relative = PathBuf::from(destination.trim_start_matches('/'));
            if relative.as_os_str().is_empty() || merged.join(&relative).symlink_metadata().is_ok()
            {
                continue;
            }
            for parent in relative.ancestors().skip(1) {
                if parent.as_os_str().is_empty() || stubs.parents.iter().any(|(p, _)| p == parent) {
                    continue;
                }
                let before = merged
                    .join(parent)
                    .symlink_metadata()
                    .ok()
                    .map(|m| (m.mode(), m.uid(), m.gid()));
                stubs.parents.push((parent.to_path_buf(), before));
            }
            stubs.created.push(relative);
        }
        // Deepest first, so that a parent is looked at after its children.
        stubs
            .parents
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        stubs
    }

    /// Takes the stubs out of `upper`: an empty file or directory where
    /// nothing was before, then parents left empty that the step created
    /// or did not change.
    pub fn remove_from(&self, upper: &Path) -> Result<()> {
        for relative in &self.created {
            let path = upper.join(relative);
            if let Ok(meta) = path.symlink_metadata() {
                let empty_file = meta.is_file() && meta.len() == 0;
                if empty_file || (meta.is_dir() && is_empty_dir(&path)?) {
                    ch02_layers::unpack::remove_any(&path)?;
                }
            }
        }
        for (relative, before) in &self.parents {
            let path = upper.join(relative);
            let Ok(meta) = path.symlink_metadata() else {
                continue;
            };
            let unchanged = match before {
                Some(before) => *before == (meta.mode(), meta.uid(), meta.gid()),
                None => true,
            };
            let opaque = ch02_layers::unpack::get_xattr(&path, "trusted.overlay.opaque").is_some();
            if meta.is_dir() && unchanged && !opaque && is_empty_dir(&path)? {
                fs::remove_dir(&path).context("removing", &path)?;
            }
        }
        Ok(())
    }
    // ANCHOR_END: stubs
}

/// Runs `f` with this process's stdout and stderr going to the file
/// `log` (its children, a RUN step's process, inherit them), then puts
/// them back.
pub fn with_output_to<T>(log: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    use std::os::fd::AsRawFd;
    let file = File::create(log).context("creating", log)?;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let saved_out = nix::unistd::dup(1).map_err(|e| Error::new(format!("dup: {e}")))?;
    let saved_err = nix::unistd::dup(2).map_err(|e| Error::new(format!("dup: {e}")))?;
    let _ = nix::unistd::dup2(file.as_raw_fd(), 1);
    let _ = nix::unistd::dup2(file.as_raw_fd(), 2);
    let result = f();
    let _ = std::io::stdout().flush();
    let _ = nix::unistd::dup2(saved_out, 1);
    let _ = nix::unistd::dup2(saved_err, 2);
    let _ = nix::unistd::close(saved_out);
    let _ = nix::unistd::close(saved_err);
    result
}

// ANCHOR: prefixed_output
/// Runs `f` with this process's stdout and stderr going into a pipe (a
/// RUN step's process inherits them), read by a small process of ours
/// that prints each line after `prefix`: the step's output stays
/// readable among the build's own lines, as buildkit's `#5 0.31 …` does.
/// A forked process, not a thread: chapter 3 starts a container from a
/// single-threaded engine only.
pub fn with_prefixed_output<T>(prefix: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    use nix::unistd::{dup, dup2, fork, pipe, ForkResult};
    use std::os::fd::AsRawFd;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let (read_end, write_end) = pipe().map_err(|e| Error::new(format!("pipe: {e}")))?;
    // SAFETY: the engine is single-threaded here (no lock can be held by
    // another thread), and the child only reads, writes and exits.
    match unsafe { fork() }.map_err(|e| Error::new(format!("fork: {e}")))? {
        ForkResult::Child => {
            drop(write_end);
            // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            copy_with_prefix(File::from(read_end), prefix);
            // SAFETY: _exit ends this forked copy without running the
            // parent's destructors (its locks and directories are not ours).
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(read_end);
            let saved_out = dup(1).map_err(|e| Error::new(format!("dup: {e}")))?;
            let saved_err = dup(2).map_err(|e| Error::new(format!("dup: {e}")))?;
            let _ = dup2(write_end.as_raw_fd(), 1);
            let _ = dup2(write_end.as_raw_fd(), 2);
            drop(write_end);
            let result = f();
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            let _ = dup2(saved_out, 1);
            let _ = dup2(saved_err, 2);
            let _ = nix::unistd::close(saved_out);
            let _ = nix::unistd::close(saved_err);
            // The last writer is gone: the printer sees the end and exits.
            let _ = nix::sys::wait::waitpid(child, None);
            result
        }
    }
}
// ANCHOR_END: prefixed_output

/// Copies `input` to stdout line by line, each line after `prefix`.
fn copy_with_prefix(mut input: File, prefix: &str) {
    use std::io::Read;
    let mut out = std::io::stdout().lock();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let _ = out.write_all(prefix.as_bytes());
            let _ = out.write_all(&line);
        }
        let _ = out.flush();
    }
    if !pending.is_empty() {
        let _ = out.write_all(prefix.as_bytes());
        let _ = out.write_all(&pending);
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

/// What a RUN step runs, and as whom.
pub struct RunStep<'a> {
    /// The whole command line (the shell and its script, or exec form).
    pub args: Vec<String>,
    /// The stage's config: Env, User, WorkingDir.
    pub config: &'a RunConfig,
    /// ARGs in scope (and proxy variables) added to the environment.
    pub extra_env: Vec<String>,
    /// The step's cgroup name (devices rules).
    pub cgroup: String,
    /// More mounts (`RUN --mount=…`).
    pub mounts: Vec<Mount>,
    /// `RUN --network=none`: a network namespace of its own (only `lo`)
    /// instead of the host's network.
    pub own_network: bool,
}

// ANCHOR: run
/// Runs a RUN step in `step`'s root filesystem: a container in every
/// security sense (chapter 3's namespaces, capabilities, seccomp, masked
/// paths, devices cgroup), on the host's network, with no container
/// record. Returns the command's exit code.
pub fn run(step: &StepRoot, run: RunStep) -> Result<(i32, Stubs)> {
    let merged = step.merged();
    let hosts = step.dir.join("hosts");
    fs::write(
        &hosts,
        format!("127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
    )
    .context("writing", &hosts)?;
    let hostname = step.dir.join("hostname");
    fs::write(&hostname, format!("{HOSTNAME}\n")).context("writing", &hostname)?;
    let mut builder = SpecBuilder::new(&merged)
        .image(run.config)
        .overrides(Overrides {
            entrypoint: Some(String::new()),
            command: run.args,
            env: run.extra_env,
            ..Overrides::default()
        })
        .hostname(HOSTNAME)
        .mount(Mount::bind_file(&hosts, "/etc/hosts"))
        .mount(Mount::bind_file(&hostname, "/etc/hostname"))
        .resources(Some(
            ch03_run::cgroups::Limits::default().in_cgroup(&run.cgroup),
        ));
    if !run.own_network {
        builder = builder.host_network();
    }
    for mount in run.mounts {
        builder = builder.mount(mount);
    }
    let spec = builder.build()?;
    let destinations: Vec<String> = spec.mounts.iter().map(|m| m.destination.clone()).collect();
    let stubs = Stubs::survey(&merged, &destinations);
    let code = ch03_run::step::run_process(&spec, &mut NarrateHooks)?;
    Ok((code, stubs))
}
// ANCHOR_END: run

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_the_step_created_are_taken_out_and_nothing_else() {
        let base = std::env::temp_dir().join(format!("crabbox-stubs-{}", std::process::id()));
        let (merged, upper) = (base.join("merged"), base.join("upper"));
        fs::create_dir_all(merged.join("etc")).unwrap();
        fs::write(merged.join("etc/hosts"), b"").unwrap();
        let stubs = Stubs::survey(
            &merged,
            &[
                "/proc".into(),
                "/etc/hosts".into(),
                "/etc/hostname".into(),
                "/dev/pts".into(),
            ],
        );
        // What the step's upper dir holds afterwards: the stubs, and a
        // file the step wrote in a stub's parent.
        fs::create_dir_all(upper.join("proc")).unwrap();
        fs::create_dir_all(upper.join("dev/pts")).unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/hostname"), b"").unwrap();
        fs::write(upper.join("etc/motd"), b"hi").unwrap();
        stubs.remove_from(&upper).unwrap();
        let mut left: Vec<String> = walk(&upper);
        left.sort();
        assert_eq!(left, vec!["etc", "etc/motd"]);
        fs::remove_dir_all(&base).unwrap();
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                out.extend(
                    walk(&entry.path())
                        .into_iter()
                        .map(|c| format!("{name}/{c}")),
                );
            }
            out.push(name);
        }
        out
    }

    #[test]
    fn a_step_that_changed_nothing_is_seen_as_such() {
        let dir = std::env::temp_dir().join(format!("crabbox-empty-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert!(is_empty_dir(&dir).unwrap());
        fs::write(dir.join("x"), b"").unwrap();
        assert!(!is_empty_dir(&dir).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }
}
