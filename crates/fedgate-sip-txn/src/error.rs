//! The error type of this crate.

use fedgate_sip::HeaderError;

/// Why a call into the transaction, dialog or UA layer was refused.
///
/// Input from the network never produces an `Error`: it is answered (4xx/5xx) or
/// dropped. Errors are for calls made by the TU (the application).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No live transaction with this id (it finished, or never existed).
    #[error("unknown or terminated transaction")]
    UnknownTransaction,
    /// The action does not fit the transaction's state (e.g. a second final response).
    #[error("not allowed in transaction state {0}")]
    WrongState(&'static str),
    /// A configured limit was reached (`what` names the limit in [`Limits`](crate::Limits)).
    #[error("limit {what} reached")]
    Limit {
        /// The field of [`Limits`](crate::Limits).
        what: &'static str,
    },
    /// A message handed in by the TU is not usable (missing or malformed header, a
    /// response where a request is expected, …).
    #[error("invalid message: {0}")]
    InvalidMessage(&'static str),
    /// A header needed for the operation is missing or malformed.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// No such dialog.
    #[error("unknown dialog")]
    UnknownDialog,
    /// No such IM session, or it is closed.
    #[error("unknown or closed session")]
    UnknownSession,
    /// No such subscription, or it is terminated.
    #[error("unknown or terminated subscription")]
    UnknownSubscription,
}
