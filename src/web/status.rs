//! `GET /status` (HTML) and `GET /status.json`, without sign-in: per
//! connector kind, whether its connections are connected, the share whose
//! tests and refreshes succeed over the last hours, the share of its
//! deliveries that deliver, and any open incident
//! campaign (its reason and progress, no org names) — what a customer
//! checks before re-connecting.

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::page::{self, Chrome};
use crate::api::{ApiError, AppState};
use crate::connectors::connections::{self, KindHealth};
use crate::incident::{self, PublicCampaign};
use crate::sync::overview;

/// The window the page speaks of, in seconds.
const WINDOW_S: i64 = 6 * 3600;

#[derive(Serialize)]
pub struct KindStatus {
    pub kind: String,
    pub name: String,
    /// `operational`, `degraded` (some connections fail) or `failing`
    /// (most tested ones fail); `idle` when none was tested lately.
    pub status: &'static str,
    #[serde(flatten)]
    pub counts: KindHealth,
    /// Of the connections tested or refreshed in the window, the share
    /// that succeeded (0 to 1); null when none was.
    pub refreshing_share: Option<f64>,
    /// Deliveries enabled on connections of this kind.
    pub deliveries: i64,
    /// Of them, those delivering (`running`, `caught_up`, `backfilling`).
    pub delivering: i64,
    /// `delivering` over `deliveries` (0 to 1); null when none is enabled.
    pub delivering_share: Option<f64>,
}

/// `part` of `whole` as a share rounded to three places; none of nothing.
fn share(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 1000.0).round() / 1000.0)
}

#[derive(Serialize)]
pub struct CampaignStatus {
    #[serde(flatten)]
    pub campaign: PublicCampaign,
    pub started_at: String,
    pub progress: u8,
}

#[derive(Serialize)]
pub struct Status {
    pub window_s: i64,
    pub generated_at: String,
    pub kinds: Vec<KindStatus>,
    pub incidents: Vec<CampaignStatus>,
}

async fn status(st: &AppState) -> Result<Status, ApiError> {
    let now = st.core.now();
    let since = now - WINDOW_S * 1000;
    let delivering = overview::by_kind(&st.core.db).await?;
    let kinds = connections::health_by_kind(&st.core.db, since)
        .await?
        .into_iter()
        .map(|h| {
            let failing = h.tested - h.tested_ok;
            let status = if h.tested == 0 {
                "idle"
            } else if failing * 2 > h.tested {
                "failing"
            } else if failing > 0 {
                "degraded"
            } else {
                "operational"
            };
            let d = delivering.iter().find(|d| d.kind == h.kind);
            let (deliveries, delivering) = d.map_or((0, 0), |d| (d.deliveries, d.delivering));
            KindStatus {
                refreshing_share: share(h.tested_ok, h.tested),
                deliveries,
                delivering,
                delivering_share: share(delivering, deliveries),
                name: crate::connectors::catalog::kind(&h.kind)
                    .map(|k| k.name.clone())
                    .unwrap_or_else(|| h.kind.clone()),
                kind: h.kind.clone(),
                status,
                counts: h,
            }
        })
        .collect();
    let incidents = incident::open_public(&st.core.db)
        .await?
        .into_iter()
        .map(|c| CampaignStatus {
            started_at: crate::clock::rfc3339(c.started_at_ms),
            progress: if c.items == 0 {
                0
            } else {
                u8::try_from(c.settled.saturating_mul(100) / c.items).unwrap_or(100)
            },
            campaign: c,
        })
        .collect();
    Ok(Status {
        window_s: WINDOW_S,
        generated_at: crate::clock::rfc3339(now),
        kinds,
        incidents,
    })
}

#[derive(Template)]
#[template(path = "status.html")]
pub struct StatusPage {
    pub chrome: Chrome,
    pub s: Status,
}

pub async fn page(State(st): State<AppState>) -> Response {
    match status(&st).await {
        Ok(s) => page::ok(&StatusPage {
            chrome: Chrome::anonymous("Status"),
            s,
        }),
        Err(e) => page::error(e.status, &e.message),
    }
}

pub async fn json(State(st): State<AppState>) -> Response {
    match status(&st).await {
        Ok(s) => {
            let mut r = (StatusCode::OK, Json(s)).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => e.into_response(),
    }
}
