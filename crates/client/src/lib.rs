//! Typed HTTP client for the warmpool API, and the API's wire types.
//!
//! The server serialises these same types, so the CLI, the benchmarks and the tests
//! cannot drift from what the server speaks.

mod types;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

pub use types::*;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach warmpool at {url}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{} {}: {}", .problem.status, .problem.title, .problem.detail)]
    Api { problem: Problem },
    #[error("unexpected answer from warmpool ({status})")]
    Decode {
        status: StatusCode,
        #[source]
        source: reqwest::Error,
    },
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { problem } => Some(problem.status),
            ClientError::Decode { status, .. } => Some(status.as_u16()),
            ClientError::Connect { .. } => None,
        }
    }
}

/// A warmpool API client. Cheap to clone; keeps connections alive.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(base_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .expect("a plain HTTP client builds");
        Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The URL of a container's proxy route: `{base}/container/{id}{path}`.
    pub fn proxy_url(&self, id: &str, path: &str) -> String {
        format!("{}/container/{id}{path}", self.base)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Connect { url, source })?;
        let status = resp.status();
        if status.is_success() {
            resp.json()
                .await
                .map_err(|source| ClientError::Decode { status, source })
        } else {
            let problem = resp
                .json::<Problem>()
                .await
                .map_err(|source| ClientError::Decode { status, source })?;
            Err(ClientError::Api { problem })
        }
    }

    pub async fn claim(&self, req: &ClaimRequest) -> Result<ClaimResponse, ClientError> {
        self.call(Method::POST, "/container", Some(req)).await
    }

    pub async fn containers(&self, q: &ContainerQuery) -> Result<ContainerList, ClientError> {
        let mut path = "/v1/containers?".to_owned();
        for (k, v) in [
            ("state", q.state.as_deref()),
            ("location", q.location.as_deref()),
            ("pool", q.pool.as_deref()),
        ] {
            if let Some(v) = v {
                path.push_str(&format!("{k}={v}&"));
            }
        }
        if let Some(l) = q.limit {
            path.push_str(&format!("limit={l}"));
        }
        self.call(Method::GET, path.trim_end_matches(['?', '&']), None::<&()>)
            .await
    }

    pub async fn container(&self, id: &str) -> Result<ContainerView, ClientError> {
        self.call(Method::GET, &format!("/v1/containers/{id}"), None::<&()>)
            .await
    }

    /// Stops and releases a container early. Idempotent.
    pub async fn release(&self, id: &str) -> Result<ContainerView, ClientError> {
        self.call(Method::DELETE, &format!("/v1/containers/{id}"), None::<&()>)
            .await
    }

    pub async fn pools(&self) -> Result<PoolList, ClientError> {
        self.call(Method::GET, "/v1/pools", None::<&()>).await
    }

    pub async fn events(&self, after: i64, limit: u32) -> Result<EventList, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/events?after={after}&limit={limit}"),
            None::<&()>,
        )
        .await
    }

    /// Runs one read-only SQL statement (admin token).
    pub async fn sql(&self, sql: &str) -> Result<SqlResult, ClientError> {
        let body = SqlRequest {
            sql: sql.to_owned(),
        };
        self.call(Method::POST, "/v1/sql", Some(&body)).await
    }

    /// The store's tables (admin token).
    pub async fn tables(&self) -> Result<TableList, ClientError> {
        self.call(Method::GET, "/v1/tables", None::<&()>).await
    }

    /// Pool depth and claim latency samples of the last hour.
    pub async fn history(&self) -> Result<History, ClientError> {
        self.call(Method::GET, "/v1/stats/history", None::<&()>)
            .await
    }

    /// The background tasks and how their last runs went.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.call(Method::GET, "/v1/status", None::<&()>).await
    }

    pub async fn readyz(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, "/readyz", None::<&()>).await
    }
}
