//! warmpool's HTTP layer: the API and proxy over `warmpool-engine`, the studio,
//! the OpenAPI document, the config and the CLI.
//!
//! Handlers are thin: they read a request into the client crate's wire types, call
//! the engine, and turn the result into a view. `server.rs` only wires.

pub(crate) mod api;
pub mod auth;
pub(crate) mod body;
pub mod cli;
pub mod config;
pub(crate) mod console;
pub mod header_limits;
pub mod openapi;
pub mod otel;
pub(crate) mod problem;
pub(crate) mod proxy;
pub(crate) mod request_id;
pub mod routes;
pub mod server;
pub(crate) mod sessions;
pub mod specs;
pub(crate) mod state;
pub(crate) mod studio;
pub(crate) mod tokens;
pub(crate) mod upstream;
pub(crate) mod views;

pub use warmpool_engine as engine;
