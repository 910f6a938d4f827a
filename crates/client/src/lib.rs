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
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        resp.json()
            .await
            .map_err(|source| ClientError::Decode { status, source })
    }

    /// Sends a request; a success's answer is the caller's to read, an error's
    /// problem document becomes [`ClientError::Api`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<reqwest::Response, ClientError> {
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
            Ok(resp)
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
            ("label", q.label.as_deref()),
        ] {
            if let Some(v) = v {
                path.push_str(&format!("{k}={}&", query_value(v)));
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

    /// Moves a claimed container's expiry `seconds` later (at most to its claim
    /// plus its pool's maximum lifetime); answers its view with the new expiry.
    pub async fn extend(&self, id: &str, seconds: u64) -> Result<ContainerView, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/containers/{id}/extend"),
            Some(&ExtendRequest { seconds }),
        )
        .await
    }

    /// Resets a claimed container's idle timer, as a proxied request does.
    pub async fn keepalive(&self, id: &str) -> Result<ContainerView, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/containers/{id}/keepalive"),
            None::<&()>,
        )
        .await
    }

    pub async fn pools(&self) -> Result<PoolList, ClientError> {
        self.call(Method::GET, "/v1/pools", None::<&()>).await
    }

    /// One pool: its settings, revision, rollout, numbers and recent events.
    pub async fn pool(&self, name: &str) -> Result<PoolDetail, ClientError> {
        self.call(Method::GET, &format!("/v1/pools/{name}"), None::<&()>)
            .await
    }

    /// Creates the pool `name` or replaces its settings (what `settings` leaves
    /// out takes its default). With `dry_run`, changes nothing and answers what
    /// would change.
    pub async fn put_pool(
        &self,
        name: &str,
        settings: &PoolSettings,
        dry_run: bool,
    ) -> Result<PutPoolResponse, ClientError> {
        self.call(
            Method::PUT,
            &format!("/v1/pools/{name}?dryRun={dry_run}"),
            Some(settings),
        )
        .await
    }

    /// Changes the settings `settings` sets; the pool's others keep theirs.
    pub async fn patch_pool_settings(
        &self,
        name: &str,
        settings: &PoolSettings,
    ) -> Result<PutPoolResponse, ClientError> {
        self.call(Method::PATCH, &format!("/v1/pools/{name}"), Some(settings))
            .await
    }

    /// Deletes a pool: it drains (its ready containers stop, allocated ones run
    /// to the end of their lifetime) and claims naming it answer 404.
    pub async fn delete_pool(&self, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &format!("/v1/pools/{name}"), None::<&()>)
            .await
            .map(drop)
    }

    /// Returns the pool to its previous revision.
    pub async fn rollback(&self, name: &str) -> Result<PoolDetail, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/pools/{name}/rollback"),
            None::<&()>,
        )
        .await
    }

    /// Re-reads the server's config file and applies its pools if it changed
    /// since they were last applied.
    pub async fn reload(&self) -> Result<ReloadResponse, ClientError> {
        self.call(Method::POST, "/v1/reload", None::<&()>).await
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

/// `v` percent-encoded for a query string: everything but RFC 3986's unreserved
/// characters (a selector holds `=`, `!`, `,`, spaces and parentheses).
fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(super::query_value("ready"), "ready");
        assert_eq!(
            super::query_value("team=a,tier!=free,k in (x, y)"),
            "team%3Da%2Ctier%21%3Dfree%2Ck%20in%20%28x%2C%20y%29"
        );
        assert_eq!(super::query_value("a&b#é"), "a%26b%23%C3%A9");
    }
}
