//! `RuntimeError`: what went wrong in a runtime, by kind, so that callers decide on
//! the variant and never on the text; and the mapping of an HTTP API's status codes
//! to those kinds, shared by the runtimes that talk to one (Docker, Kubernetes).

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime's API refused the call (`status`), or could not be reached at
    /// all (`status: None`). `retryable`: waiting may fix it (no answer, 429, 5xx);
    /// otherwise something must change first (403, 409, 422...).
    #[error("runtime {}: {message}", if *retryable { "unavailable" } else { "error" })]
    Api {
        status: Option<u16>,
        message: String,
        retryable: bool,
    },
    /// What the call names does not exist (an image, a container): HTTP 404.
    #[error("runtime error: {message}")]
    NotFound { message: String },
    /// A call or a wait outlived its deadline. `what` says what did not happen:
    /// `the Docker Engine did not answer` (within 10s).
    #[error("{what} within {}", seconds(*after))]
    Timeout { what: String, after: Duration },
    /// The runtime's own settings are unusable (a kubeconfig that cannot be read).
    #[error("runtime unavailable: {0}")]
    Config(String),
    /// The runtime cannot run this kind of workload (an image on the process
    /// runtime, an empty command).
    #[error("runtime error: the {runtime} runtime cannot run {workload}")]
    Unsupported {
        runtime: &'static str,
        workload: &'static str,
    },
    /// No place can run the container (no node fits its selector); it may fit
    /// once the cluster changes.
    #[error("runtime error: pod unschedulable: {0}")]
    Unschedulable(String),
    /// The container cannot start without a change (its image cannot be pulled,
    /// its config is invalid), although it has not exited.
    #[error("runtime error: {0}")]
    CannotStart(String),
    /// The process of a container could not be started (no free port, no work
    /// dir, no program).
    #[error("cannot start container: {what}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Another local operation failed (removing a work dir, reading `/proc`).
    #[error("runtime error: {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("container exited before it became ready ({detail})")]
    ExitedEarly { code: Option<i32>, detail: String },
    #[error("container did not become ready within {0:?}")]
    StartTimeout(Duration),
    /// The container runs but the runtime gives it no address to proxy to.
    #[error("runtime error: container {0} has no address")]
    NoAddress(String),
    #[error("invalid runtime handle {0:?}")]
    BadHandle(String),
    #[error("injected failure: {0}")]
    Injected(String),
    /// The runtime cannot write a claim's files into a container (Kubernetes: no
    /// exec or copy rights are granted); they go through the app's bind hook.
    #[error("the {runtime} runtime cannot write files into a container; they are delivered through the app's /admin/bind hook")]
    CannotWriteFiles { runtime: &'static str },
    /// A claim's file could not be written where it was asked to be: its path
    /// leaves the files dir (absolute, `..`) or goes through a symlink.
    #[error("runtime error: cannot write file {path:?}: {reason}")]
    FileRefused { path: String, reason: String },
}

impl RuntimeError {
    /// The error of an API (`api`: `docker`, `kubernetes API`) that answered
    /// `status` with `message`: 404 is [`RuntimeError::NotFound`]; 429 and 5xx are
    /// retryable; any other status needs a change first.
    pub fn answered(api: &str, status: u16, message: &str) -> RuntimeError {
        let message = match status {
            429 => format!("{api} is throttling requests (429): {message}"),
            _ => format!("{api} answered {status}: {message}"),
        };
        if status == 404 {
            return RuntimeError::NotFound { message };
        }
        RuntimeError::Api {
            status: Some(status),
            message,
            retryable: retryable(status),
        }
    }

    /// The error of an API that could not be reached or gave no answer (refused,
    /// reset, broken): retryable.
    pub fn unreachable(api: &str, cause: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Api {
            status: None,
            message: format!("{api}: {cause}"),
            retryable: true,
        }
    }

    /// The HTTP status the runtime's API answered with, if this error is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            RuntimeError::Api { status, .. } => *status,
            RuntimeError::NotFound { .. } => Some(404),
            _ => None,
        }
    }

    /// Whether trying again later may succeed without any change: the API was
    /// unreachable or overloaded, or a deadline passed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RuntimeError::Api { retryable, .. } => *retryable,
            RuntimeError::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// Whether an HTTP status says "try again later": 429 (throttled) and 5xx.
pub fn retryable(status: u16) -> bool {
    status == 429 || status >= 500
}

/// `10s`, `0.2s`: a duration as people write it in an error.
pub fn seconds(d: Duration) -> String {
    format!("{}s", (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds_and_keep_their_messages() {
        let e = RuntimeError::answered("docker", 404, "no such image");
        assert!(matches!(e, RuntimeError::NotFound { .. }), "{e:?}");
        assert_eq!(e.status(), Some(404));
        assert_eq!(
            e.to_string(),
            "runtime error: docker answered 404: no such image"
        );
        for (status, retry) in [
            (400, false),
            (403, false),
            (409, false),
            (429, true),
            (500, true),
            (503, true),
        ] {
            let e = RuntimeError::answered("kubernetes API", status, "nope");
            assert!(
                matches!(e, RuntimeError::Api { status: Some(s), retryable, .. } if s == status && retryable == retry),
                "{e:?}"
            );
            assert_eq!(e.is_retryable(), retry);
            let prefix = if retry {
                "runtime unavailable: "
            } else {
                "runtime error: "
            };
            assert!(e.to_string().starts_with(prefix), "{e}");
            assert!(e.to_string().contains(&status.to_string()), "{e}");
        }
        assert_eq!(
            RuntimeError::answered("kubernetes API", 429, "slow down").to_string(),
            "runtime unavailable: kubernetes API is throttling requests (429): slow down"
        );
        let e = RuntimeError::unreachable("docker", "connection refused");
        assert_eq!((e.status(), e.is_retryable()), (None, true));
        assert_eq!(
            e.to_string(),
            "runtime unavailable: docker: connection refused"
        );
    }

    #[test]
    fn a_timeout_says_what_did_not_happen_and_when() {
        let e = RuntimeError::Timeout {
            what: "the Docker Engine did not answer".into(),
            after: Duration::from_secs(10),
        };
        assert_eq!(e.to_string(), "the Docker Engine did not answer within 10s");
        assert!(e.is_retryable());
        assert_eq!(seconds(Duration::from_millis(200)), "0.2s");
        assert_eq!(seconds(Duration::from_millis(2500)), "2.5s");
    }
}
