//! The age view one page at a time, by keyset (`store::keyset`), with the
//! exact total: what the console shows (`/ui/orgs/{org}/age`, `/ui/age`)
//! and the admin API answers when asked for a page.
//!
//! The worst-first order (`Rank`) is pushed into SQL: one narrow query
//! ranks every credential in tables across the UNION of their kinds
//! (kind, id, since, due; no joins for names, no last-use subqueries)
//! and returns only the page's rows after the cursor; the page's details
//! are then read for those ids alone. Master keys are not rows of a table
//! (they are the keyring's) and number a handful: they are ranked here
//! and merged in.
//!
//! Whether a credential is past due depends on the time, so a page is
//! ranked as of the time its walk began, carried in the cursor
//! (`ASOF:SEG:T:KIND.ID`): a credential that falls due during a walk
//! keeps its place in it instead of jumping to a page already read.

use super::{gather, master_keys, AgeRow, Only, Rank, KINDS};
use crate::rotation::RotationError;
use crate::state::Core;
use crate::store::keyset::{self, BadCursor, Cursor, Page};

/// One page of the age view.
#[derive(Debug)]
pub struct AgePage {
    pub page: Page<AgeRow>,
    /// Of the whole list, how many are past due (as of the walk's start).
    pub due: i64,
}

/// Where a walk stands: the time it ranks as of, and the last row before
/// the page (none on the first page).
struct After {
    asof: i64,
    last: Option<Rank>,
}

fn parse(s: Option<&str>, now: i64) -> Result<After, BadCursor> {
    let Some(c) = Cursor::opt(s)? else {
        return Ok(After {
            asof: now,
            last: None,
        });
    };
    let bad = || BadCursor(s.unwrap_or_default().to_string());
    let n: Vec<i64> = c
        .key
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    match n[..] {
        [asof, seg, t, kind] if (0..=1).contains(&seg) => Ok(After {
            asof,
            last: Some(Rank {
                seg,
                t,
                kind,
                id: c.id,
            }),
        }),
        _ => Err(bad()),
    }
}

fn cursor(asof: i64, r: &Rank) -> String {
    Cursor::of(format!("{asof}:{}:{}:{}", r.seg, r.t, r.kind), &r.id)
}

/// Every credential in a table, as the ranking needs it: `$1` the org
/// (`''`: every org and the platform's own), `$2` the time ranked as of,
/// `$3` the least age (or NULL), `$4` the latest due date (or NULL: due
/// or not). Mirrors `gather`'s queries; `k` is the kind's place in
/// `KINDS`.
const RANKED: &str = "
WITH u AS (
  SELECT CAST(0 AS BIGINT) AS k, c.id AS id,
         COALESCE(s.created_at, c.last_rotated_at, c.created_at) AS since,
         c.rotation_interval_ms AS iv
  FROM connections c
  LEFT JOIN credential_slots s ON s.connection_id = c.id AND s.slot = 'current'
  WHERE c.has_credentials = TRUE AND ($1 = '' OR c.org_id = $1)
  UNION ALL
  SELECT CAST(1 AS BIGINT), k.id, COALESCE(s.rotated_at, k.created_at), s.rotation_interval_ms
  FROM access_keys k
  LEFT JOIN secret_schedules s ON s.target_type = 'key' AND s.target_id = k.id
  WHERE k.revoked_at IS NULL AND ($1 = '' OR k.org_id = $1)
  UNION ALL
  SELECT CASE WHEN cl.kind = 'm2m' THEN CAST(2 AS BIGINT) ELSE CAST(3 AS BIGINT) END,
         cl.id, COALESCE(s.rotated_at, cl.created_at), s.rotation_interval_ms
  FROM oauth_clients cl
  LEFT JOIN secret_schedules s ON s.target_type = cl.kind AND s.target_id = cl.id
  WHERE ($1 = '' OR cl.org_id = $1)
  UNION ALL
  SELECT CAST(4 AS BIGINT), kind, updated_at, CAST(NULL AS BIGINT)
  FROM connector_clients WHERE $1 = ''
), r AS (
  SELECT k, id, since, since + iv AS due,
         CASE WHEN iv IS NOT NULL AND since + iv <= $2 THEN 0 ELSE 1 END AS seg,
         CASE WHEN iv IS NOT NULL AND since + iv <= $2 THEN since + iv ELSE since END AS t
  FROM u WHERE ($3 IS NULL OR $2 - since >= $3)
    AND ($4 IS NULL OR (iv IS NOT NULL AND since + iv <= $4))
)";

/// A row of the page with the whole list's totals beside it; an empty
/// page is one row of totals alone (`k` and `id` NULL).
#[derive(sqlx::FromRow)]
struct RankRow {
    k: Option<i64>,
    id: Option<String>,
    since: Option<i64>,
    due: Option<i64>,
    total: i64,
    due_total: i64,
}

/// Which credentials of the age view a page walks: those of `org_id`
/// (every org's and the platform's own with `None`), at least
/// `older_than_ms` old, and due by `due_by_ms` (unix ms; with a schedule
/// whose next date is then or earlier).
#[derive(Debug, Clone, Copy, Default)]
pub struct Which<'a> {
    pub org_id: Option<&'a str>,
    pub older_than_ms: Option<i64>,
    pub due_by_ms: Option<i64>,
}

/// One page of the age view of `org_id` (every org's and the platform's
/// own with `None`), credentials at least `older_than_ms` old, worst
/// first, after `after` (the `next` of the page before), with the exact
/// total.
pub async fn page(
    core: &Core,
    org_id: Option<&str>,
    older_than_ms: Option<i64>,
    after: Option<&str>,
    limit: i64,
) -> Result<AgePage, RotationError> {
    let which = Which {
        org_id,
        older_than_ms,
        due_by_ms: None,
    };
    page_of(core, which, after, limit).await
}

