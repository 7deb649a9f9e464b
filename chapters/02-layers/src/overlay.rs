//! overlayfs: many read-only layers and one writable one, seen as one tree.
//!
//! ```text
//! mount -t overlay overlay -o lowerdir=TOP:…:BOTTOM,upperdir=U,workdir=W MERGED
//! ```
//!
//! * **lowerdir**: the image's layers, read-only, the *first* one on top;
//! * **upperdir**: the container's own writable layer; every change lands
//!   here (a file changed in a lower layer is first copied up whole);
//! * **workdir**: scratch space overlayfs needs on the same filesystem as
//!   the upper directory;
//! * **MERGED**: where the combined tree appears.
//!
//! The options are passed to the kernel as one string that must fit in one
//! page (4096 bytes). Full paths such as
//! `/var/lib/crabbox/layers/<64 hex>` are about 90 bytes each: fewer than 45
//! layers would fit. So we mount from inside the layer store (`chdir`) and
//! name each layer by its short link `l/<12 hex>` (15 bytes): room for
//! about 250.
//!
//! **volatile** (Linux 5.10+): overlayfs normally flushes the upper
//! directory's filesystem to disk when it is unmounted (a `sync`, several
//! milliseconds). A writable layer that is thrown away right after (a
//! `run --rm` container, a build step) needs no such flush: the option
//! skips it. The price: after a crash such an upper dir cannot be mounted
//! again, which is fine for something that was going to be deleted
//! (podman mounts its `--rm` containers this way too).

use ch01_images::error::{Error, Result};
use ch01_images::explain;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};

/// The filesystem magic number of overlayfs (statfs f_type).
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
/// The kernel's limit for mount options: one page.
const PAGE_SIZE: usize = 4096;

/// Everything an overlay mount needs.
#[derive(Clone, Debug)]
pub struct OverlayMount {
    /// The directory the lower names are relative to (the layer store).
    pub base: PathBuf,
    /// Lower layer names relative to `base`, the TOP layer first.
    pub lowers: Vec<String>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub target: PathBuf,
    /// Mount with `volatile`: no flush to disk (see the module's doc).
    pub volatile: bool,
    /// More options, e.g. `redirect_dir=off` for a writable layer that
    /// will become an image layer (chapter 5's build steps, see
    /// [`crate::rootfs::Rootfs::with_overlay_options`]).
    pub extra: Vec<String>,
}

impl OverlayMount {
    /// The `-o` options string.
    pub fn options(&self) -> String {
        let mut options = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lowers.join(":"),
            self.upper.display(),
            self.work.display()
        );
        if self.volatile {
            options.push_str(",volatile");
        }
        for option in &self.extra {
            options.push(',');
            options.push_str(option);
        }
        options
    }

    // ANCHOR: mount
    /// Mounts the overlay at `target`.
    pub fn mount(&self) -> Result<()> {
        if on_overlayfs(&self.upper) {
            return Err(Error::new(format!(
                "{} is itself on overlayfs (are you inside a container?); overlayfs cannot use it as an upper dir — use --root on another filesystem",
                self.upper.display()
            )));
        }
        let options = self.options();
        if options.len() >= PAGE_SIZE {
            return Err(Error::new(format!(
                "too many layers ({}): the overlay mount options would be {} bytes, over the kernel's one-page limit",
                self.lowers.len(),
                options.len()
            )));
        }
        explain::step(
            &format!(
                "mount the image's {} (read-only) under a writable layer, as one tree",
                match self.lowers.len() {
                    1 => "layer".to_string(),
                    n => format!("{n} layers"),
                }
            ),
            Some(&format!(
                "cd {} && mount -t overlay overlay -o {options} {}",
                self.base.display(),
                self.target.display()
            )),
        );
        // Relative lowerdir names are resolved from the current directory.
        // The engine is single-threaded here, so changing it is safe.
        let previous = std::env::current_dir().ok();
        nix::unistd::chdir(&self.base)
            .map_err(|e| Error::new(format!("cd {}: {e}", self.base.display())))?;
        let mount_with = |options: &str| {
            mount(
                Some("overlay"),
                &self.target,
                Some("overlay"),
                MsFlags::empty(),
                Some(options),
            )
        };
        let mut result = mount_with(&options);
        if !self.extra.is_empty() && result == Err(nix::errno::Errno::EINVAL) {
            // An older kernel that does not know an option (`metacopy`
            // came in 4.19) does not have the feature it turns off either.
            let known = OverlayMount {
                extra: self
                    .extra
                    .iter()
                    .filter(|o| !o.ends_with("=off") || o.starts_with("redirect_dir"))
                    .cloned()
                    .collect(),
                ..self.clone()
            };
            result = mount_with(&known.options());
        }
        if self.volatile && result == Err(nix::errno::Errno::EINVAL) {
            // A kernel older than 5.10 does not know `volatile`: mount
            // without it (the same tree, only slower to unmount).
            let plain = OverlayMount {
                volatile: false,
                ..self.clone()
            };
            result = mount_with(&plain.options());
        }
        if let Some(previous) = previous {
            let _ = nix::unistd::chdir(&previous);
        }
        result.map_err(|e| {
            let hint = match e {
                nix::errno::Errno::EPERM => " — mounting needs root (sudo)",
                nix::errno::Errno::ENODEV => " — this kernel has no overlayfs (modprobe overlay)",
                _ => "",
            };
            Error::new(format!(
                "mount -t overlay at {}: {e}{hint}",
                self.target.display()
            ))
        })
    }
    // ANCHOR_END: mount
}

/// Unmounts whatever is mounted at `target`.
pub fn unmount(target: &Path) -> Result<()> {
    explain::step(
        &format!("unmount {}", target.display()),
        Some(&format!("umount {}", target.display())),
    );
    umount2(target, MntFlags::empty())
        .map_err(|e| Error::new(format!("umount {}: {e}", target.display())))
}

/// Is `path` a mount point with overlayfs mounted, per /proc/self/mountinfo?
pub fn is_mounted(target: &Path) -> bool {
    let Ok(canonical) = target.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = canonical.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

/// Is this path on an overlayfs filesystem?
fn on_overlayfs(path: &Path) -> bool {
    let probe = if path.exists() {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    nix::sys::statfs::statfs(probe).is_ok_and(|s| s.filesystem_type().0 == OVERLAYFS_SUPER_MAGIC)
}
