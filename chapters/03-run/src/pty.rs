//! `-t`: a pseudo-terminal for the container.
//!
//! A terminal is a pair of ends: programs read and write the *slave*
//! (`/dev/pts/N`), which behaves like a real terminal (line editing,
//! echo, Ctrl-C turning into SIGINT, a window size); whoever holds the
//! *master* plays the keyboard and the screen. With `-t`:
//!
//! * the container's PID 1 opens a new pair in the container's own devpts
//!   (so `tty` inside says `/dev/pts/0`), binds the slave over
//!   `/dev/console`, and sends the master to the engine through a Unix
//!   socket (`SCM_RIGHTS` passes a file descriptor between processes);
//! * it makes the slave its stdin, stdout and stderr, and its
//!   *controlling terminal* (`setsid` + `ioctl(TIOCSCTTY)`), so the shell
//!   gets job control and Ctrl-C;
//! * the engine puts the caller's terminal in *raw* mode (every key goes
//!   through untouched; the container's terminal does the cooking), copies
//!   its window size (again on every SIGWINCH), and copies bytes both ways
//!   until the container exits, then restores the caller's terminal.
//!
//! This is what runc does for `docker run -it` (`--console-socket`).

use ch01_images::error::{Error, Result};
use ch01_images::explain;
use clap::Args;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

// ANCHOR: args
/// `run`'s terminal flags (`-i` is `run`'s own).
#[derive(Args, Clone, Debug, Default)]
pub struct TerminalArgs {
    /// Allocate a pseudo-terminal for the container (with -i: an interactive shell)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Run a tiny init as PID 1 that forwards signals and reaps zombies
    #[arg(long)]
    pub init: bool,
}
// ANCHOR_END: args

/// The engine's end of a container's terminal, from `spawn` (which
/// receives it) to `wait` (which relays it) or the monitor (which logs
/// what comes out of it).
#[derive(Debug)]
pub struct Master {
    /// The master's descriptor.
    pub fd: OwnedFd,
    /// `-i`: whether the caller's stdin is copied in.
    pub stdin: bool,
}

/// A connected pair of Unix sockets (close-on-exec), to pass the master.
pub fn socket_pair() -> Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::new(format!("socketpair: {e}")))
}

/// Opens a new terminal pair in the devpts mounted at `pts` (the
/// container's own): the master (unlocked) and the slave, with the
/// slave's number (`/dev/pts/N`).
pub fn open_pair(pts: &Path) -> Result<(OwnedFd, OwnedFd, u32), String> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let ptmx = pts.join("ptmx");
    let master = open(
        &ptmx,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open {}: {e}", ptmx.display()))?;
    // SAFETY: `open` returned a new descriptor that we own.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let mut unlock: libc::c_int = 0;
    let mut number: libc::c_uint = 0;
    // SAFETY: ioctls on a ptmx descriptor with pointers to integers we own.
    unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock) != 0
            || libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) != 0
        {
            return Err(format!(
                "unlocking the terminal: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let slave_path = pts.join(number.to_string());
    let slave = open(
        &slave_path,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open {}: {e}", slave_path.display()))?;
    // SAFETY: as above.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    Ok((master, slave, number))
}

// ANCHOR: open
/// In the container, before `pivot_root` (`rootfs` is where the new root
/// is): opens a new terminal pair in the container's devpts, binds the
/// slave over /dev/console, sends the master through `socket`. Returns the
/// slave, for [`make_controlling`] once the root is pivoted.
pub fn open_in_container(rootfs: &Path, socket: RawFd) -> Result<OwnedFd, String> {
    explain::step(
        "-t: open a new pseudo-terminal in the container's own /dev/pts",
        Some("exec 3<>/dev/pts/ptmx   # the master; the slave is /dev/pts/0"),
    );
    let (master, slave, number) = open_pair(&rootfs.join("dev/pts"))?;
    let slave_path = rootfs.join(format!("dev/pts/{number}"));
    let console = rootfs.join("dev/console");
    if !console.exists() {
        std::fs::write(&console, b"").map_err(|e| format!("creating /dev/console: {e}"))?;
    }
    explain::step(
        "-t: the terminal is also the container's /dev/console",
        Some(&format!("mount --bind /dev/pts/{number} /dev/console")),
    );
    nix::mount::mount(
        Some(&slave_path),
        &console,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("bind /dev/pts/{number} on /dev/console: {e}"))?;
    send_fd(socket, master.as_fd()).map_err(|e| format!("sending the terminal: {e}"))?;
    Ok(slave)
}
// ANCHOR_END: open

/// Makes `slave` the stdin, stdout, stderr and controlling terminal of this
/// process (a session leader without a terminal yet).
pub fn make_controlling(slave: OwnedFd) -> Result<(), String> {
    explain::step(
        "-t: the terminal becomes stdin, stdout, stderr and the controlling terminal",
        Some("setsid -c sh <>/dev/pts/0 >&0 2>&0"),
    );
    for fd in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), fd).map_err(|e| format!("dup2 terminal: {e}"))?;
    }
    drop(slave);
    // SAFETY: an ioctl with an integer argument.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(format!("TIOCSCTTY: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn send_fd(socket: RawFd, fd: BorrowedFd) -> nix::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd.as_raw_fd()];
    let control = [ControlMessage::ScmRights(&fds)];
    let data = [IoSlice::new(b"m")];
    sendmsg::<()>(socket, &data, &control, MsgFlags::empty(), None)?;
    Ok(())
}