/// `page` of the credentials `which` says: the filters in the ranking
/// query, so the page holds `limit` of those (the landing page's first
/// page of credentials due or due soon is exactly the ones it shows).
pub async fn page_of(
    core: &Core,
    which: Which<'_>,
    after: Option<&str>,
    limit: i64,
) -> Result<AgePage, RotationError> {
    let Which {
        org_id,
        older_than_ms,
        due_by_ms,
    } = which;
    let now = core.now();
    let After { asof, last } =
        parse(after, now).map_err(|e| RotationError::Invalid(e.to_string()))?;
    let limit = keyset::limit(limit);
    let org = org_id.unwrap_or("");
    // The first page ranks from before every row.
    let from = last.clone().unwrap_or(Rank {
        seg: -1,
        t: i64::MIN,
        kind: -1,
        id: String::new(),
    });
    let mut c = core.db.read().await?;
    // One statement: the ranking is used twice (the totals, the page), so
    // both engines compute it once (a CTE referenced twice is materialized
    // by PostgreSQL 12+ and SQLite 3.35+), where two statements ranked
    // every credential twice.
    let rows = crate::fetch_all!(
        &mut c,
        RankRow,
        &format!(
            "{RANKED},
             totals AS (SELECT COUNT(*) AS total, COUNT(CASE WHEN seg = 0 THEN 1 END) AS due_total FROM r),
             p AS (SELECT seg, t, k, id, since, due FROM r
                   WHERE seg > $5 OR (seg = $5 AND (t > $6 OR (t = $6 AND (k > $7 OR (k = $7 AND id > $8)))))
                   ORDER BY seg, t, k, id LIMIT $9)
             SELECT p.k, p.id, p.since, p.due, totals.total, totals.due_total
             FROM totals LEFT JOIN p ON TRUE
             ORDER BY p.seg, p.t, p.k, p.id"
        ),
        org,
        asof,
        older_than_ms,
        due_by_ms,
        from.seg,
        from.t,
        from.kind,
        &from.id,
        limit + 1
    )?;
    let (mut total, mut due) = rows
        .first()
        .map(|r| (r.total, r.due_total))
        .unwrap_or((0, 0));
    let mut ranked: Vec<(Rank, Option<AgeRow>)> = rows
        .into_iter()
        .filter_map(|r| match (r.k, r.id, r.since) {
            (Some(k), Some(id), Some(since)) => Some((Rank::of(k, &id, since, r.due, asof), None)),
            _ => None,
        })
        .collect();
    // Master keys: ranked here, counted into the totals, merged in.
    if org_id.is_none() {
        for (r, sealed) in master_keys(&mut c, core, now).await? {
            let since = sealed.unwrap_or(asof);
            if older_than_ms.is_some_and(|min| asof.saturating_sub(since) < min) {
                continue;
            }
            if due_by_ms.is_some_and(|by| r.due_ms.is_none_or(|d| d > by)) {
                continue;
            }
            let rank = Rank::of_row(&r, asof, Some(sealed));
            total += 1;
            due += i64::from(rank.seg == 0);
            if rank > from {
                ranked.push((rank, Some(r)));
            }
        }
        ranked.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let pg = Page::from_rows(ranked, limit, total, |(r, _)| cursor(asof, r));
    // The page's details, for its ids alone.
    let mut only = Only::default();
    for (r, _) in pg.items.iter().filter(|(_, row)| row.is_none()) {
        let list = match KINDS.get(usize::try_from(r.kind).unwrap_or(usize::MAX)) {
            Some(&"connection") => &mut only.connections,
            Some(&"access_key") => &mut only.keys,
            Some(&"m2m_secret") | Some(&"app_secret") => &mut only.clients,
            Some(&"provider_client") => &mut only.providers,
            _ => continue,
        };
        list.push(r.id.clone());
    }
    let mut found = gather(&mut c, now, org, Some(&only)).await?;
    drop(c);
    let page = Page {
        // A credential deleted between the two reads is left out.
        items: pg
            .items
            .into_iter()
            .filter_map(|(rank, row)| {
                row.or_else(|| {
                    let kind = KINDS.get(usize::try_from(rank.kind).ok()?)?;
                    let i = found
                        .iter()
                        .position(|f| f.id == rank.id && f.kind == *kind)?;
                    Some(found.swap_remove(i))
                })
            })
            .collect(),
        total: pg.total,
        next: pg.next,
    };
    Ok(AgePage { page, due })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_carry_the_walks_time_and_a_total_order() {
        let r = Rank::of(2, "01j9abc", 1_000, Some(5_000), 9_000);
        assert_eq!((r.seg, r.t), (0, 5_000), "past due: by due date");
        let s = Rank::of(2, "01j9abc", 1_000, Some(5_000), 4_000);
        assert_eq!((s.seg, s.t), (1, 1_000), "not yet due: by since");
        let c = cursor(9_000, &r);
        let a = parse(Some(&c), 1).unwrap();
        assert_eq!(a.asof, 9_000);
        assert_eq!(a.last, Some(r));
        assert_eq!(parse(None, 7).unwrap().asof, 7);
        for bad in ["nodot", "1:2:3.x", "1:0:3:x.y", "1:5:3:2.y", "1:0:3:2:9.y"] {
            assert!(parse(Some(bad), 1).is_err(), "{bad}");
        }
        // negative times survive the round trip
        let n = Rank::of(0, "x", -5, None, 0);
        assert_eq!(parse(Some(&cursor(0, &n)), 1).unwrap().last, Some(n));
    }
}
