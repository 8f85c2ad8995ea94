//! Users of an org: email (normalised, unique per org), permission, admin
//! flag, active flag. A deactivated user's grants stop working at once
//! because every token check reads the user.

use serde::Serialize;

use super::{normalize_email, IdentityError, Permission};
use crate::audit::{self, Actor, Event};
use crate::state::Core;
use crate::store::keyset::Page;
use crate::store::{is_unique_violation, new_id, AsEx, Db};
use crate::{exec, fetch_all, fetch_optional};

#[derive(sqlx::FromRow, Serialize, Debug, Clone)]
pub struct User {
    pub id: String,
    pub org_id: String,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub permission: String,
    pub is_admin: bool,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl User {
    pub fn permission(&self) -> Permission {
        // Only values written through `Permission` are stored; fall back to
        // the lesser permission if the row was edited by hand.
        self.permission.parse().unwrap_or(Permission::Read)
    }
}

impl User {
    /// The user as `user list --json` and the admin API show it (never
    /// the password hash).
    pub fn json(&self, org_slug: &str) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "org": org_slug,
            "email": self.email,
            "permission": self.permission,
            "admin": self.is_admin,
            "active": self.active,
            "created_at": crate::clock::rfc3339(self.created_at),
        })
    }
}

const COLS: &str =
    "id, org_id, email, password_hash, permission, is_admin, active, created_at, updated_at";

pub struct NewUser<'a> {
    pub org_id: &'a str,
    pub email: &'a str,
    pub permission: Permission,
    pub is_admin: bool,
    pub password: &'a str,
}

