//! `GET`/`POST /api/v1/orgs`: the platform operator's list of orgs and a
//! new one — the console's orgs page (`/ui/orgs`) and its create form, as
//! API twins, through the same domain functions (`identity::orgs`).

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::apps::body;
use super::error::{AdminErrorBody, AdminReadErrors, AdminWriteErrors};
use super::extract::{AdminSession, Query};
use super::openapi::PageQuery;
use super::{ApiError, AppState};
use crate::clock::rfc3339;
use crate::identity::orgs::{self, Org};

/// An org as the API answers it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OrgView {
    id: String,
    slug: String,
    name: String,
    /// RFC 3339.
    created_at: String,
}

impl OrgView {
    fn of(o: &Org) -> OrgView {
        OrgView {
            id: o.id.clone(),
            slug: o.slug.clone(),
            name: o.name.clone(),
            created_at: rfc3339(o.created_at),
        }
    }
}

/// A page of orgs by slug (`{items, total, next_after}`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct OrgsPage {
    items: Vec<OrgView>,
    /// Orgs in all.
    total: i64,
    /// The `after` of the next page; null on the last.
    next_after: Option<String>,
}

/// What a signed-in org admin is told.
const OPERATOR_ONLY: &str = "only the platform operator lists and creates orgs";

/// Every org, by slug, a page at a time (the operator).
#[utoipa::path(
    get, path = "/api/v1/orgs", tag = "orgs", params(PageQuery),
    responses((status = 200, description = "A page of orgs by slug, with the exact total.", body = OrgsPage), AdminReadErrors,
        (status = 403, description = "Only the platform operator lists orgs.", body = AdminErrorBody)),
    security(("session" = [])),
)]
pub async fn list(
    State(st): State<AppState>,
    admin: AdminSession,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    admin.operator_only(OPERATOR_ONLY)?;
    let (n, after) = q.page()?;
    let p = orgs::page(&st.core.db, after, n).await?;
    Ok(Json(p.map(|o| OrgView::of(&o)).answer()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"slug": "acme", "name": "Acme Inc."}))]
pub struct CreateOrg {
    /// Lower case letters, digits and dashes; the org's name in every path.
    slug: String,
    /// Shown to people; the slug when not given.
    #[serde(default)]
    name: Option<String>,
}

/// Creates an org (the operator).
#[utoipa::path(
    post, path = "/api/v1/orgs", tag = "orgs", request_body = CreateOrg,
    responses((status = 201, description = "Created.", body = OrgView), AdminWriteErrors,
        (status = 403, description = "Only the platform operator creates orgs.", body = AdminErrorBody)),
    security(("session" = [], "csrf" = [])),
)]
pub async fn create(
    State(st): State<AppState>,
    admin: AdminSession,
    b: Result<Json<CreateOrg>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    admin.operator_only(OPERATOR_ONLY)?;
    let b = body(b)?;
    let o = orgs::create(
        &st.core.db,
        &admin.actor(),
        &b.slug,
        b.name.as_deref(),
        st.core.now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!(OrgView::of(&o)))))
}
