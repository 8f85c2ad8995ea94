//! The admin console under `/ui/`: server-rendered pages (askama templates
//! in `templates/`, checked at compile time, HTML-escaped by default), one
//! stylesheet and one optional script served from the binary. Every action
//! is a form that works without script, checked against the session's CSRF
//! token, and calls the same domain function as its admin API twin, so it
//! is audited the same way (the person, their IP).
//!
//! Anonymous visitors are sent to the sign-in page and back to where they
//! were. Errors answer in the console's own HTML (`ApiError` in
//! `Format::Page`), with a way back.

mod activity;
mod age;
mod apps;
mod assets;
mod audit;
mod auth;
mod connections;
mod deliveries;
mod home;
mod incidents;
mod keys;
mod operator;
pub mod page;
mod rotations;
mod service_keys;
mod status;
mod users;
mod webhooks;

use axum::routing::{get, post};
use axum::Router;

use crate::api::AppState;

pub use auth::{Posted, Ui};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(auth::to_console))
        .route("/ui/", get(home::page))
        .route("/ui/static/{file}", get(assets::file))
        .route("/ui/login", get(auth::login_form).post(auth::login))
        .route("/ui/logout", post(auth::logout))
        .route("/ui/orgs", get(home::orgs).post(home::create_org))
        .route(
            "/ui/orgs/{org}/connections",
            get(connections::list).post(connections::create),
        )
        .route("/ui/orgs/{org}/connections/new", get(connections::new_form))
        .route("/ui/orgs/{org}/connections/{conn}", get(connections::show))
        .route(
            "/ui/orgs/{org}/connections/{conn}/activity",
            get(activity::log),
        )
        .route(
            "/ui/orgs/{org}/connections/{conn}/{action}",
            get(connections::confirm).post(connections::act),
        )
        .route(
            "/ui/orgs/{org}/connections/{conn}/delivery/{action}",
            get(deliveries::confirm).post(deliveries::act),
        )
        .route("/ui/orgs/{org}/deliveries", get(deliveries::list))
        .route(
            "/ui/orgs/{org}/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/ui/orgs/{org}/webhooks/{id}/{action}",
            get(webhooks::confirm).post(webhooks::act),
        )
        .route(
            "/ui/orgs/{org}/webhook-deliveries/{id}/replay",
            post(webhooks::replay),
        )
        .route("/ui/rotations", get(rotations::queue))
        .route("/ui/orgs/{org}/rotations", get(rotations::list))
        .route("/ui/orgs/{org}/rotations/{id}", get(rotations::show))
        .route(
            "/ui/orgs/{org}/rotations/{id}/{action}",
            get(rotations::confirm).post(rotations::act),
        )
        .route("/ui/orgs/{org}/apps", get(apps::list).post(apps::create))
        .route("/ui/orgs/{org}/apps/{app}", get(apps::show))
        .route(
            "/ui/orgs/{org}/apps/{app}/authorizations",
            get(apps::authorizations),
        )
        .route(
            "/ui/orgs/{org}/apps/{app}/{action}",
            get(apps::confirm).post(apps::act),
        )
        .route("/ui/incidents", get(incidents::list).post(incidents::start))
        .route("/ui/incidents/plan", post(incidents::plan))
        .route("/ui/incidents/{id}", get(incidents::show))
        .route("/ui/incidents/{id}/report", get(incidents::report))
        .route(
            "/ui/incidents/{id}/{action}",
            get(incidents::confirm_cancel).post(incidents::act),
        )
        .route(
            "/ui/blast-radius",
            get(operator::blast_form).post(operator::blast),
        )
        .route(
            "/ui/catalog",
            get(operator::catalog_list).post(operator::configure),
        )
        .route("/ui/orgs/{org}/users", get(users::list).post(users::create))
        .route(
            "/ui/orgs/{org}/users/{user}/{action}",
            get(users::confirm).post(users::act),
        )
        .route(
            "/ui/orgs/{org}/keys",
            get(keys::list).post(keys::create_key),
        )
        .route(
            "/ui/orgs/{org}/keys/{key}/{action}",
            get(keys::confirm_key).post(keys::act_key),
        )
        .route(
            "/ui/orgs/{org}/m2m",
            get(keys::to_list).post(keys::create_m2m),
        )
        .route(
            "/ui/orgs/{org}/m2m/{name}/{action}",
            get(keys::confirm_m2m).post(keys::act_m2m),
        )
        .route("/ui/orgs/{org}/audit", get(audit::org_page))
        .route("/ui/audit", get(audit::all_page))
        .route("/ui/orgs/{org}/age", get(age::org_page))
        .route("/ui/age", get(age::all_page))
        .route(
            "/ui/service-keys",
            get(service_keys::list).post(service_keys::create),
        )
        .route("/ui/service-keys/{name}/revoke", post(service_keys::revoke))
        .route("/ui/{*rest}", get(page::not_found).post(page::not_found))
        .route("/status", get(status::page))
        .route("/status.json", get(status::json))
}
