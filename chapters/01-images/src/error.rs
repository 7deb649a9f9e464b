//! One error type for the whole engine, and the rule it enforces: every
//! failure reaches the user as **one line** that says what went wrong and
//! what to do, never a panic or a debug dump.
//!
//! Docker reports engine failures with exit code 125 (126 and 127 are kept
//! for "the container's command could not run / was not found", which later
//! chapters produce). An [`Error`] carries its exit code so `main` can exit
//! with it, and an [`ErrorKind`] so that code deciding what to do next
//! (retry a download, reword a message) never has to read the message: the
//! message is for people, and rewording it must not change what the engine
//! does.

use std::fmt;

/// An engine error: a message meant for a human, the exit code docker
/// would use for it, and its kind, meant for the code that handles it.
#[derive(Debug)]
pub struct Error {
    message: String,
    exit_code: i32,
    kind: ErrorKind,
}

/// The few failures some caller handles differently from the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorKind {
    /// Any failure no caller tells apart.
    #[default]
    Other,
    /// A transfer broke off mid-way (the connection was closed or reset):
    /// trying again may work. A timeout is *not* this: a registry too slow
    /// once is too slow again.
    BrokeOff,
    /// The image was removed (`rmi -f`) while this command was reading it.
    ImageRemoved,
}

/// Docker's exit code when the engine itself fails (not the container).
pub const ENGINE_FAILURE: i32 = 125;

impl Error {
    /// An engine failure (exit code 125) with this message.
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            exit_code: ENGINE_FAILURE,
            kind: ErrorKind::Other,
        }
    }

    /// The same failure, marked as one of the kinds a caller tells apart.
    pub fn with_kind(mut self, kind: ErrorKind) -> Error {
        self.kind = kind;
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The same failure with another exit code (126, 127, or a plain 1).
    pub fn with_exit_code(mut self, code: i32) -> Error {
        self.exit_code = code;
        self
    }

    pub fn exit_code(&self) -> i32 {
        self.exit_code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Turns an I/O error into one readable line that names the file and, for
/// the errors a learner can fix, what to do about it.
pub fn io_error(action: &str, path: &std::path::Path, err: std::io::Error) -> Error {
    use std::io::ErrorKind as Io;
    let hint = match err.kind() {
        Io::StorageFull => " — free some space, or use --root on a bigger disk",
        Io::PermissionDenied => " — run as root (sudo), or use --root DIR you can write",
        Io::ReadOnlyFilesystem => " — use --root on a writable filesystem",
        _ => "",
    };
    Error::new(format!("{action} {}: {err}{hint}", path.display()))
}

/// Adds "what we were doing" to an I/O result, so `?` produces a good message.
pub trait IoContext<T> {
    fn context(self, action: &str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, action: &str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| io_error(action, path, e))
    }
}
