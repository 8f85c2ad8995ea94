//! Orgs: the tenants. Every org-owned query takes the org id.

use serde::Serialize;

use super::IdentityError;
use crate::audit::{self, Actor, Event};
use crate::store::keyset::Page;
use crate::store::{is_unique_violation, new_id, AsEx, Db, Tx};
use crate::{exec, fetch_all, fetch_optional};

#[derive(sqlx::FromRow, Serialize, Debug, Clone)]
pub struct Org {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub created_at: i64,
    #[serde(skip)]
    pub revoked_before: Option<i64>,
}

const COLS: &str = "id, slug, name, created_at, revoked_before";

pub fn validate_slug(slug: &str) -> Result<String, IdentityError> {
    let s = slug.trim().to_lowercase();
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s)
    } else {
        Err(IdentityError::Invalid(format!(
            "org slug {slug:?} must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
        )))
    }
}

pub async fn create(
    db: &Db,
    actor: &Actor,
    slug: &str,
    name: Option<&str>,
    now: i64,
) -> Result<Org, IdentityError> {
    let slug = validate_slug(slug)?;
    let name = match name {
        Some(n) => super::validate_name("org name", n)?,
        None => slug.clone(),
    };
    let org = Org {
        id: new_id(),
        slug,
        name,
        created_at: now,
        revoked_before: None,
    };
    let mut tx = db.begin_write().await?;
    let r = exec!(
        &mut tx,
        "INSERT INTO orgs (id, slug, name, created_at) VALUES ($1, $2, $3, $4)",
        &org.id,
        &org.slug,
        &org.name,
        org.created_at
    );
    match r {
        Err(e) if is_unique_violation(&e) => {
            return Err(IdentityError::Conflict(format!("org {:?}", org.slug)))
        }
        r => r?,
    };
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: Some(&org.id),
            action: "org.create",
            target: Some(&org.slug),
            detail: serde_json::json!({"name": org.name}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(org)
}

pub async fn list(db: &Db) -> Result<Vec<Org>, IdentityError> {
    let mut c = db.read().await?;
    Ok(fetch_all!(
        &mut c,
        Org,
        &format!("SELECT {COLS} FROM orgs ORDER BY slug")
    )?)
}

/// One page of orgs by slug, after `after` (keyset: a deep page costs
/// what the first does), with the exact total and, when more follow, the
/// slug to continue after (slugs are unique: the slug is the cursor).
pub async fn page(db: &Db, after: Option<&str>, limit: i64) -> Result<Page<Org>, IdentityError> {
    let mut c = db.read().await?;
    let total = crate::scalar_optional!(&mut c, i64, "SELECT COUNT(*) FROM orgs")?.unwrap_or(0);
    let rows = fetch_all!(
        &mut c,
        Org,
        &format!("SELECT {COLS} FROM orgs WHERE slug > $1 ORDER BY slug LIMIT $2"),
        after.unwrap_or(""),
        limit.saturating_add(1)
    )?;
    Ok(Page::from_rows(rows, limit, total, |o| o.slug.clone()))
}

/// The slugs of the orgs `ids` (a page's), by id, in one query.
pub async fn slugs(
    db: &Db,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, String>, IdentityError> {
    let mut ids: Vec<&str> = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let mut c = db.read().await?;
    let mut out = std::collections::HashMap::with_capacity(ids.len());
    // In chunks: a campaign over every org may name more orgs than either
    // store binds parameters in one statement.
    for chunk in ids.chunks(1_000) {
        let rows: Vec<(String, String)> = crate::store::sql::fetch_all_args(
            &mut c,
            &format!(
                "SELECT id, slug FROM orgs WHERE id IN ({})",
                crate::store::sql::param_list(1, chunk.len())
            ),
            chunk
                .iter()
                .map(|i| crate::store::sql::Arg::Text((*i).to_string()))
                .collect(),
        )
        .await?;
        out.extend(rows);
    }
    Ok(out)
}

/// Finds an org by slug or id.
pub async fn find<C: AsEx>(c: &mut C, slug_or_id: &str) -> Result<Org, IdentityError> {
    let key = slug_or_id.trim().to_lowercase();
    fetch_optional!(
        c,
        Org,
        &format!("SELECT {COLS} FROM orgs WHERE slug = $1 OR id = $1"),
        &key
    )?
    .ok_or_else(|| IdentityError::NotFound(format!("org {slug_or_id:?}")))
}

pub async fn find_in(db: &Db, slug_or_id: &str) -> Result<Org, IdentityError> {
    let mut c = db.read().await?;
    find(&mut c, slug_or_id).await
}

/// Bulk revocation: nothing of the org issued before `cutoff` stays valid.
pub async fn set_revoked_before(
    tx: &mut Tx,
    org_id: &str,
    cutoff: i64,
) -> Result<(), IdentityError> {
    exec!(
        tx,
        "UPDATE orgs SET revoked_before = $1 WHERE id = $2",
        cutoff,
        org_id
    )?;
    Ok(())
}
