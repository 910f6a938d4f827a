//! The state every HTTP handler shares; `server.rs` builds it and hands it to
//! the router, so no HTTP module needs `server.rs`.

use std::sync::Arc;

use crate::app::App;
use crate::proxy::Upstream;
use crate::studio::Sessions;

/// State shared by every handler.
pub struct Shared {
    pub app: Arc<App>,
    pub upstream: Upstream,
    /// Studio logins.
    pub sessions: Sessions,
}
