//! A host disk for the device tests: a file holding a secret, attached
//! to a loop device. Reading that device from a container would be
//! reading the host's disk (chapter 3's devices cgroup; chapter 5's RUN).

use crate::TempDir;
use std::fs;
use std::process::Command;

/// A file of the host holding a secret, attached to a loop device:
/// reading that device from a container would be reading the host's
/// disk. Detached (and the file removed) when dropped, also on failure.
pub struct LoopDevice {
    pub path: String,
    pub major: u32,
    pub minor: u32,
    pub secret: String,
    _dir: TempDir,
}

#[allow(clippy::new_without_default)] // it attaches a device: not a default value
impl LoopDevice {
    pub fn new() -> LoopDevice {
        let dir = TempDir::new("loop");
        let secret = format!("crabbox-host-secret-{}", std::process::id());
        let mut bytes = secret.clone().into_bytes();
        bytes.resize(1 << 20, 0);
        let file = dir.join("disk.img");
        fs::write(&file, bytes).unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&file)
            .output()
            .expect("losetup (util-linux)");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let rdev = std::os::unix::fs::MetadataExt::rdev(&fs::metadata(&path).unwrap());
        LoopDevice {
            major: nix::sys::stat::major(rdev) as u32,
            minor: nix::sys::stat::minor(rdev) as u32,
            path,
            secret,
            _dir: dir,
        }
    }

    /// The exploit: make a node of the host's disk and read it.
    pub fn mknod_and_read(&self, node: &str) -> String {
        format!(
            "rm -f {node}; mknod {node} b {} {} && echo mknod worked && head -c 64 {node}",
            self.major, self.minor
        )
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.path]).output();
    }
}
