//! Incident campaigns: "rotate everything" over a scope, planned item by
//! item, run in the background on the leased-job primitive (a job of kind
//! `incident` per campaign), and tracked until each item is verified.
//!
//! Items, in the order the seed documents follow ("rotate the connector
//! secrets before you re-authorize"):
//! 1. `operator`: the platform's own OAuth client of each affected kind, a
//!    person's job at the provider's developer console, done when
//!    `connector configure` stores the new secret (scope `all` only);
//! 2. connections: `rotate` (an automatic driver), `reauthorize` (revoked
//!    at the provider, re-authorized by a person; after its kind's
//!    operator item) or `runbook` (a person rotates and pastes the value),
//!    each carried by a rotation (`crate::rotation`), so the drivers,
//!    write-ahead, verification and cut-over are the rotation engine's;
//! 3. with `--include-own`: every application's tokens cut off (one write
//!    per application, the campaign named as the reason), and application,
//!    machine-client and access-key secrets regenerated with `--overlap`;
//!    these are done when the campaign starts, so their new secrets are
//!    shown once in its answer.
//!
//! Item statuses: `pending` → `acting` → `done` → `verified`, or `failed`,
//! or `waiting_person` (on the operator or the org's admins); `cancelled`
//! for what a cancel stopped before it started.

pub mod blast;
pub mod items;
mod own;
pub mod plan;
mod report;
mod run;

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::{self, Actor, Event};
use crate::clock::rfc3339;
use crate::connectors::ConnectorError;
use crate::jobs::queue::{self, NewJob};
use crate::rotation::RotationError;
use crate::state::Core;
use crate::store::keyset::{self, Cursor, Page};
use crate::store::{new_id, AsEx, StoreError, Tx};
use crate::{exec, fetch_all, fetch_optional};

pub use plan::PlannedItem;
pub use report::{report, Format};
pub use run::run_due;

