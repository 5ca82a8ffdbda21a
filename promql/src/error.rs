//! The engine's errors, by the class Prometheus's API reports them as.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The query does not parse or is not valid here (`bad_data`, 400).
    #[error("{0}")]
    BadQuery(String),
    /// A range query asks for more points per series than allowed (`bad_data`, 400).
    #[error("exceeded maximum resolution of {0} points per timeseries. Try decreasing the query resolution (?step=XX)")]
    TooManyPoints(String),
    /// Evaluation failed (`execution`, 422).
    #[error("{0}")]
    Execution(String),
    /// Too many samples would be held in memory (`execution`, 422).
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The query ran past its timeout (`timeout`, 503).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The query was cancelled, e.g. because the client went away (`canceled`, 422).
    #[error("query was canceled in {0}")]
    Canceled(&'static str),
    /// Storage could not be read (`internal`, 500).
    #[error("storage error: {0}")]
    Storage(String),
    /// A source of the data (another process, the object store) did not answer; a retry may
    /// succeed (`unavailable`, 503).
    #[error("{0}")]
    Unavailable(String),
}
