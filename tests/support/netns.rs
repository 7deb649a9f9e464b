//! A network namespace a test makes for itself: the engine's "host" for
//! the bridge networking tests (chapter 6 on). Every engine command runs
//! in it through `nsenter --net=PATH --` (not `ip netns exec`, which also
//! makes a new mount namespace and remounts /sys: the next command would
//! not see the overlay mounts and monitors of the last one), so its
//! bridges, veths, iptables rules, sysctls and published ports are the
//! namespace's, never the machine's, and vanish with it.
//!
//! The namespace is held by a `sleep infinity` that `unshare --net` put
//! in it (killed by the kernel if the test's thread dies first). When the
//! [`Netns`] is dropped (also while a failed test unwinds), every process
//! still in *that* namespace (compared by the inode of `/proc/PID/ns/net`:
//! only processes this test started can be there) is killed, the holder
//! last, and the namespace goes with the last of them.

use crate::{Engine, Run};
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A network namespace of the test's own, removed when dropped.
pub struct Netns {
    holder: Child,
    path: PathBuf,
    inode: u64,
}

/// The inode of a namespace file (`/proc/PID/ns/net`), if it is there.
fn inode_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

impl Netns {
    /// A new namespace with `lo` up and nothing else.
    pub fn new() -> Netns {
        let mut command = Command::new("unshare");
        command
            .args(["--net", "--", "sleep", "infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; nothing else runs between
        // fork and exec. The holder dies with the thread that made it.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut holder = command.spawn().expect("unshare (util-linux)");
        let path = PathBuf::from(format!("/proc/{}/ns/net", holder.id()));
        let ours = inode_of(Path::new("/proc/self/ns/net")).expect("our own network namespace");
        // `unshare` makes the namespace, then becomes `sleep` (same PID):
        // its namespace is ours until then.
        let deadline = Instant::now() + Duration::from_secs(10);
        let inode = loop {
            if let Some(status) = holder.try_wait().expect("wait for unshare") {
                let mut stderr = String::new();
                if let Some(mut e) = holder.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                panic!("unshare --net failed ({status}): {stderr}");
            }
            match inode_of(&path) {
                Some(inode) if inode != ours => break inode,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "unshare --net did not make a namespace"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let netns = Netns {
            holder,
            path,
            inode,
        };
        netns.sh("ip link set lo up").ok();
        netns
    }

    /// `/proc/PID/ns/net` of the holder: what `nsenter --net=` takes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `program ARGS`, run inside the namespace.
    pub fn command<S: AsRef<OsStr>>(&self, program: impl AsRef<OsStr>, args: &[S]) -> Command {
        let mut net = std::ffi::OsString::from("--net=");
        net.push(&self.path);
        let mut command = Command::new("nsenter");
        command
            .arg(net)
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// The same command line as `inner` (program, arguments, environment,
    /// directory), run inside the namespace.
    pub fn wrap(&self, inner: &Command) -> Command {
        let args: Vec<&OsStr> = inner.get_args().collect();
        let mut command = self.command(inner.get_program(), &args);
        for (key, value) in inner.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        if let Some(dir) = inner.get_current_dir() {
            command.current_dir(dir);
        }
        command
    }

    /// `bash -c SCRIPT` inside the namespace.
    pub fn sh(&self, script: &str) -> Run {
        Run::from_output(
            self.command("bash", &["-c", script])
                .output()
                .expect("run nsenter"),
        )
    }

    /// The engine's command line for `binary ARGS` (its root, its
    /// DOCKER_CONFIG), inside the namespace.
    pub fn engine_command(&self, engine: &Engine, binary: &str, args: &[&str]) -> Command {
        self.wrap(&engine.command(binary, args))
    }

    /// `binary ARGS` on `engine`, inside the namespace.
    pub fn run(&self, engine: &Engine, binary: &str, args: &[&str]) -> Run {
        Run::from_output(
            self.engine_command(engine, binary, args)
                .output()
                .expect("run nsenter"),
        )
    }

    /// Is process `pid` in this namespace?
    pub fn holds(&self, pid: i32) -> bool {
        inode_of(Path::new(&format!("/proc/{pid}/ns/net"))) == Some(self.inode)
    }

    /// The processes in this namespace now (the holder among them).
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| self.holds(pid))
            .collect()
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let holder = self.holder.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let others: Vec<i32> = self.pids().into_iter().filter(|&p| p != holder).collect();
            if others.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in others.into_iter().filter(|&p| self.holds(p)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