pub const JOB_KIND: &str = "incident";

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A running campaign's scope overlaps the one asked for: this is it,
    /// as far as the asker may see it.
    #[error("{}", .0.message())]
    Running(Overlap),
    #[error(transparent)]
    Rotation(#[from] RotationError),
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for IncidentError {
    fn from(e: sqlx::Error) -> Self {
        IncidentError::Store(e.into())
    }
}

impl From<crate::oauth::OAuthError> for IncidentError {
    fn from(e: crate::oauth::OAuthError) -> Self {
        IncidentError::Rotation(e.into())
    }
}

impl From<crate::identity::IdentityError> for IncidentError {
    fn from(e: crate::identity::IdentityError) -> Self {
        match e {
            crate::identity::IdentityError::NotFound(m) => IncidentError::NotFound(m),
            other => IncidentError::Invalid(other.to_string()),
        }
    }
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct IncidentRow {
    pub id: String,
    pub scope: String,
    pub org_id: Option<String>,
    pub reason: String,
    pub kinds: String,
    pub include_own: bool,
    pub overlap_ms: i64,
    pub status: String,
    pub job_id: String,
    pub started_by: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// The last error of the campaign's job when its failures in a row
    /// spent its attempts (`dead`): nothing follows the items until
    /// `incident retry` starts it again.
    pub stopped: Option<String>,
}

const COLS: &str = "id, scope, org_id, reason, kinds, include_own, overlap_ms, status, job_id, \
    started_by, started_at, finished_at, \
    (SELECT COALESCE(j.last_error, 'failed') FROM jobs j WHERE j.id = incidents.job_id AND j.state = 'dead') AS stopped";

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct ItemRow {
    pub incident_id: String,
    pub n: i64,
    pub org_id: Option<String>,
    pub target_type: String,
    pub target_id: String,
    pub target_name: String,
    pub kind: Option<String>,
    pub action: String,
    pub host: Option<String>,
    pub status: String,
    pub waiting_on: Option<String>,
    pub detail: Option<String>,
    pub after_n: Option<i64>,
    pub rotation_id: Option<String>,
    pub done_by: Option<String>,
    pub done_at: Option<i64>,
    pub verified_at: Option<i64>,
    pub updated_at: i64,
}

const ITEM_COLS: &str = "incident_id, n, org_id, target_type, target_id, target_name, kind, action, \
    host, status, waiting_on, detail, after_n, rotation_id, done_by, done_at, verified_at, updated_at";

/// Item statuses, in the order a report counts them.
pub const ITEM_STATUSES: [&str; 7] = [
    "pending",
    "acting",
    "done",
    "verified",
    "failed",
    "waiting_person",
    "cancelled",
];

#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
pub struct ItemView {
    pub n: i64,
    pub org: Option<String>,
    pub target: Value,
    pub action: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<String>,
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    pub rotation_id: Option<String>,
    pub done_by: Option<String>,
    pub done_at: Option<String>,
    pub verified_at: Option<String>,
}

impl ItemRow {
    pub fn view(&self, org: Option<String>) -> ItemView {
        ItemView {
            n: self.n,
            org,
            target: json!({"type": self.target_type, "name": self.target_name, "kind": self.kind}),
            action: self.action.clone(),
            status: self.status.clone(),
            waiting_on: self
                .waiting_on
                .clone()
                .filter(|_| self.status == "waiting_person"),
            detail: self.detail.clone(),
            after: self.after_n,
            rotation_id: self.rotation_id.clone(),
            done_by: self.done_by.clone(),
            done_at: self.done_at.map(rfc3339),
            verified_at: self.verified_at.map(rfc3339),
        }
    }

    pub fn settled(&self) -> bool {
        matches!(self.status.as_str(), "verified" | "failed" | "cancelled")
    }

    /// The item as "what waits on whom" lists it.
    pub fn waiting(&self, org: Option<String>) -> Value {
        json!({
            "n": self.n,
            "org": org,
            "target": {"type": self.target_type, "name": self.target_name},
            "who": self.waiting_on,
            "what": self.detail,
        })
    }
}

#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
pub struct IncidentView {
    pub id: String,
    pub scope: String,
    pub reason: String,
    pub kinds: Vec<String>,
    pub include_own: bool,
    pub overlap_s: i64,
    pub status: String,
    pub started_by: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub total: usize,
    /// Items per status.
    pub counts: Value,
    /// Settled items (verified, failed or cancelled) of all, 0–100.
    pub progress: u8,
    /// Items verified of all, 0–100.
    pub verified_pct: u8,
    /// What waits on whom.
    pub waiting: Vec<Value>,
    /// Present when the campaign's job stopped after failing again and
    /// again: its last error. `incident retry` starts it again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    pub items: Vec<ItemView>,
}

impl IncidentRow {
    pub fn view(
        &self,
        items: &[ItemRow],
        orgs: &std::collections::HashMap<String, String>,
    ) -> IncidentView {
        let mut counts: Vec<(String, i64)> = Vec::new();
        for i in items {
            match counts.iter_mut().find(|(s, _)| *s == i.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((i.status.clone(), 1)),
            }
        }
        let org_of = |i: &ItemRow| i.org_id.as_ref().and_then(|o| orgs.get(o).cloned());
        let waiting = items
            .iter()
            .filter(|i| i.status == "waiting_person")
            .map(|i| i.waiting(org_of(i)))
            .collect();
        let mut v = self.view_counted(&counts, waiting);
        v.items = items.iter().map(|i| i.view(org_of(i))).collect();
        v
    }

    /// The campaign with its items counted per status (`counts`, as SQL
    /// aggregates them) and `waiting` as given; no items listed.
    pub fn view_counted(&self, counts: &[(String, i64)], waiting: Vec<Value>) -> IncidentView {
        let of = |s: &str| {
            counts
                .iter()
                .filter(|(c, _)| c == s)
                .map(|(_, n)| usize::try_from(*n).unwrap_or(0))
                .sum::<usize>()
        };
        let mut by_status = serde_json::Map::new();
        for s in ITEM_STATUSES {
            by_status.insert(s.into(), json!(of(s)));
        }
        let total: usize = counts
            .iter()
            .map(|(_, n)| usize::try_from(*n).unwrap_or(0))
            .sum();
        let pct = |n: usize| {
            (n * 100)
                .checked_div(total)
                .map_or(100, |p| u8::try_from(p).unwrap_or(100))
        };
        let settled = of("verified") + of("failed") + of("cancelled");
        IncidentView {
            id: self.id.clone(),
            scope: self.scope.clone(),
            reason: self.reason.clone(),
            kinds: serde_json::from_str(&self.kinds).unwrap_or_default(),
            include_own: self.include_own,
            overlap_s: self.overlap_ms / 1000,
            status: self.status.clone(),
            started_by: self.started_by.clone(),
            started_at: rfc3339(self.started_at),
            finished_at: self.finished_at.map(rfc3339),
            total,
            counts: Value::Object(by_status),
            progress: pct(settled),
            verified_pct: pct(of("verified")),
            waiting,
            stopped: self.stopped.clone(),
            items: Vec::new(),
        }
    }
}

/// Who asks: a platform operator (any scope), or an org's admin (their
/// own org only).
pub enum Asker<'a> {
    Operator,
    OrgAdmin { org_id: &'a str },
}

impl Asker<'_> {
    /// Of a campaign's items, those the asker may see: an org admin sees
    /// their own org's items only, in their own campaign or the operator's
    /// (whose other orgs' items, and their re-authorize links, are none of
    /// theirs; nor are the operator's own items).
    fn visible(&self, items: Vec<ItemRow>) -> Vec<ItemRow> {
        items.into_iter().filter(|i| self.sees(i)).collect()
    }

    /// Whether the asker may see `item` ([`Asker::visible`]).
    fn sees(&self, item: &ItemRow) -> bool {
        match self {
            Asker::Operator => true,
            Asker::OrgAdmin { org_id } => item.org_id.as_deref() == Some(*org_id),
        }
    }

    /// Whether the asker may act on (cancel, retry) the campaign: the
    /// operator, or an org admin on their own org's campaign — never on the
    /// operator's, however much of it is theirs.
    fn owns(&self, row: &IncidentRow) -> bool {
        match self {
            Asker::Operator => true,
            Asker::OrgAdmin { org_id } => row.org_id.as_deref() == Some(*org_id),
        }
    }
}

/// The running campaign a start overlaps, as the asker may see it.
#[derive(Debug)]
pub enum Overlap {
    /// The asker's own campaign (or any, for the operator): all of it.
    Visible(Box<IncidentView>),
    /// The operator's campaign, to an org admin: named, nothing of it shown
    /// (its items for the asker's org are at `GET /api/v1/incidents/{id}`).
    Operators { id: String, scope: String },
}

impl Overlap {
    pub fn id(&self) -> &str {
        match self {
            Overlap::Visible(v) => &v.id,
            Overlap::Operators { id, .. } => id,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Overlap::Visible(v) => format!(
                "campaign {} over {} is running and overlaps this scope",
                v.id, v.scope
            ),
            Overlap::Operators { id, scope } => format!(
                "the platform operator's campaign {id} over {scope} is running and covers your org; \
                 your org's items in it are at /api/v1/incidents/{id}"
            ),
        }
    }

    /// The campaign, as the conflict's answer carries it.
    pub fn campaign(&self) -> Value {
        match self {
            Overlap::Visible(v) => json!(v),
            Overlap::Operators { id, scope } => {
                json!({"id": id, "scope": scope, "owner": "operator"})
            }
        }
    }
}

pub struct StartRequest {
    pub reason: String,
    /// `all` or `org:SLUG`.
    pub scope: String,
    pub kinds: Vec<String>,
    pub include_own: bool,
    pub overlap_ms: i64,
    /// The campaign's rotations retire the previous credential at their
    /// deadline even with readers still on it, naming them.
    pub force_cutover: bool,
    /// The campaign's rotations end the sessions a target keeps open with
    /// the retired credential (Redis), so none opened with the leaked one
    /// outlives it.
    pub end_sessions: bool,
    pub dry_run: bool,
}

pub enum Started {
    Plan(Value),
    /// The campaign, with the new secrets of rekey's own credentials
    /// (shown once).
    Campaign(Box<IncidentView>, Vec<Value>),
}

/// The slugs of the orgs `ids` names (each item's org), read for those
/// alone: not every org of the platform for every campaign answered.
async fn slugs<'a>(
    core: &Core,
    ids: impl IntoIterator<Item = &'a Option<String>>,
) -> Result<std::collections::HashMap<String, String>, IncidentError> {
    let ids: Vec<&str> = ids.into_iter().filter_map(|o| o.as_deref()).collect();
    Ok(crate::identity::orgs::slugs(&core.db, &ids).await?)
}

