//! Platform service keys: what platform code presents (`Authorization:
//! Bearer rk_sk_…`) to read a connection's current credentials.

use serde::Serialize;
use serde_json::{json, Value};

use super::ConnectorError;
use crate::audit::{self, Actor, Event};
use crate::clock::rfc3339;
use crate::crypto::token::{self, TokenKind};
use crate::identity::validate_name;
use crate::state::Core;
use crate::store::{is_unique_violation, new_id, AsEx, StoreError};
use crate::{exec, fetch_all, fetch_optional};

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct ServiceKey {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct View {
    pub id: String,
    pub name: String,
    /// RFC 3339; `created_at` in the API's vocabulary, `created` as the
    /// CLI's list has always named it.
    pub created: String,
    pub created_at: String,
    pub status: &'static str,
}

impl ServiceKey {
    pub fn view(&self) -> View {
        View {
            id: self.id.clone(),
            name: self.name.clone(),
            created: rfc3339(self.created_at),
            created_at: rfc3339(self.created_at),
            status: if self.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            },
        }
    }
}

pub async fn create(
    core: &Core,
    actor: &Actor,
    name: &str,
) -> Result<(ServiceKey, String), ConnectorError> {
    let name = validate_name("service key name", name)?;
    let key = token::mint(TokenKind::ServiceKey);
    let now = core.now();
    let k = ServiceKey {
        id: new_id(),
        name,
        created_at: now,
        revoked_at: None,
    };
    let mut tx = core.db.begin_write().await?;
    let r = exec!(
        &mut tx,
        "INSERT INTO service_keys (id, name, digest, created_at) VALUES ($1, $2, $3, $4)",
        &k.id,
        &k.name,
        core.pepper.digest(&key),
        now
    );
    match r {
        Err(e) if is_unique_violation(&e) => {
            return Err(ConnectorError::Conflict(format!(
                "service key {:?}",
                k.name
            )))
        }
        r => r?,
    };
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: None,
            action: "service_key.create",
            target: Some(&k.name),
            detail: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((k, key))
}

pub async fn list(core: &Core) -> Result<Vec<ServiceKey>, ConnectorError> {
    let mut c = core.db.read().await?;
    Ok(fetch_all!(
        &mut c,
        ServiceKey,
        "SELECT id, name, created_at, revoked_at FROM service_keys ORDER BY name"
    )?)
}

/// One page of the keys by name, after the name `after`, with the exact
/// total (the console's list).
pub async fn page(
    core: &Core,
    after: Option<&str>,
    limit: i64,
) -> Result<crate::store::keyset::Page<ServiceKey>, ConnectorError> {
    let mut c = core.db.read().await?;
    let total =
        crate::scalar_optional!(&mut c, i64, "SELECT COUNT(*) FROM service_keys")?.unwrap_or(0);
    let rows = fetch_all!(
        &mut c,
        ServiceKey,
        "SELECT id, name, created_at, revoked_at FROM service_keys WHERE name > $1 ORDER BY name LIMIT $2",
        after.unwrap_or(""),
        limit.saturating_add(1)
    )?;
    Ok(crate::store::keyset::Page::from_rows(
        rows,
        limit,
        total,
        |k| k.name.clone(),
    ))
}

