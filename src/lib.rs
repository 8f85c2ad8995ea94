//! rekey: the authorization server of a platform's API, the vault of the
//! credentials it holds for outside systems, and the console that rotates
//! them. See ARCHITECTURE.md in the project's shared folder for the design.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod api;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connectors;
pub mod crypto;
pub mod egress;
pub mod events;
pub mod identity;
pub mod incident;
pub mod jobs;
pub mod oauth;
pub mod people;
pub mod rotation;
pub mod server;
pub mod state;
pub mod store;
pub mod sync;
pub mod test_hooks;
pub mod web;