pub async fn get_row<C: AsEx>(c: &mut C, id: &str) -> Result<IncidentRow, IncidentError> {
    fetch_optional!(
        c,
        IncidentRow,
        &format!("SELECT {COLS} FROM incidents WHERE id = $1"),
        id
    )?
    .ok_or_else(|| IncidentError::NotFound(format!("campaign {id}")))
}

pub async fn items<C: AsEx>(c: &mut C, id: &str) -> Result<Vec<ItemRow>, IncidentError> {
    Ok(fetch_all!(
        c,
        ItemRow,
        &format!("SELECT {ITEM_COLS} FROM incident_items WHERE incident_id = $1 ORDER BY n"),
        id
    )?)
}

/// A campaign the asker may see, with the items they may see: an org
/// admin sees their org's campaigns, and the operator's that hold items of
/// their org (those items only).
pub async fn get(core: &Core, asker: &Asker<'_>, id: &str) -> Result<IncidentView, IncidentError> {
    let mut c = core.db.read().await?;
    let row = get_row(&mut c, id).await?;
    let its = asker.visible(items(&mut c, id).await?);
    drop(c);
    if !asker.owns(&row) && (row.org_id.is_some() || its.is_empty()) {
        return Err(IncidentError::NotFound(format!("campaign {id}")));
    }
    Ok(row.view(&its, &slugs(core, its.iter().map(|i| &i.org_id)).await?))
}