/// Receives the master the container sends; `None` when the socket closes
/// without one (setup failed; the report pipe says why).
pub fn receive_master(socket: &OwnedFd) -> Option<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut data = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut data,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    for cmsg in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel just installed these descriptors for us.
            return fds.first().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    None
}

/// The caller's terminal in raw mode; restored when dropped.
struct RawMode(Termios);

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, &self.0);
    }
}

/// Copies the caller's window size to the container's terminal.
fn copy_window_size(master: RawFd) {
    // SAFETY: a zeroed winsize is valid; ioctls with pointers we own.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut size) == 0 {
            libc::ioctl(master, libc::TIOCSWINSZ, &size);
        }
    }
}

/// Writes all of `bytes` to `fd` (straight to the descriptor: no buffer
/// between the container's terminal and the caller's).
fn write_all(fd: BorrowedFd, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Reads what is there: the number of bytes, or `None` at the end (or on
/// an error: a terminal's master says EIO once every slave is closed).
fn read(fd: BorrowedFd, buf: &mut [u8]) -> Option<usize> {
    match nix::unistd::read(fd.as_raw_fd(), buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

// ANCHOR: relay
/// The engine's side of `-t`: raw mode, window size, bytes both ways (the
/// caller's stdin only with `-i`), signals forwarded, until PID 1 exits.
/// Returns docker's exit code.
pub fn relay(master: OwnedFd, pid: Pid, stdin: bool, watched: &SigSet) -> Result<i32> {
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut signals = *watched;
    signals.add(Signal::SIGWINCH);
    signals
        .thread_block()
        .map_err(|e| Error::new(format!("blocking signals: {e}")))?;
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::new(format!("signalfd: {e}")))?;
    let is_tty = nix::unistd::isatty(0).unwrap_or(false);
    if is_tty {
        copy_window_size(master.as_raw_fd());
    }
    explain::step(
        "-t: the caller's terminal goes raw; bytes are copied both ways until the container exits",
        Some("stty raw -echo"),
    );
    let _raw = if is_tty && stdin {
        RawMode::enter()
    } else {
        None
    };
    let m = master.as_fd();
    let stdin_fd = std::io::stdin();
    let stdout_fd = std::io::stdout();
    let mut stdin_open = stdin;
    let mut master_open = true;
    let mut buf = [0u8; 8192];
    let code = 'outer: loop {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = vec![PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN)];
        if master_open {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin_fd.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::new(format!("poll: {e}"))),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut i = 1;
        if master_open {
            if ready[i] {
                match read(m, &mut buf) {
                    Some(n) => {
                        write_all(stdout_fd.as_fd(), &buf[..n]);
                    }
                    // EIO: every slave descriptor is closed.
                    None => master_open = false,
                }
            }
            i += 1;
        }
        if stdin_open && ready[i] {
            match read(stdin_fd.as_fd(), &mut buf) {
                Some(n) => {
                    write_all(m, &buf[..n]);
                }
                None => stdin_open = false,
            }
        }
        if ready[0] {
            while let Ok(Some(info)) = signal_fd.read_signal() {
                let signal = Signal::try_from(info.ssi_signo as i32).ok();
                match signal {
                    Some(Signal::SIGCHLD) => {
                        let status = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                        if let Some(code) = status.ok().and_then(crate::process::exit_code) {
                            break 'outer code;
                        }
                    }
                    Some(Signal::SIGWINCH) => copy_window_size(m.as_raw_fd()),
                    Some(signal) => {
                        let _ = kill(pid, signal);
                    }
                    None => {}
                }
            }
        }
    };
    // What the container wrote last is still in the terminal: drain it.
    if master_open {
        let _ = nix::fcntl::fcntl(
            m.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        while let Some(n) = read(m, &mut buf) {
            write_all(stdout_fd.as_fd(), &buf[..n]);
        }
    }
    drop(signal_fd);
    let _ = signals.thread_unblock();
    Ok(code)
}
// ANCHOR_END: relay
