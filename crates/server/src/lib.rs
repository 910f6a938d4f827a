//! warmpool's HTTP layer: the API and proxy over `warmpool-engine`, the studio,
//! the OpenAPI document, the config and the CLI.
//!
//! Handlers are thin: they read a request into the client crate's wire types, call
//! the engine, and turn the result into a view. `server.rs` only wires.

pub mod api;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod console;
pub mod openapi;
pub mod problem;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod sessions;
pub mod state;
pub mod studio;
pub mod tokens;
pub mod upstream;
pub mod views;

pub use warmpool_engine as engine;