/// The campaigns `get` would show the asker, newest first.
const VISIBLE: &str = "($1 = '' OR org_id = $1 OR (org_id IS NULL AND EXISTS (
    SELECT 1 FROM incident_items v WHERE v.incident_id = incidents.id AND v.org_id = $1)))";

/// A campaign item that waits on a person, as the landing page lists it.
pub struct Waiting {
    /// The campaign's id.
    pub incident_id: String,
    /// The item as `waiting` lists it, with its `status`.
    pub item: Value,
    /// `failed`, or `waiting_person`.
    pub status: String,
    /// Whether the asker may retry it (the campaign is theirs to act on).
    pub retry: bool,
}

/// What waits on the asker in the running campaigns it sees, at most
/// `limit`, failed items first: for the operator every item that waits on
/// a person or failed, in every org (its own turns — a provider's OAuth
/// client to replace — among them); for an org admin their org's, but not
/// the operator's turns. Selected in SQL, so the landing page reads only
/// these, however many items the campaigns have.
pub async fn waiting_on(
    core: &Core,
    asker: &Asker<'_>,
    limit: i64,
) -> Result<Vec<Waiting>, IncidentError> {
    let org = match asker {
        Asker::Operator => "",
        Asker::OrgAdmin { org_id } => org_id,
    };
    let mut c = core.db.read().await?;
    let items = fetch_all!(
        &mut c,
        ItemRow,
        &format!(
            "SELECT {ITEM_COLS} FROM incident_items
             WHERE status IN ('failed', 'waiting_person') AND ($1 = '' OR org_id = $1)
               AND ($1 = '' OR COALESCE(waiting_on, '') <> 'operator')
               AND incident_id IN (SELECT id FROM incidents WHERE status = 'running' AND {VISIBLE})
             ORDER BY CASE WHEN status = 'failed' THEN 0 ELSE 1 END, incident_id DESC, n LIMIT $2"
        ),
        org,
        limit
    )?;
    // Whose campaigns they are (one read for all): an org admin retries
    // items of their own org's campaign, never of the operator's.
    let mut ids: Vec<&str> = items.iter().map(|i| i.incident_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let owners: HashMap<String, bool> = if ids.is_empty() {
        HashMap::new()
    } else {
        let sql = format!(
            "SELECT {COLS} FROM incidents WHERE id IN ({})",
            crate::store::sql::param_list(1, ids.len())
        );
        let args = ids
            .iter()
            .map(|i| crate::store::sql::Arg::Text(i.to_string()))
            .collect();
        let rows: Vec<IncidentRow> = crate::store::sql::fetch_all_args(&mut c, &sql, args).await?;
        rows.iter().map(|r| (r.id.clone(), asker.owns(r))).collect()
    };
    drop(c);
    let ids: Vec<&str> = items.iter().filter_map(|i| i.org_id.as_deref()).collect();
    let orgs = crate::identity::orgs::slugs(&core.db, &ids).await?;
    Ok(items
        .iter()
        .map(|i| {
            let slug = i.org_id.as_ref().and_then(|o| orgs.get(o).cloned());
            Waiting {
                incident_id: i.incident_id.clone(),
                item: i.waiting(slug),
                status: i.status.clone(),
                retry: i.status == "failed" && owners.get(&i.incident_id) == Some(&true),
            }
        })
        .collect())
}

pub async fn list(core: &Core, asker: &Asker<'_>) -> Result<Vec<IncidentView>, IncidentError> {
    let org = match asker {
        Asker::Operator => "",
        Asker::OrgAdmin { org_id } => org_id,
    };
    let mut c = core.db.read().await?;
    let rows = fetch_all!(
        &mut c,
        IncidentRow,
        &format!("SELECT {COLS} FROM incidents WHERE {VISIBLE} ORDER BY started_at DESC, id DESC LIMIT 200"),
        org
    )?;
    // Every listed campaign's visible items in one query, not one per
    // campaign. The id breaks ties of time, as on the pages, so the two
    // answers list campaigns in one order.
    let all = fetch_all!(
        &mut c,
        ItemRow,
        &format!(
            "SELECT {ITEM_COLS} FROM incident_items WHERE ($1 = '' OR org_id = $1) AND incident_id IN (
               SELECT id FROM incidents WHERE {VISIBLE} ORDER BY started_at DESC, id DESC LIMIT 200)
             ORDER BY incident_id, n"
        ),
        org
    )?;
    drop(c);
    views(core, rows, all).await
}

