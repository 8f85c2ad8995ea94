//! A campaign as its console page shows it, however many items it holds (a
//! platform-wide campaign has thousands): its counts aggregated by SQL over
//! every item the asker may see, the first few items that wait on a
//! person, its progress per org and kind a page at a time (worst first),
//! and the items themselves a page at a time by item number, filtered by
//! status, each list with its exact total. The admin API and the CLI show
//! a campaign the same way when asked for a page (`shown`).

use serde::Serialize;
use serde_json::Value;

use super::{get_row, Asker, IncidentError, IncidentRow, IncidentView, ItemRow, ItemView};
use super::{ITEM_COLS, ITEM_STATUSES};
use crate::state::Core;
use crate::store::keyset::{self, BadCursor, Cursor, Page};
use crate::store::AsEx;
use crate::{fetch_all, scalar_optional};

/// Items waiting on a person that the summary names; the rest are the
/// `waiting_person` filter of the items.
pub const WAITING_SHOWN: i64 = 20;

/// One org's items of one kind: how many, how many failed, and how many
/// are settled (verified, failed or cancelled).
#[derive(sqlx::FromRow, Serialize, Debug, Clone, utoipa::ToSchema)]
pub struct Group {
    /// The org's slug; null for the platform's own items.
    pub org: Option<String>,
    /// The connector kind, or the target's type where it has none
    /// (`provider_client`, rekey's own credentials).
    pub kind: String,
    pub total: i64,
    pub failed: i64,
    pub settled: i64,
    /// Settled of all, 0–100 (rounded down).
    pub progress: i64,
}

/// A campaign counted, not listed.
pub struct Summary {
    /// Counts and progress over every visible item; `items` is empty and
    /// `waiting` holds at most [`WAITING_SHOWN`].
    pub view: IncidentView,
}

/// A campaign with one page of its items: what `get` answers, paged
/// (`GET /api/v1/incidents/{id}?limit=&after=&status=`, `rekey incident
/// status ID --limit`).
#[derive(Serialize, Debug)]
pub struct CampaignPage {
    /// The campaign as `get` shows it (`total`, `counts` and `progress`
    /// over every item the asker sees), but `items` holds this page's
    /// items and `waiting` at most the first 20 waiting on a person (the
    /// rest are `status=waiting_person`).
    #[serde(flatten)]
    pub campaign: IncidentView,
    /// The items the pages walk in all: those in `status` when asked,
    /// otherwise every item (then equal to `total`).
    pub items_total: i64,
    /// The `after` of the next page; null on the last.
    pub next_after: Option<String>,
}

/// An item with its org's slug.
#[derive(sqlx::FromRow)]
struct Named {
    #[sqlx(flatten)]
    item: ItemRow,
    org_slug: Option<String>,
}

