//! A container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`:
//! files in its directory, bind-mounted read-only over the image's (the
//! kernel knows nothing of them; every container engine writes its own).
//! An extension may set their contents when the container is created;
//! once it runs, they are rewritten in place ([`rewrite_etc_file`]).

use crate::extension::EtcFiles;
use ch01_images::durable;
use ch01_images::error::{Error, IoContext, Result};
use ch01_images::explain;
use std::fs;
use std::path::Path;

/// The longest host name the kernel takes (`sethostname(2)`).
const HOST_NAME_MAX: usize = 64;

// ANCHOR: hostname
/// docker's rule for `--hostname` (RFC 1123): dot-separated labels of
/// letters, digits and hyphens, none starting or ending with a hyphen, at
/// most 63 characters each. In all, DNS allows 253, but the kernel keeps
/// at most 64 (`HOST_NAME_MAX`: `sethostname` fails beyond), so that is
/// the limit here, checked before anything is made. The name is written
/// into the container's `/etc/hosts` and `/etc/hostname`: a newline there
/// would add a line of the caller's choosing.
pub fn check_hostname(hostname: &str) -> Result<()> {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if hostname.len() <= HOST_NAME_MAX && hostname.split('.').all(label_ok) {
        return Ok(());
    }
    Err(Error::new(format!(
        "invalid hostname {hostname:?}: use letters, digits, hyphens and dots \
         (labels of at most 63 characters, not starting or ending with a hyphen; {HOST_NAME_MAX} in all)"
    )))
}
// ANCHOR_END: hostname

/// A new container's `/etc/hosts` and `/etc/resolv.conf`, before any
/// extension changes them.
pub fn default_etc_files(hostname: &str) -> EtcFiles {
    EtcFiles {
        hosts: format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n\
             127.0.1.1\t{hostname}\n"
        ),
        resolv_conf: resolv_conf(&fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
    }
}

/// The files bind-mounted onto the container's `/etc` (see `create::build_spec`).
pub const ETC_FILES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// The container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`,
/// written into its directory (the spec bind-mounts them read-only over
/// the image's, see `create::build_spec`).
pub fn write(dir: &Path, hostname: &str, etc: &EtcFiles) -> Result<()> {
    let files = [
        ("hostname", format!("{hostname}\n")),
        ("hosts", etc.hosts.clone()),
        ("resolv.conf", etc.resolv_conf.clone()),
    ];
    for (name, content) in files {
        durable::write_runtime_state(&dir.join(name), content.as_bytes())?;
    }
    Ok(())
}

// ANCHOR: rewrite_etc_file
/// Rewrites one of a container's `/etc` files (`hostname`, `hosts`,
/// `resolv.conf`) **in place**, under its lock: truncated and written,
/// never replaced by a rename. A bind mount pins the inode it was made
/// from, so a renamed-in file would never reach a running container;
/// this write does, at once. (A reader may see it half-written: the
/// resolver reads it again on its next lookup.) Do not hold the
/// container's lock when calling it.
pub fn rewrite_etc_file(dir: &Path, name: &str, content: &str) -> Result<()> {
    if !ETC_FILES.contains(&name) {
        return Err(Error::new(format!(
            "{name} is not one of a container's /etc files ({})",
            ETC_FILES.join(", ")
        )));
    }
    let _lock = crate::record::lock(dir)?;
    let path = dir.join(name);
    explain::step(
        &format!(
            "rewrite {} in place (the container's bind mount pins its inode)",
            path.display()
        ),
        Some(&format!(
            "cat > {}   # truncate and write, not mv",
            path.display()
        )),
    );
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .context("opening", &path)?;
    std::io::Write::write_all(&mut file, content.as_bytes()).context("writing", &path)
}
// ANCHOR_END: rewrite_etc_file

// ANCHOR: resolv_conf
/// The container's resolv.conf: the host's, unless it points at a resolver
/// on the host's loopback (systemd-resolved's 127.0.0.53): the container's
/// loopback is its own, and nobody answers there.
pub fn resolv_conf(host: &str) -> String {
    let local = host.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.next() == Some("nameserver")
            && words
                .next()
                .is_some_and(|ip| ip.starts_with("127.") || ip == "::1")
    });
    if local || host.trim().is_empty() {
        "# the host's resolver is on its own loopback, unreachable from this container;\n\
         # until the container is connected to a network, there is no DNS here\n"
            .to_string()
    } else {
        host.to_string()
    }
}
// ANCHOR_END: resolv_conf

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_skips_a_loopback_resolver() {
        assert!(resolv_conf("nameserver 127.0.0.53\noptions edns0\n").starts_with('#'));
        assert_eq!(
            resolv_conf("nameserver 10.0.0.2\n"),
            "nameserver 10.0.0.2\n"
        );
    }

    #[test]
    fn host_names_follow_rfc_1123() {
        let long_label = "a".repeat(63);
        for good in ["web", "web-1", "a.b.c", "1abc", long_label.as_str()] {
            assert!(check_hostname(good).is_ok(), "{good}");
        }
        let too_long_label = "a".repeat(64);
        let too_long = format!("{}.a", ["abcd"; 13].join(".")); // 66; its first 64 are fine
        assert!(check_hostname(&too_long[..64]).is_ok());
        for bad in [
            "",
            "a\nb",
            "a b",
            "a_b",
            "-a",
            "a-",
            "a..b",
            "a.",
            too_long_label.as_str(),
            too_long.as_str(),
        ] {
            let e = check_hostname(bad).unwrap_err();
            assert!(!e.message().contains('\n'), "{bad:?}: {e}");
        }
    }
}