/// One page of the campaigns `get` would show the asker, newest first by
/// keyset (`STARTED_AT.ID` after `after`, the `next` of the page before),
/// with the exact total; each campaign's visible items counted, not
/// listed.
pub async fn page(
    core: &Core,
    asker: &Asker<'_>,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<IncidentView>, IncidentError> {
    let org = match asker {
        Asker::Operator => "",
        Asker::OrgAdmin { org_id } => org_id,
    };
    let (at, id) = Cursor::opt_at(after)
        .map_err(|e| IncidentError::Invalid(e.to_string()))?
        .unwrap_or((i64::MAX, String::new()));
    let limit = keyset::limit(limit);
    let mut c = core.db.read().await?;
    let total = crate::scalar_optional!(
        &mut c,
        i64,
        &format!("SELECT COUNT(*) FROM incidents WHERE {VISIBLE}"),
        org
    )?
    .unwrap_or(0);
    const AFTER: &str = "(started_at < $2 OR (started_at = $2 AND id < $3))
         ORDER BY started_at DESC, id DESC LIMIT $4";
    let rows = fetch_all!(
        &mut c,
        IncidentRow,
        &format!("SELECT {COLS} FROM incidents WHERE {VISIBLE} AND {AFTER}"),
        org,
        at,
        &id,
        limit + 1
    )?;
    // The page's campaigns' visible items counted per status in one
    // query: a platform-wide campaign's thousands of items are not read.
    let counted = fetch_all!(
        &mut c,
        (String, String, i64),
        &format!(
            "SELECT incident_id, status, COUNT(*) FROM incident_items
             WHERE ($1 = '' OR org_id = $1) AND incident_id IN (
               SELECT id FROM incidents WHERE {VISIBLE} AND {AFTER})
             GROUP BY incident_id, status"
        ),
        org,
        at,
        &id,
        limit + 1
    )?;
    drop(c);
    let mut by_campaign: std::collections::HashMap<String, Vec<(String, i64)>> = Default::default();
    for (campaign, status, n) in counted {
        by_campaign.entry(campaign).or_default().push((status, n));
    }
    // Counted, not listed: no items, and no "what waits on whom" (the
    // campaign's page has it).
    Ok(
        Page::from_rows(rows, limit, total, |r| Cursor::of(r.started_at, &r.id)).map(|r| {
            let counts = by_campaign.remove(&r.id).unwrap_or_default();
            r.view_counted(&counts, Vec::new())
        }),
    )
}

/// Campaign rows as the lists show them: each with its visible items
/// (`all`, of these and maybe other campaigns) counted, not listed.
async fn views(
    core: &Core,
    rows: Vec<IncidentRow>,
    all: Vec<ItemRow>,
) -> Result<Vec<IncidentView>, IncidentError> {
    let mut by_campaign: std::collections::HashMap<String, Vec<ItemRow>> = Default::default();
    for i in all {
        by_campaign
            .entry(i.incident_id.clone())
            .or_default()
            .push(i);
    }
    let orgs = slugs(core, by_campaign.values().flatten().map(|i| &i.org_id)).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let its = by_campaign.remove(&r.id).unwrap_or_default();
        let mut v = r.view(&its, &orgs);
        v.items.clear();
        out.push(v);
    }
    Ok(out)
}

