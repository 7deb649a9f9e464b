//! Finding containers: every one under the engine root ([`list`]), or
//! the one a command names ([`find`]), by full ID, name or ID prefix, as
//! docker does.

use crate::record::{self, containers_dir, Config};
use ch01_images::error::{Error, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// A container found on disk: its directory and config.
pub struct Found {
    pub dir: PathBuf,
    pub config: Config,
}

/// The configs of every container under `root` (unreadable ones skipped).
pub fn list(root: &Path) -> Vec<Config> {
    fs::read_dir(containers_dir(root))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| record::read_config(&e.path()))
        .collect()
}

/// Finds a container as docker does: full ID, then name, then a unique
/// ID prefix. Docker's message (exit code 1) when there is none.
pub fn find(root: &Path, wanted: &str) -> Result<Found> {
    let configs = list(root);
    let found = |config: &Config| Found {
        dir: containers_dir(root).join(&config.id),
        config: config.clone(),
    };
    if let Some(c) = configs.iter().find(|c| c.id == wanted).or_else(|| {
        configs
            .iter()
            .find(|c| c.name == wanted.trim_start_matches('/'))
    }) {
        return Ok(found(c));
    }
    let matches: Vec<&Config> = if wanted.is_empty() {
        vec![]
    } else {
        configs
            .iter()
            .filter(|c| c.id.starts_with(wanted))
            .collect()
    };
    match matches.as_slice() {
        [one] => Ok(found(one)),
        [] => Err(Error::new(format!("No such container: {wanted}")).with_exit_code(1)),
        _ => Err(Error::new(format!(
            "multiple containers found with the ID prefix {wanted:?} — give more digits"
        ))
        .with_exit_code(1)),
    }
}
