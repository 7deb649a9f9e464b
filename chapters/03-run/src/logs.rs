//! `logs`: reading back what a detached container wrote.
//!
//! The monitor of `run -d` (see `monitor`) writes the container's output
//! in docker's `json-file` format, one JSON object per line:
//! `{"log":"hello\n","stream":"stdout","time":"2026-11-28T06:30:00.123456789Z"}`.
//! `logs` prints each piece back to the stream it came from.
//!
//! A container run in the foreground has no log: its output went straight
//! to the caller's terminal and was never copied (podman's "passthrough"
//! log driver; docker's daemon copies everything, always).

use crate::find;
use crate::state::effective_state;
use ch01_images::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `ROOT/containers/<id>/<id>-json.log`.
pub fn log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}-json.log"))
}

/// `logs [-f]`: the container's stdout and stderr from its json-file log,
/// each to where it came from.
pub fn logs(root: &Path, name: &str, follow: bool) -> Result<()> {
    let found = find::find(root, name)?;
    let path = log_path(&found.dir, &found.config.id);
    if !path.exists() {
        return Err(Error::new(format!(
            "container {name} has no log: it ran in the foreground, where its output went straight to the terminal — run it with -d to keep a log"
        ))
        .with_exit_code(1));
    }
    let mut offset = 0u64;
    loop {
        // Checked before reading: once it has exited, the log is complete.
        let running = follow && effective_state(&found.dir).is_running();
        offset = print_log_from(&path, offset)?;
        if !running {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Prints the complete log lines after `offset`; returns the new offset.
fn print_log_from(path: &Path, offset: u64) -> Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(offset);
    };
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| Error::new(format!("reading {}: {e}", path.display())))?;
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for line in bytes[..complete].split(|b| *b == b'\n') {
        let Ok(entry) = serde_json::from_slice::<Entry>(line) else {
            continue;
        };
        let _ = if entry.stream == "stderr" {
            err.write_all(entry.log.as_bytes())
        } else {
            out.write_all(entry.log.as_bytes())
        };
    }
    let _ = out.flush();
    Ok(offset + complete as u64)
}

/// The container's log, docker's `json-file` format.
pub struct Log {
    file: File,
}

/// One line of the log.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

impl Log {
    pub fn open(path: &Path) -> Result<Log> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::new(format!("opening {}: {e}", path.display())))?;
        Ok(Log { file })
    }

    /// One entry per line, as docker writes them (a last piece without a
    /// newline is an entry of its own).
    pub fn write(&mut self, stream: &str, bytes: &[u8]) {
        let time = rfc3339_nanos(std::time::SystemTime::now());
        let mut out = Vec::new();
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let entry = Entry {
                log: String::from_utf8_lossy(piece).into_owned(),
                stream: stream.to_string(),
                time: time.clone(),
            };
            serde_json::to_writer(&mut out, &entry).expect("serializes");
            out.push(b'\n');
        }
        let _ = self.file.write_all(&out);
    }
}

/// `2026-11-28T06:30:00.123456789Z`, as docker writes times.
pub fn rfc3339_nanos(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_nanos()
    )
}

/// Seconds since the epoch as RFC 3339 (for `inspect`).
pub fn rfc3339(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    rfc3339_nanos(t).replace(".000000000Z", "Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_847_400), "2026-11-28T06:30:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