/// Plans a campaign and (unless `dry_run`) starts it.
pub async fn start(
    core: &Core,
    actor: &Actor,
    asker: &Asker<'_>,
    req: &StartRequest,
) -> Result<Started, IncidentError> {
    if req.reason.trim().is_empty() {
        return Err(IncidentError::Invalid("say why (--reason)".into()));
    }
    if !(0..=crate::rotation::limits::MAX_OVERLAP_MS).contains(&req.overlap_ms) {
        return Err(IncidentError::Invalid(
            "the overlap must be between 0s and 30d".into(),
        ));
    }
    // An org admin's scope is judged before any org is looked up: naming
    // another org is refused alike whether it exists or not, so the answer
    // never tells a tenant which other orgs there are.
    if let Asker::OrgAdmin { org_id } = asker {
        let own = crate::identity::orgs::find_in(&core.db, org_id).await?;
        let s = req.scope.trim();
        if s != "all" && s != format!("org:{}", own.slug) && s != format!("org:{}", own.id) {
            return Err(IncidentError::Forbidden(
                "an org admin may start a campaign over their own org only".into(),
            ));
        }
    }
    let scope = plan::Scope::parse(core, &req.scope).await?;
    match (asker, &scope) {
        (Asker::Operator, _) => {}
        (Asker::OrgAdmin { .. }, plan::Scope::All) => {
            return Err(IncidentError::Forbidden(
                "only a platform operator may start a campaign over every org (scope all)".into(),
            ))
        }
        (Asker::OrgAdmin { org_id }, plan::Scope::Org(o)) if o.id != *org_id => {
            return Err(IncidentError::Forbidden(
                "an org admin may start a campaign over their own org only".into(),
            ))
        }
        _ => {}
    }
    for k in &req.kinds {
        if crate::connectors::catalog::kind(k).is_none() {
            return Err(IncidentError::Invalid(format!(
                "{k:?} is not a connector kind in the catalog (`rekey connector list`)"
            )));
        }
    }
    let planned = plan::plan(core, &scope, &req.kinds, req.include_own).await?;
    if planned.is_empty() {
        return Err(IncidentError::Invalid(format!(
            "nothing to do: {} holds no credential{}; no campaign was created",
            scope.name(),
            if req.kinds.is_empty() {
                String::new()
            } else {
                format!(" of kind {}", req.kinds.join(", "))
            }
        )));
    }
    if req.dry_run {
        let orgs = slugs(core, planned.iter().map(|p| &p.org_id)).await?;
        return Ok(Started::Plan(json!({
            "dry_run": true,
            "scope": scope.name(),
            "reason": req.reason,
            "overlap_s": req.overlap_ms / 1000,
            "total": planned.len(),
            "items": planned.iter().map(|p| p.view(&orgs)).collect::<Vec<_>>(),
        })));
    }
    let now = core.now();
    let id = new_id();
    let mut tx = core.db.begin_write().await?;
    // Serializes campaign starts (both engines): the overlap check below
    // sees every campaign started before this one.
    exec!(&mut tx, "UPDATE incident_gate SET n = n + 1 WHERE id = 1")?;
    let running = fetch_all!(
        &mut tx,
        IncidentRow,
        &format!("SELECT {COLS} FROM incidents WHERE finished_at IS NULL")
    )?;
    let org_id = scope.org_id();
    let overlapping =
        |r: &IncidentRow| r.org_id.is_none() || org_id.is_none() || r.org_id.as_deref() == org_id;
    // The operator's campaign over every org is never blocked by an org's:
    // it takes the org campaigns over (their open items end, and the
    // rotations they started are adopted by this campaign's items). Only
    // another campaign over every org blocks it.
    let mut taken_over = Vec::new();
    if matches!(asker, Asker::Operator) && org_id.is_none() {
        for r in running
            .iter()
            .filter(|r| r.org_id.is_some() && overlapping(r))
        {
            take_over(&mut tx, r, &id, now).await?;
            taken_over.push(r.id.clone());
        }
    }
    if let Some(r) = running
        .into_iter()
        .filter(|r| !taken_over.contains(&r.id))
        .find(overlapping)
    {
        drop(tx);
        if !asker.owns(&r) {
            return Err(IncidentError::Running(Overlap::Operators {
                id: r.id,
                scope: r.scope,
            }));
        }
        let mut c = core.db.read().await?;
        let its = asker.visible(items(&mut c, &r.id).await?);
        drop(c);
        return Err(IncidentError::Running(Overlap::Visible(Box::new(
            r.view(&its, &slugs(core, its.iter().map(|i| &i.org_id)).await?),
        ))));
    }
    let job_id = queue::enqueue(
        &mut tx,
        &NewJob {
            kind: JOB_KIND,
            subject: &id,
            step: "run",
            payload: &json!({"force_cutover": req.force_cutover, "end_sessions": req.end_sessions}),
            run_at: now,
            max_attempts: 10,
            host: None,
        },
        now,
    )
    .await?;
    exec!(
        &mut tx,
        "INSERT INTO incidents (id, scope, org_id, reason, kinds, include_own, overlap_ms, status, job_id, started_by, started_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, $10)",
        &id,
        scope.name(),
        org_id,
        req.reason.trim(),
        json!(req.kinds).to_string(),
        req.include_own,
        req.overlap_ms,
        &job_id,
        &actor.name,
        now
    )?;
    for p in &planned {
        plan::insert(&mut tx, &id, p, now).await?;
    }
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id,
            action: "incident.start",
            target: Some(&id),
            detail: json!({"scope": scope.name(), "reason": req.reason.trim(), "items": planned.len(), "include_own": req.include_own, "took_over": taken_over}),
        },
    )
    .await?;
    tx.commit().await?;
    // rekey's own credentials: done now, so their new secrets reach the
    // person who started the campaign (once).
    let row = get_row(&mut core.db.read().await?, &id).await?;
    let mut secrets = Vec::new();
    for item in items(&mut core.db.read().await?, &id).await? {
        if own::is_own(&item) {
            if let Some(s) = own::act(core, actor, &row, &item).await? {
                secrets.push(s);
            }
        }
    }
    core.work_due.notify_one();
    let view = get(core, &Asker::Operator, &id).await?;
    Ok(Started::Campaign(Box::new(view), secrets))
}

