//! The one error type of the test kit.

use std::time::Duration;

/// Everything that can go wrong while starting or driving a peer.
///
/// Every variant that concerns a running peer carries `diagnostics`: the tail of
/// that peer's log (and, for clients, the last protocol lines), so a failing test
/// says why without a rerun.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A peer binary is not installed (see [`crate::require_binaries`]).
    #[error("{binary} not installed")]
    MissingBinary {
        /// The program that was looked up on `PATH` (or the absolute path).
        binary: String,
    },
    /// An I/O error, with what the kit was doing at the time.
    #[error("i/o error while {context}: {source}")]
    Io {
        /// What the kit was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A command ran to completion but failed (non-zero exit or unexpected output).
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line, for the reader.
        command: String,
        /// Exit status as printed by std.
        status: String,
        /// stdout and stderr, concatenated.
        output: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {timeout:?} waiting for {what}\n{diagnostics}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound.
        timeout: Duration,
        /// Log tail and other context.
        diagnostics: String,
    },
    /// A peer process exited while it should have been running.
    #[error("{peer} exited unexpectedly ({status})\n{diagnostics}")]
    Exited {
        /// Which peer.
        peer: String,
        /// Exit status.
        status: String,
        /// Log tail.
        diagnostics: String,
    },
    /// `/etc/hosts` lacks names the tests need and this process may not add them.
    #[error(
        "/etc/hosts lacks {missing:?} and this process is not root; add them by hand \
         (or run the tests as root, as CI does)"
    )]
    HostsNotWritable {
        /// `"ip name"` lines that are missing.
        missing: Vec<String>,
    },
    /// An argument the kit cannot use (e.g. a domain with a space in it).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// `Result` with the kit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
