//! Platform operators: act across orgs.

use serde::Serialize;

use super::{normalize_email, IdentityError};
use crate::audit::{self, Actor, Event};
use crate::state::Core;
use crate::store::{is_unique_violation, new_id, Db};
use crate::{exec, fetch_optional};

#[derive(sqlx::FromRow, Serialize, Debug, Clone)]
pub struct Operator {
    pub id: String,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: i64,
}

pub async fn create(
    core: &Core,
    actor: &Actor,
    email: &str,
    password: &str,
) -> Result<Operator, IdentityError> {
    let email = normalize_email(email)?;
    let hash = super::users::hash_password(core, password).await?;
    let now = core.now();
    let op = Operator {
        id: new_id(),
        email,
        password_hash: hash,
        created_at: now,
    };
    let mut tx = core.db.begin_write().await?;
    let r = exec!(
        &mut tx,
        "INSERT INTO operators (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)",
        &op.id,
        &op.email,
        &op.password_hash,
        op.created_at
    );
    match r {
        Err(e) if is_unique_violation(&e) => {
            return Err(IdentityError::Conflict(format!("operator {:?}", op.email)))
        }
        r => r?,
    };
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: None,
            action: "operator.create",
            target: Some(&op.email),
            detail: serde_json::json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(op)
}

pub async fn find_by_email(db: &Db, email: &str) -> Result<Option<Operator>, IdentityError> {
    let mut c = db.read().await?;
    Ok(fetch_optional!(
        &mut c,
        Operator,
        "SELECT id, email, password_hash, created_at FROM operators WHERE email = $1",
        email.trim().to_lowercase()
    )?)
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Operator>, IdentityError> {
    let mut c = db.read().await?;
    Ok(fetch_optional!(
        &mut c,
        Operator,
        "SELECT id, email, password_hash, created_at FROM operators WHERE id = $1",
        id
    )?)
}