/// Ends org campaign `r` in favour of the operator's campaign `by`, in the
/// start's transaction: its open items end `cancelled` saying so (their
/// rotations go on, and `by`'s items adopt them), its job stops, audited.
async fn take_over(tx: &mut Tx, r: &IncidentRow, by: &str, now: i64) -> Result<(), IncidentError> {
    let detail = format!("taken over by the operator's campaign {by}");
    exec!(
        tx,
        "UPDATE incident_items SET status = 'cancelled', detail = $1, updated_at = $2
         WHERE incident_id = $3 AND status IN ('pending', 'acting', 'done', 'waiting_person', 'failed')",
        &detail,
        now,
        &r.id
    )?;
    exec!(
        tx,
        "UPDATE incidents SET status = 'cancelled', finished_at = $1 WHERE id = $2 AND finished_at IS NULL",
        now,
        &r.id
    )?;
    queue::cancel(tx, &r.job_id, now).await?;
    audit::record(
        tx,
        now,
        &Actor::new("incident".to_string(), None),
        Event {
            org_id: r.org_id.as_deref(),
            action: "incident.taken_over",
            target: Some(&r.id),
            detail: json!({"by": by}),
        },
    )
    .await?;
    Ok(())
}

fn not_yours(id: &str) -> IncidentError {
    IncidentError::Forbidden(format!(
        "campaign {id} is the platform operator's; only the operator can cancel or retry it"
    ))
}

/// Stops what has not started: pending items become `cancelled`; what is
/// under way (rotations) finishes or is cancelled on its own.
pub async fn cancel(
    core: &Core,
    actor: &Actor,
    asker: &Asker<'_>,
    id: &str,
) -> Result<IncidentView, IncidentError> {
    get(core, asker, id).await?;
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let row = get_row(&mut tx, id).await?;
    if !asker.owns(&row) {
        return Err(not_yours(id));
    }
    if row.finished_at.is_some() {
        return Err(IncidentError::Invalid(format!(
            "campaign {id} is {}; nothing to cancel",
            row.status
        )));
    }
    let n = exec!(
        &mut tx,
        "UPDATE incident_items SET status = 'cancelled', detail = 'cancelled before it started', updated_at = $1
         WHERE incident_id = $2 AND status = 'pending'",
        now,
        id
    )?;
    exec!(
        &mut tx,
        "UPDATE incidents SET status = 'cancelled', finished_at = $1 WHERE id = $2",
        now,
        id
    )?;
    queue::cancel(&mut tx, &row.job_id, now).await?;
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: row.org_id.as_deref(),
            action: "incident.cancel",
            target: Some(id),
            detail: json!({"items_cancelled": n}),
        },
    )
    .await?;
    tx.commit().await?;
    get(core, asker, id).await
}

/// Cancels item `n` of a running campaign: a pending item never starts;
/// one whose rotation has not changed the target yet has that rotation
/// cancelled; a failed one is given up (the campaign can complete without
/// it). An item whose rotation is changing the target, or has made the
/// change, is refused with what ends it instead (`rotation finish`): make
/// before break is never abandoned half way. `incident retry --item N`
/// starts a cancelled item again.
pub async fn cancel_item(
    core: &Core,
    actor: &Actor,
    asker: &Asker<'_>,
    id: &str,
    n: i64,
) -> Result<IncidentView, IncidentError> {
    get(core, asker, id).await?;
    let row = get_row(&mut core.db.read().await?, id).await?;
    if !asker.owns(&row) {
        return Err(not_yours(id));
    }
    if row.finished_at.is_some() {
        return Err(IncidentError::Invalid(format!(
            "campaign {id} is {}; nothing to cancel",
            row.status
        )));
    }
    // The one item, as far as the asker may see it.
    let item = fetch_optional!(
        &mut core.db.read().await?,
        ItemRow,
        &format!("SELECT {ITEM_COLS} FROM incident_items WHERE incident_id = $1 AND n = $2"),
        id,
        n
    )?
    .filter(|i| asker.sees(i))
    .ok_or_else(|| IncidentError::NotFound(format!("item {n} of campaign {id}")))?;
    match item.status.as_str() {
        "cancelled" | "verified" => {
            return Err(IncidentError::Invalid(format!(
                "item {n} is {}; nothing to cancel",
                item.status
            )))
        }
        "done" => {
            return Err(IncidentError::Invalid(format!(
                "item {n} is done: its new credential is current and the previous one waits for its cut-over; end that with `rekey rotation finish {}`",
                item.rotation_id.as_deref().unwrap_or("ID")
            )))
        }
        "acting" if item.rotation_id.is_none() => {
            return Err(IncidentError::Invalid(format!(
                "item {n} is starting its rotation; cancel it again in a moment (its rotation can be cancelled until it changes the target)"
            )))
        }
        _ => {}
    }
    // Its rotation first, and only while it may be (the rotation says
    // when not, naming what ends it): the item is never marked cancelled
    // over a rotation that goes on.
    if let (Some(rid), Some(org)) = (&item.rotation_id, &item.org_id) {
        let r = crate::rotation::get_any(core, rid).await?;
        if r.finished_at.is_none() {
            crate::rotation::cancel(core, actor, org, rid).await?;
        }
    }
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    // Only from the status read: a pass that moved the item meanwhile
    // (its rotation finished) wins, and the cancel says so.
    let k = exec!(
        &mut tx,
        "UPDATE incident_items SET status = 'cancelled', detail = $1, waiting_on = NULL, updated_at = $2
         WHERE incident_id = $3 AND n = $4 AND status = $5",
        format!("cancelled by {}", actor.name),
        now,
        id,
        n,
        &item.status
    )?;
    if k == 0 {
        return Err(IncidentError::Invalid(format!(
            "item {n} changed while it was being cancelled; look at it again"
        )));
    }
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: item.org_id.as_deref().or(row.org_id.as_deref()),
            action: "incident.item_cancel",
            target: Some(id),
            detail: json!({"n": n, "was": item.status, "rotation": item.rotation_id}),
        },
    )
    .await?;
    tx.commit().await?;
    get(core, asker, id).await
}