pub async fn revoke(core: &Core, actor: &Actor, name: &str) -> Result<(), ConnectorError> {
    let now = core.now();
    let mut tx = core.db.begin_write().await?;
    let n = exec!(
        &mut tx,
        "UPDATE service_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        now,
        name
    )?;
    if n == 0 {
        return Err(ConnectorError::NotFound(format!(
            "active service key {name:?}"
        )));
    }
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: None,
            action: "service_key.revoke",
            target: Some(name),
            detail: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The active service key behind a presented secret.
pub async fn authenticate(
    core: &Core,
    presented: &str,
) -> Result<Option<ServiceKey>, ConnectorError> {
    if !token::well_formed(TokenKind::ServiceKey, presented.trim()) {
        return Ok(None);
    }
    let mut c = core.db.read().await?;
    Ok(fetch_optional!(
        &mut c,
        ServiceKey,
        "SELECT id, name, created_at, revoked_at FROM service_keys WHERE digest = $1",
        core.pepper.digest(presented.trim())
    )?
    .filter(|k| k.revoked_at.is_none()))
}

/// What an org admin is shown of the platform's own consumers. Service
/// keys are the platform's, not the tenant's: their names and the addresses
/// they read from are the operator's business, so to a tenant each is "a
/// platform service key" — in reader lists, in rotation step details, and
/// in the campaign item records that quote them (stored so, since an
/// org's campaign view, report and webhooks all show them). A consumer
/// that named itself (`X-Rekey-Consumer`) stays named; its address goes.
pub async fn for_tenant<C: AsEx>(c: &mut C, v: Value) -> Result<Value, StoreError> {
    let text = tenant_text(c, &v.to_string()).await?;
    let mut out: Value = serde_json::from_str(&text).unwrap_or(v);
    hide_addresses(&mut out);
    Ok(out)
}

/// [`for_tenant`] for text: every service key named in it (as `service:NAME`,
/// with the ` from ADDRESS` a reader carries) becomes "a platform service key".
pub async fn tenant_text<C: AsEx>(c: &mut C, text: &str) -> Result<String, StoreError> {
    if !text.contains("service:") {
        return Ok(text.to_string());
    }
    let mut names: Vec<(String,)> = fetch_all!(c, (String,), "SELECT name FROM service_keys")?;
    // Longest first: `service:etl` must not eat the start of `service:etl-2`.
    names.sort_by_key(|(n,)| std::cmp::Reverse(n.len()));
    let mut text = text.to_string();
    for (name,) in &names {
        text = hide_reader(&text, &format!("service:{name}"));
    }
    Ok(text)
}

/// `tag` (and the ` from ADDRESS` after it, as step details name a reader)
/// replaced by "a platform service key".
fn hide_reader(text: &str, tag: &str) -> String {
    const SHOWN: &str = "a platform service key";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(tag) {
        out.push_str(&rest[..i]);
        out.push_str(SHOWN);
        rest = &rest[i + tag.len()..];
        // A consumer that named itself stays named (` (consumer NAME)`);
        // the address after it goes all the same. A name may hold `)`:
        // its end is the first `)` followed by ` from ADDRESS`, else the
        // first followed by what ends a reader.
        if let Some(named) = rest.strip_prefix(" (consumer ") {
            let closes = || named.match_indices(')').map(|(j, _)| j);
            let end = closes()
                .find(|&j| named[j + 1..].starts_with(" from "))
                .or_else(|| {
                    closes().find(|&j| {
                        let after = &named[j + 1..];
                        after.is_empty() || after.starts_with([' ', ',', ')', '"', ';', '\\'])
                    })
                });
            if let Some(j) = end {
                let keep = " (consumer ".len() + j + 1;
                out.push_str(&rest[..keep]);
                rest = &rest[keep..];
            }
        }
        if let Some(after) = rest.strip_prefix(" from ") {
            let end = after.find([' ', ',', ')', '"', ';']).unwrap_or(after.len());
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    out
}

/// Readers' `ip` fields emptied (the reader lists of `rotation show` and
/// `--preflight`).
fn hide_addresses(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("reader") && m.contains_key("ip") {
                m.insert("ip".into(), Value::Null);
            }
            for x in m.values_mut() {
                hide_addresses(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(hide_addresses),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_readers_are_not_named_to_tenants() {
        let t = "waiting for readers: service:etl from 10.1.2.3 (last read version 1), service:etl-2 from ::1; service:etl";
        let out = hide_reader(&hide_reader(t, "service:etl-2"), "service:etl");
        assert_eq!(
            out,
            "waiting for readers: a platform service key (last read version 1), a platform service key; a platform service key"
        );
        // A consumer's name stays; the address after it goes.
        let t = "readers: service:etl (consumer a) b) from 10.1.2.3 (last read version 1)";
        assert_eq!(
            hide_reader(t, "service:etl"),
            "readers: a platform service key (consumer a) b) (last read version 1)"
        );
        let mut v = json!({"consumers": [{"reader": "x", "ip": "10.0.0.1"}], "ip": "kept"});
        hide_addresses(&mut v);
        assert_eq!(v["consumers"][0]["ip"], Value::Null);
        assert_eq!(v["ip"], "kept");
    }
}