/// `ITEM_COLS`, each column of `incident_items i`.
fn i_cols() -> String {
    ITEM_COLS
        .split(',')
        .map(|c| format!("i.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The org whose items the asker sees (`''`: every item).
fn org_of<'a>(asker: &Asker<'a>) -> &'a str {
    match asker {
        Asker::Operator => "",
        Asker::OrgAdmin { org_id } => org_id,
    }
}

/// Campaign `id` if the asker may see it (as `get` decides: theirs, or the
/// operator's holding items of their org).
async fn visible_row<C: AsEx>(
    c: &mut C,
    asker: &Asker<'_>,
    id: &str,
) -> Result<IncidentRow, IncidentError> {
    let row = get_row(c, id).await?;
    if asker.owns(&row) {
        return Ok(row);
    }
    let theirs = scalar_optional!(
        c,
        i64,
        "SELECT COUNT(*) FROM (SELECT 1 FROM incident_items WHERE incident_id = $1 AND org_id = $2 LIMIT 1) x",
        id,
        org_of(asker)
    )?
    .unwrap_or(0);
    if row.org_id.is_some() || theirs == 0 {
        return Err(IncidentError::NotFound(format!("campaign {id}")));
    }
    Ok(row)
}

/// Campaign `id` counted per status, with the first items that wait on a
/// person: one aggregate query and one bounded read, whatever the
/// campaign's size.
pub async fn summary(core: &Core, asker: &Asker<'_>, id: &str) -> Result<Summary, IncidentError> {
    let org = org_of(asker);
    let mut c = core.db.read().await?;
    let row = visible_row(&mut c, asker, id).await?;
    let counts = fetch_all!(
        &mut c,
        (String, i64),
        "SELECT status, COUNT(*) FROM incident_items
         WHERE incident_id = $1 AND ($2 = '' OR org_id = $2) GROUP BY status",
        id,
        org
    )?;
    let waiting = fetch_all!(
        &mut c,
        Named,
        &format!(
            "SELECT {}, o.slug AS org_slug FROM incident_items i LEFT JOIN orgs o ON o.id = i.org_id
             WHERE i.incident_id = $1 AND ($2 = '' OR i.org_id = $2) AND i.status = 'waiting_person'
             ORDER BY i.n LIMIT $3",
            i_cols()
        ),
        id,
        org,
        WAITING_SHOWN
    )?;
    drop(c);
    let waiting: Vec<Value> = waiting
        .into_iter()
        .map(|w| w.item.waiting(w.org_slug))
        .collect();
    Ok(Summary {
        view: row.view_counted(&counts, waiting),
    })
}

/// Where a walk of the progress table stands: the last group of the page
/// before, by its place in the order (`groups`).
struct GroupAfter {
    failed: i64,
    done: i64,
    org: String,
    kind: String,
}

/// `FAILED:PERMILLE:ORG.KIND`: slugs hold no `:` or `.`, kinds no `.`
/// (catalog names and target types), and the platform's org is empty.
fn group_cursor(g: &GroupRow) -> String {
    Cursor::of(format!("{}:{}:{}", g.failed, g.done, g.org), &g.kind)
}

fn parse_group_cursor(s: Option<&str>) -> Result<Option<GroupAfter>, BadCursor> {
    let Some(c) = Cursor::opt(s)? else {
        return Ok(None);
    };
    let bad = || BadCursor(s.unwrap_or_default().to_string());
    let mut parts = c.key.splitn(3, ':');
    let (Some(failed), Some(done), Some(org)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    Ok(Some(GroupAfter {
        failed: failed.parse().map_err(|_| bad())?,
        done: done.parse().map_err(|_| bad())?,
        org: org.to_string(),
        kind: c.id,
    }))
}

/// A group as the ranking query reads it: `org` empty for the platform's
/// own items, `done` its settled share in permille.
#[derive(sqlx::FromRow)]
struct GroupRow {
    org: String,
    kind: String,
    total: i64,
    failed: i64,
    settled: i64,
    done: i64,
}

/// Every visible item of campaign `$1` (`$2`: the asker's org, `''` for
/// all) grouped per org and kind, each group with its place in the order.
const GROUPED: &str = "
WITH g AS (
  SELECT COALESCE(o.slug, '') AS org, COALESCE(i.kind, i.target_type) AS kind,
         COUNT(*) AS total,
         SUM(CASE WHEN i.status = 'failed' THEN 1 ELSE 0 END) AS failed,
         SUM(CASE WHEN i.status IN ('verified', 'failed', 'cancelled') THEN 1 ELSE 0 END) AS settled
  FROM incident_items i LEFT JOIN orgs o ON o.id = i.org_id
  WHERE i.incident_id = $1 AND ($2 = '' OR i.org_id = $2)
  GROUP BY COALESCE(o.slug, ''), COALESCE(i.kind, i.target_type)
), r AS (
  SELECT org, kind, total, failed, settled, settled * 1000 / total AS done FROM g
)";

/// One page of campaign `id`'s progress per org and kind, over every item
/// the asker may see, with the exact number of groups. Worst first, as an
/// operator running an incident reads it: the groups with the most failed
/// items first, then the least settled share (least done), then by org
/// slug (the platform's own first among equals) and kind, which are
/// unique and break every tie; `after` is the `next` of the page before.
/// A live campaign's groups move up or down as their items settle, as a
/// live queue's rows do.
pub async fn groups(
    core: &Core,
    asker: &Asker<'_>,
    id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<Group>, IncidentError> {
    let from = parse_group_cursor(after)
        .map_err(|e| IncidentError::Invalid(e.to_string()))?
        .unwrap_or(GroupAfter {
            failed: i64::MAX,
            done: -1,
            org: String::new(),
            kind: String::new(),
        });
    let limit = keyset::limit(limit);
    let org = org_of(asker);
    let mut c = core.db.read().await?;
    visible_row(&mut c, asker, id).await?;
    let total = scalar_optional!(
        &mut c,
        i64,
        &format!("{GROUPED} SELECT COUNT(*) FROM r"),
        id,
        org
    )?
    .unwrap_or(0);
    let rows = fetch_all!(
        &mut c,
        GroupRow,
        &format!(
            "{GROUPED} SELECT org, kind, total, failed, settled, done FROM r
             WHERE failed < $3 OR (failed = $3 AND (done > $4 OR (done = $4
               AND (org > $5 OR (org = $5 AND kind > $6)))))
             ORDER BY failed DESC, done, org, kind LIMIT $7"
        ),
        id,
        org,
        from.failed,
        from.done,
        &from.org,
        &from.kind,
        limit + 1
    )?;
    drop(c);
    Ok(
        Page::from_rows(rows, limit, total, group_cursor).map(|g| Group {
            org: Some(g.org).filter(|o| !o.is_empty()),
            progress: g.done / 10,
            kind: g.kind,
            total: g.total,
            failed: g.failed,
            settled: g.settled,
        }),
    )
}

/// Campaign `id` as `get` shows it, with one page of its items (those in
/// `status` when given) after `after` instead of every item, and at most
/// [`WAITING_SHOWN`] of those waiting on a person: a bounded read however
/// many items the campaign holds.
pub async fn shown(
    core: &Core,
    asker: &Asker<'_>,
    id: &str,
    status: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<CampaignPage, IncidentError> {
    // The page first: a bad status or cursor is refused before any read.
    let items = page(core, asker, id, status, after, limit).await?;
    let mut campaign = summary(core, asker, id).await?.view;
    campaign.items = items.items;
    Ok(CampaignPage {
        campaign,
        items_total: items.total,
        next_after: items.next,
    })
}

/// A page of campaign `id`'s items the asker may see, by item number after
/// `after` (the `next` of the page before: the last number shown), only
/// those in `status` when given, with the exact total of the filtered list.
pub async fn page(
    core: &Core,
    asker: &Asker<'_>,
    id: &str,
    status: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<ItemView>, IncidentError> {
    let status = status.map(str::trim).filter(|s| !s.is_empty());
    if let Some(s) = status {
        if !ITEM_STATUSES.contains(&s) {
            return Err(IncidentError::Invalid(format!(
                "status {s:?}: use one of {}",
                ITEM_STATUSES.join(", ")
            )));
        }
    }
    let after = match after.map(str::trim).filter(|a| !a.is_empty()) {
        None => 0,
        Some(a) => a
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| IncidentError::Invalid(BadCursor(a.to_string()).to_string()))?,
    };
    let limit = keyset::limit(limit);
    let org = org_of(asker);
    let status = status.unwrap_or("");
    let mut c = core.db.read().await?;
    visible_row(&mut c, asker, id).await?;
    let total = scalar_optional!(
        &mut c,
        i64,
        "SELECT COUNT(*) FROM incident_items
         WHERE incident_id = $1 AND ($2 = '' OR org_id = $2) AND ($3 = '' OR status = $3)",
        id,
        org,
        status
    )?
    .unwrap_or(0);
    let rows = fetch_all!(
        &mut c,
        Named,
        &format!(
            "SELECT {}, o.slug AS org_slug FROM incident_items i LEFT JOIN orgs o ON o.id = i.org_id
             WHERE i.incident_id = $1 AND ($2 = '' OR i.org_id = $2) AND ($3 = '' OR i.status = $3)
               AND i.n > $4
             ORDER BY i.n LIMIT $5",
            i_cols()
        ),
        id,
        org,
        status,
        after,
        limit + 1
    )?;
    drop(c);
    Ok(
        Page::from_rows(rows, limit, total, |r| r.item.n.to_string())
            .map(|r| r.item.view(r.org_slug)),
    )
}