/// Puts failed items (or item `n`) back to `pending` and runs the
/// campaign again.
pub async fn retry(
    core: &Core,
    actor: &Actor,
    asker: &Asker<'_>,
    id: &str,
    n: Option<i64>,
) -> Result<IncidentView, IncidentError> {
    get(core, asker, id).await?;
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let row = get_row(&mut tx, id).await?;
    if !asker.owns(&row) {
        return Err(not_yours(id));
    }
    if row.status == "cancelled" {
        return Err(IncidentError::Invalid(format!(
            "campaign {id} was cancelled"
        )));
    }
    let its = items(&mut tx, id).await?;
    if let Some(n) = n {
        let Some(item) = its.iter().find(|i| i.n == n) else {
            return Err(IncidentError::NotFound(format!(
                "item {n} of campaign {id}"
            )));
        };
        if !matches!(item.status.as_str(), "failed" | "cancelled") {
            return Err(IncidentError::Invalid(format!(
                "item {n} is {}; only failed or cancelled items are retried",
                item.status
            )));
        }
    } else if !its.iter().any(|i| i.status == "failed") && row.stopped.is_none() {
        return Err(IncidentError::Invalid(format!(
            "campaign {id} has no failed item"
        )));
    }
    let k = exec!(
        &mut tx,
        "UPDATE incident_items SET status = 'pending', rotation_id = NULL, detail = 'retried', updated_at = $1
         WHERE incident_id = $2 AND ($3 IS NULL OR n = $3)
           AND (status = 'failed' OR (status = 'cancelled' AND $3 IS NOT NULL))",
        now,
        id,
        n
    )?;
    exec!(
        &mut tx,
        "UPDATE incidents SET status = 'running', finished_at = NULL WHERE id = $1",
        id
    )?;
    queue::requeue(&mut tx, &row.job_id, "run", now).await?;
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: row.org_id.as_deref(),
            action: "incident.retry",
            target: Some(id),
            detail: json!({"items": k, "item": n}),
        },
    )
    .await?;
    tx.commit().await?;
    get(core, asker, id).await
}

/// An open campaign as the public status page shows it: no org names.
/// The reason of an org's own campaign is its operator's words about that
/// org, so only platform-wide campaigns (`all`) show theirs.
#[derive(sqlx::FromRow, Serialize, Debug)]
pub struct PublicCampaign {
    #[serde(skip)]
    pub scope: String,
    pub reason: String,
    #[serde(skip)]
    pub started_at_ms: i64,
    pub items: i64,
    pub settled: i64,
}

pub async fn open_public(db: &crate::store::Db) -> Result<Vec<PublicCampaign>, StoreError> {
    let mut c = db.read().await?;
    let mut rows = fetch_all!(
        &mut c,
        PublicCampaign,
        "SELECT i.scope, i.reason, i.started_at AS started_at_ms,
                (SELECT COUNT(*) FROM incident_items t WHERE t.incident_id = i.id) AS items,
                (SELECT COUNT(*) FROM incident_items t WHERE t.incident_id = i.id
                   AND t.status IN ('done', 'verified', 'failed', 'cancelled')) AS settled
         FROM incidents i WHERE i.status = 'running' ORDER BY i.started_at"
    )?;
    for r in &mut rows {
        if r.scope != "all" {
            r.reason = "an org's own campaign".into();
        }
    }
    Ok(rows)
}
