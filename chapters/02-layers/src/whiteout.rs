//! Whiteouts: how a layer says "this file is gone".
//!
//! A layer is a tar of what changed. Adding or changing a file is easy to
//! write down: the file is in the tar. Deleting one is not, so the OCI image
//! spec uses marker names:
//!
//! * `dir/.wh.NAME` means "NAME in dir was deleted": it hides NAME of the
//!   layers below (never an entry of its own layer);
//! * `dir/.wh..wh..opq` means "dir was replaced": it hides *everything*
//!   the layers below had in dir (an **opaque** directory).
//!
//! overlayfs has its own way to say the same, on disk, in an upper or lower
//! directory: a whiteout is a **character device 0:0** named NAME, and an
//! opaque directory carries the xattr `trusted.overlay.opaque=y`. Unpacking
//! a layer for overlayfs converts the first form into the second; turning an
//! upper directory back into a layer (`diff`) converts it back.

use ch01_images::error::{Error, Result};

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What a tar entry's file name means.
#[derive(Debug, PartialEq, Eq)]
pub enum Marker<'a> {
    /// An ordinary entry.
    None,
    /// `.wh.NAME`: NAME was deleted.
    Whiteout(&'a str),
    /// `.wh..wh..opq`: the directory was replaced.
    Opaque,
    /// `.wh..wh.*` other than opq: AUFS's own bookkeeping, ignored as docker does.
    AufsMeta,
}

// ANCHOR: classify
/// Reads the whiteout meaning of one file name (the last path component).
pub fn classify(file_name: &str) -> Result<Marker<'_>> {
    if file_name == OPAQUE_MARKER {
        return Ok(Marker::Opaque);
    }
    if file_name.starts_with(".wh..wh.") {
        return Ok(Marker::AufsMeta);
    }
    match file_name.strip_prefix(WHITEOUT_PREFIX) {
        None => Ok(Marker::None),
        Some("") | Some(".") | Some("..") => Err(Error::new(format!(
            "invalid layer: the whiteout {file_name:?} names no file (or . or ..)"
        ))),
        Some(name) => Ok(Marker::Whiteout(name)),
    }
}
// ANCHOR_END: classify

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whiteout_names() {
        assert_eq!(classify("motd").unwrap(), Marker::None);
        assert_eq!(classify(".wh.motd").unwrap(), Marker::Whiteout("motd"));
        assert_eq!(classify(".wh..wh..opq").unwrap(), Marker::Opaque);
        assert_eq!(classify(".wh..wh.plnk").unwrap(), Marker::AufsMeta);
        assert_eq!(classify(".whatever").unwrap(), Marker::None);
        assert!(classify(".wh.").is_err());
        assert!(classify(".wh..").is_err());
        assert!(classify(".wh...").is_err());
    }
}