pub async fn create(core: &Core, actor: &Actor, new: NewUser<'_>) -> Result<User, IdentityError> {
    let email = normalize_email(new.email)?;
    let hash = hash_password(core, new.password).await?;
    let now = core.now();
    let user = User {
        id: new_id(),
        org_id: new.org_id.to_string(),
        email,
        password_hash: hash,
        permission: new.permission.as_str().to_string(),
        is_admin: new.is_admin,
        active: true,
        created_at: now,
        updated_at: now,
    };
    let mut tx = core.db.begin_write().await?;
    let r = exec!(
        &mut tx,
        "INSERT INTO users (id, org_id, email, password_hash, permission, is_admin, active, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &user.id,
        &user.org_id,
        &user.email,
        &user.password_hash,
        &user.permission,
        user.is_admin,
        user.active,
        user.created_at,
        user.updated_at
    );
    match r {
        Err(e) if is_unique_violation(&e) => {
            return Err(IdentityError::Conflict(format!("user {:?}", user.email)))
        }
        r => r?,
    };
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: Some(&user.org_id),
            action: "user.create",
            target: Some(&user.email),
            detail: serde_json::json!({"permission": user.permission, "admin": user.is_admin}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// argon2 is deliberately slow: it runs on the bounded password pool, off
/// the async workers.
pub async fn hash_password(core: &Core, password: &str) -> Result<String, IdentityError> {
    Ok(core.passwords.hash(password).await??)
}

/// One argon2 verification (against a dummy hash when `stored` is `None`).
pub async fn verify_password(
    core: &Core,
    password: &str,
    stored: Option<String>,
) -> Result<bool, IdentityError> {
    Ok(core.passwords.verify(password, stored).await?)
}

pub async fn list(db: &Db, org_id: &str) -> Result<Vec<User>, IdentityError> {
    let mut c = db.read().await?;
    Ok(fetch_all!(
        &mut c,
        User,
        &format!("SELECT {COLS} FROM users WHERE org_id = $1 ORDER BY email"),
        org_id
    )?)
}

pub async fn find_by_email<C: AsEx>(
    c: &mut C,
    org_id: &str,
    email: &str,
) -> Result<Option<User>, IdentityError> {
    let email = email.trim().to_lowercase();
    Ok(fetch_optional!(
        c,
        User,
        &format!("SELECT {COLS} FROM users WHERE org_id = $1 AND email = $2"),
        org_id,
        &email
    )?)
}

pub async fn get<C: AsEx>(
    c: &mut C,
    org_id: &str,
    id: &str,
) -> Result<Option<User>, IdentityError> {
    Ok(fetch_optional!(
        c,
        User,
        &format!("SELECT {COLS} FROM users WHERE org_id = $1 AND id = $2"),
        org_id,
        id
    )?)
}

/// A user of `org_id` by email or id.
pub async fn find(db: &Db, org_id: &str, email_or_id: &str) -> Result<User, IdentityError> {
    let mut c = db.read().await?;
    if let Some(u) = find_by_email(&mut c, org_id, email_or_id).await? {
        return Ok(u);
    }
    get(&mut c, org_id, email_or_id.trim())
        .await?
        .ok_or_else(|| IdentityError::NotFound(format!("user {:?}", email_or_id.trim())))
}

/// One page of an org's users by email, with the exact total of those
/// whose email contains `q`, and the email to continue after when more
/// follow (keyset: a deep page costs what the first does). Emails are
/// unique in an org, so the email alone is the cursor (the API names it
/// `next_after`).
pub async fn page(
    db: &Db,
    org_id: &str,
    q: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<User>, IdentityError> {
    let mut c = db.read().await?;
    // Emails are stored lower-cased; `q` matches literally.
    let pattern = q
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(|q| crate::store::sql::like(q, true));
    let total = crate::scalar_optional!(
        &mut c,
        i64,
        "SELECT COUNT(*) FROM users WHERE org_id = $1 AND ($2 IS NULL OR email LIKE $2 ESCAPE '\\')",
        org_id,
        &pattern
    )?
    .unwrap_or(0);
    let limit = limit.max(1);
    let items = fetch_all!(
        &mut c,
        User,
        &format!(
            "SELECT {COLS} FROM users WHERE org_id = $1 AND ($2 IS NULL OR email LIKE $2 ESCAPE '\\')
             AND email > $3 ORDER BY email LIMIT $4"
        ),
        org_id,
        &pattern,
        after.unwrap_or(""),
        limit.saturating_add(1)
    )?;
    Ok(Page::from_rows(items, limit, total, |u| u.email.clone()))
}

/// Admin users with this email in any org (for login without an org).
pub async fn admins_by_email(db: &Db, email: &str) -> Result<Vec<User>, IdentityError> {
    let mut c = db.read().await?;
    Ok(fetch_all!(
        &mut c,
        User,
        &format!("SELECT {COLS} FROM users WHERE email = $1 AND is_admin = TRUE ORDER BY created_at LIMIT 10"),
        email.trim().to_lowercase()
    )?)
}

async fn update(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    email: &str,
    action: &str,
    set: &str,
    value: Value<'_>,
) -> Result<User, IdentityError> {
    let now = core.now();
    let email = email.trim().to_lowercase();
    let mut tx = core.db.begin_write().await?;
    if action == "user.activate" {
        // The deactivation's cut-off (below) is its `now` plus the margin
        // for other instances' caches, but its transaction may commit long
        // after that `now` (a row lock, a slow disk), and until the commit
        // another instance rightly mints for the user with times past the
        // cut-off. Nothing issued before this activation can be legitimate
        // (the user was inactive, or it was issued before the deactivation
        // answered), so the cut-off moves here. Only for a user who was
        // inactive: activating an active user ends nothing.
        exec!(
            &mut tx,
            "UPDATE users SET revoked_before = $1
             WHERE org_id = $2 AND email = $3 AND active = $4 AND COALESCE(revoked_before, 0) < $1",
            now,
            org_id,
            &email,
            false
        )?;
    }
    let sql =
        format!("UPDATE users SET {set} = $1, updated_at = $2 WHERE org_id = $3 AND email = $4");
    let n = match value {
        Value::Bool(b) => exec!(&mut tx, &sql, b, now, org_id, &email)?,
        Value::Text(t) => exec!(&mut tx, &sql, t, now, org_id, &email)?,
    };
    if n == 0 {
        return Err(IdentityError::NotFound(format!("user {email:?}")));
    }
    if action == "user.deactivate" {
        // Everything the user authorized before now stays dead, even if the
        // user is activated again: their authorizations read `Invalid`.
        exec!(
            &mut tx,
            "UPDATE users SET revoked_before = $1 WHERE org_id = $2 AND email = $3",
            crate::store::epoch::cutoff(now),
            org_id,
            &email
        )?;
    }
    let user = find_by_email(&mut tx, org_id, &email)
        .await?
        .ok_or_else(|| IdentityError::NotFound(format!("user {email:?}")))?;
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: Some(org_id),
            action,
            target: Some(&email),
            detail: serde_json::json!({"permission": user.permission, "active": user.active}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

enum Value<'a> {
    Bool(bool),
    Text(&'a str),
}

pub async fn set_active(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    email: &str,
    active: bool,
) -> Result<User, IdentityError> {
    let action = if active {
        "user.activate"
    } else {
        "user.deactivate"
    };
    update(
        core,
        actor,
        org_id,
        email,
        action,
        "active",
        Value::Bool(active),
    )
    .await
}

pub async fn set_permission(
    core: &Core,
    actor: &Actor,
    org_id: &str,
    email: &str,
    permission: Permission,
) -> Result<User, IdentityError> {
    update(
        core,
        actor,
        org_id,
        email,
        "user.set_permission",
        "permission",
        Value::Text(permission.as_str()),
    )
    .await
}
