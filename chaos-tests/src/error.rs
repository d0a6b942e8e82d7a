//! Why a chaos run could not do what it set out to do. A safety finding is not an error:
//! it is a [`crate::checks::Finding`] in the scenario's outcome. These are the harness's
//! own failures, named by who is at fault: the machine (namespaces, tools), a process
//! we started, or a condition that did not come about in time.

use std::time::Duration;

/// A failure of the harness or of the hub it drives.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// A command of the machine (`ip`, `tc`, the CLI) failed.
    #[error("{command}: {detail}")]
    Command {
        /// The command line, for the report.
        command: String,
        /// Its stderr or the spawn error.
        detail: String,
    },
    /// A process we start could not be started or died.
    #[error("{process}: {detail}")]
    Process {
        /// Which process (`ringhub-sim`, `ringhub-node cab-a`, `csms.py`).
        process: String,
        /// What went wrong, with its log's tail when there is one.
        detail: String,
    },
    /// A condition did not hold within its deadline.
    #[error("timed out after {after:?} waiting for {what}; last seen: {last}")]
    Timeout {
        /// The condition.
        what: String,
        /// Its deadline.
        after: Duration,
        /// What the last probe saw.
        last: String,
    },
    /// The simulator's control API refused or failed a request.
    #[error("simulator control {request}: {detail}")]
    Control {
        /// The request line.
        request: String,
        /// The error or the refusal's body.
        detail: String,
    },
    /// A socket or file of the harness failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The scenario name is unknown.
    #[error("unknown scenario {0:?} (chaos-tests --list names them)")]
    UnknownScenario(String),
}

impl ChaosError {
    /// An IO error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// The harness's result.
pub type Result<T> = std::result::Result<T, ChaosError>;
