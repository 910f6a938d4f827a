//! warmpool: keeps pools of pre-started containers and hands one out instantly.
//!
//! This crate is the imperative shell around `warmpool-core`: the HTTP API and
//! proxy, the reconciler driver, start-up recovery, and the CLI.

pub mod api;
pub mod app;
pub mod auth;
pub mod body;
pub mod claim;
pub mod cli;
pub mod config;
pub mod console;
pub mod history;
pub mod metrics;
pub mod openapi;
pub mod prober;
pub mod problem;
pub mod proxy;
pub mod reconciler;
pub mod recovery;
pub mod registry;
pub mod routes;
pub mod server;
pub mod state;
pub mod studio;
pub mod views;
