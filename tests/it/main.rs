//! The one integration test binary: every test starts the real `rekey`
//! binary against a fresh database, on SQLite and on PostgreSQL.

mod activity;
mod age;
mod attacker;
mod blast;
mod browser;
mod harness;
mod incident;

mod cache;
mod connections;
mod console;
mod console_admin;
mod console_delivery;
mod console_events;
mod cutover_consumers;
mod delivery;
mod delivery_targets;
mod drivers;
mod engine_evidence;
mod fault_suite;
mod foundation;
mod foundations;
mod keyring;
mod maria;
mod moto;
mod oauth;
mod oauth_support;
mod openapi;
mod platform;
mod proxy;
mod rotation;
mod rotation_aws;
mod rotation_own;
mod rotation_snowflake;
mod rotation_via;
mod schedule;
mod security_api;
mod security_egress;
mod security_engine;
mod security_engine_h1;
mod security_engine_h2;
mod security_engine_h3;
mod security_login;
mod strict_pg;
mod webhooks;
