//! Blast radius: for a value found in a log or a repository, what it is,
//! whether it is live, whom it speaks for, what it unlocks, when it was
//! last used, and the exact command that kills it (`--revoke` runs it).
//!
//! Issued secrets are matched by their keyed digest (all rekey stores);
//! connection credentials by opening each sealed slot and comparing every
//! secret field in constant time. The value itself is never stored or
//! logged: the audit event carries the first 12 characters of its digest.

use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::IncidentError;
use crate::audit::{self, Actor, Event};
use crate::clock::rfc3339;
use crate::connectors::connections;
use crate::connectors::slots::{self, Slot};
use crate::oauth::grants::cut_off;
use crate::state::Core;
use crate::{fetch_all, fetch_optional};

/// What to look up: a value, or a credential by name.
pub enum Query {
    Secret(String),
    Key { org_id: String, name: String },
    App { org_id: String, name: String },
    M2m { org_id: String, name: String },
    Connection { org_id: String, name: String },
}

/// The answer; `found` false for a value rekey never issued or held.
pub struct Radius {
    pub found: bool,
    pub answer: Value,
    /// The command that kills it, run by `--revoke`.
    pub revoke: Option<Revoke>,
}

#[derive(Clone)]
pub enum Revoke {
    Key {
        org_id: String,
        name: String,
    },
    ClientSecret {
        org_id: String,
        name: String,
        m2m: bool,
    },
    Grant {
        org_id: String,
        app: String,
        grant_id: String,
    },
    ServiceKey {
        name: String,
    },
    /// A value kept by an overlap (`key reset --overlap`,
    /// `regenerate-secret --overlap`): the overlap ends, the new value
    /// goes on working.
    EndOverlap {
        org_id: String,
        name: String,
        /// `None`: an access key; else the client's kind.
        client: Option<crate::oauth::clients::ClientKind>,
    },
    /// A connection's previous credential: its rotation finishes `--now`.
    Finish {
        org_id: String,
        rotation_id: String,
    },
    Rotate {
        org_id: String,
        connection: String,
    },
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    org_id: String,
    slug: String,
    name: String,
    scope: String,
    digest: String,
    prev_expires_at: Option<i64>,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
    org_cutoff: Option<i64>,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: String,
    org_id: String,
    slug: String,
    kind: String,
    name: String,
    client_id: String,
    scope: String,
    secret_digest: String,
    prev_secret_expires_at: Option<i64>,
    active: bool,
    user_email: Option<String>,
    client_cutoff: Option<i64>,
    org_cutoff: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    kind: String,
    grant_id: Option<String>,
    org_id: String,
    slug: String,
    app: String,
    client_kind: String,
    client_id: String,
    user_email: Option<String>,
    scope: String,
    issued_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    used_at: Option<i64>,
    used_ip: Option<String>,
    grant_revoked_at: Option<i64>,
    grant_last_used_at: Option<i64>,
    client_cutoff: Option<i64>,
    org_cutoff: Option<i64>,
}

pub async fn look_up(core: &Core, actor: &Actor, q: Query) -> Result<Radius, IncidentError> {
    let now = core.now();
    let (digest, r) = match q {
        Query::Secret(v) => {
            let v = v.trim().to_string();
            if v.is_empty() {
                return Err(IncidentError::Invalid("no value on standard input".into()));
            }
            let digest = core.pepper.digest(&v);
            let r = match by_digest(core, &digest, now).await? {
                Some(r) => Some(r),
                None => held(core, &v).await?,
            };
            (Some(digest), r)
        }
        Query::Key { org_id, name } => {
            let k =
                crate::oauth::access_keys::find(&mut core.db.read().await?, &org_id, &name).await?;
            (None, by_digest(core, &k.digest, now).await?)
        }
        Query::App { org_id, name } => {
            let c = crate::oauth::clients::find_in(
                &core.db,
                &org_id,
                crate::oauth::clients::ClientKind::App,
                &name,
            )
            .await?;
            (None, by_digest(core, &c.secret_digest, now).await?)
        }
        Query::M2m { org_id, name } => {
            let c = crate::oauth::clients::find_in(
                &core.db,
                &org_id,
                crate::oauth::clients::ClientKind::M2m,
                &name,
            )
            .await?;
            (None, by_digest(core, &c.secret_digest, now).await?)
        }
        Query::Connection { org_id, name } => {
            let c = connections::find_in(&core.db, &org_id, &name).await?;
            (None, Some(connection_answer(core, &c, "current").await?))
        }
    };
    // Every look-up is audited; a value's only trace is its digest prefix.
    let mut tx = core.db.begin_write().await?;
    audit::record(
        &mut tx,
        now,
        actor,
        Event {
            org_id: None,
            action: "incident.blast_radius",
            target: None,
            detail: json!({
                "digest_prefix": digest.as_deref().map(|d| d.chars().take(12).collect::<String>()),
                "found": r.is_some(),
                "type": r.as_ref().map(|r| r.answer["type"].clone()),
            }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(r.unwrap_or(Radius {
        found: false,
        answer: json!({"found": false, "message": "not issued or held by this rekey"}),
        revoke: None,
    }))
}

/// A secret rekey issued, by digest.
async fn by_digest(core: &Core, digest: &str, now: i64) -> Result<Option<Radius>, IncidentError> {
    let mut c = core.db.read().await?;
    let key = fetch_optional!(
        &mut c,
        KeyRow,
        "SELECT k.id, k.org_id, o.slug, k.name, k.scope, k.digest, k.prev_expires_at, k.expires_at, k.last_used_at,
                k.revoked_at, o.revoked_before AS org_cutoff, k.created_at
         FROM access_keys k JOIN orgs o ON o.id = k.org_id WHERE k.digest = $1 OR k.prev_digest = $1",
        digest
    )?;
    if let Some(k) = key {
        let previous = k.digest != digest;
        let used = crate::oauth::usage::last_use(&mut c, &k.id, digest).await?;
        let live = k.revoked_at.is_none()
            && k.expires_at.is_none_or(|t| t > now)
            // A previous key without an end is held by its rotation.
            && (!previous || k.prev_expires_at.is_none_or(|t| t > now))
            && !cut_off(k.created_at, &[k.org_cutoff]);
        let cmd = if previous {
            format!("rekey key end-overlap --org {} --name {}", k.slug, k.name)
        } else {
            format!("rekey key revoke --org {} --name {}", k.slug, k.name)
        };
        return Ok(Some(Radius {
            found: true,
            answer: json!({
                "found": true,
                "type": "access_key",
                "live": live,
                "org": k.slug,
                "name": k.name,
                "which": if previous { "previous (kept by an overlap)" } else { "current" },
                "speaks_for": {"org": k.slug, "scope": k.scope, "user": null},
                "unlocks": {"api": format!("the org's People API with scope {}", k.scope)},
                "last_used_at": used.as_ref().map(|u| u.used_at).or(k.last_used_at).map(rfc3339),
                "last_used_from": used.as_ref().and_then(|u| u.ip.clone()),
                "kill": cmd,
                "id": k.id,
            }),
            revoke: Some(if previous {
                Revoke::EndOverlap {
                    org_id: k.org_id,
                    name: k.name,
                    client: None,
                }
            } else {
                Revoke::Key {
                    org_id: k.org_id,
                    name: k.name,
                }
            }),
        }));
    }
    let client = fetch_optional!(
        &mut c,
        ClientRow,
        "SELECT c.id, c.org_id, o.slug, c.kind, c.name, c.client_id, c.scope, c.secret_digest, c.prev_secret_expires_at,
                c.active, u.email AS user_email, c.revoked_before AS client_cutoff, o.revoked_before AS org_cutoff
         FROM oauth_clients c JOIN orgs o ON o.id = c.org_id LEFT JOIN users u ON u.id = c.user_id
         WHERE c.secret_digest = $1 OR c.prev_secret_digest = $1",
        digest
    )?;
    if let Some(cl) = client {
        let previous = cl.secret_digest != digest;
        let live = cl.active && (!previous || cl.prev_secret_expires_at.is_none_or(|t| t > now));
        // Live authorizations only: not revoked, and holding a token that
        // is neither expired nor issued before a cut-off (a campaign revokes
        // an application's tokens by cut-off, leaving the grant rows).
        let cutoff = [cl.client_cutoff, cl.org_cutoff]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(i64::MIN);
        let grants = fetch_all!(
            &mut c,
            (String, Option<i64>),
            "SELECT g.id, g.last_used_at FROM oauth_grants g
             WHERE g.client_pk = $1 AND g.revoked_at IS NULL
               AND (EXISTS (SELECT 1 FROM oauth_refresh_tokens r WHERE r.grant_id = g.id
                            AND r.used_at IS NULL AND r.expires_at > $2 AND r.issued_at >= $3)
                    OR EXISTS (SELECT 1 FROM oauth_access_tokens t WHERE t.grant_id = g.id
                            AND t.revoked_at IS NULL AND t.expires_at > $2 AND t.issued_at >= $3))",
            &cl.id,
            now,
            cutoff
        )?;
        // Who presented this very secret last (`oauth::usage`).
        let used = crate::oauth::usage::last_use(&mut c, &cl.id, digest).await?;
        let last = grants
            .iter()
            .filter_map(|g| g.1)
            .chain(used.as_ref().map(|u| u.used_at))
            .max();
        let m2m = cl.kind == "m2m";
        let cmd = if m2m {
            format!(
                "rekey m2m regenerate-secret --org {} --name {} --revoke-tokens",
                cl.slug, cl.name
            )
        } else {
            format!(
                "rekey app regenerate-secret --org {} --name {}",
                cl.slug, cl.name
            )
        };
        let cmd = if previous {
            format!(
                "rekey {} end-overlap --org {} --name {}",
                cl.kind, cl.slug, cl.name
            )
        } else {
            cmd
        };
        return Ok(Some(Radius {
            found: true,
            answer: json!({
                "found": true,
                "type": if m2m { "m2m_secret" } else { "app_secret" },
                "live": live,
                "org": cl.slug,
                "name": cl.name,
                "client_id": cl.client_id,
                "which": if previous { "previous (kept by an overlap)" } else { "current" },
                "speaks_for": {"org": cl.slug, "scope": cl.scope, "user": cl.user_email},
                "unlocks": if m2m {
                    json!({"tokens": format!("client-credentials tokens with scope {} for the org", cl.scope)})
                } else {
                    json!({"authorizations": grants.len(), "what": "exchanging codes and refreshing the tokens of every live authorization of the application"})
                },
                "last_used_at": last.map(rfc3339),
                "last_used_from": used.as_ref().and_then(|u| u.ip.clone()),
                "kill": cmd,
            }),
            revoke: Some(if previous {
                Revoke::EndOverlap {
                    org_id: cl.org_id,
                    name: cl.name,
                    client: Some(if m2m {
                        crate::oauth::clients::ClientKind::M2m
                    } else {
                        crate::oauth::clients::ClientKind::App
                    }),
                }
            } else {
                Revoke::ClientSecret {
                    org_id: cl.org_id,
                    name: cl.name,
                    m2m,
                }
            }),
        }));
    }
    let token = fetch_optional!(
        &mut c,
        TokenRow,
        "SELECT 'access_token' AS kind, t.grant_id, t.org_id, o.slug, c.name AS app, c.kind AS client_kind, c.client_id,
                u.email AS user_email, t.scope, t.issued_at, t.expires_at, t.revoked_at, NULL AS used_at, NULL AS used_ip,
                g.revoked_at AS grant_revoked_at, g.last_used_at AS grant_last_used_at,
                c.revoked_before AS client_cutoff, o.revoked_before AS org_cutoff
         FROM oauth_access_tokens t JOIN oauth_clients c ON c.id = t.client_pk JOIN orgs o ON o.id = t.org_id
         LEFT JOIN users u ON u.id = t.user_id LEFT JOIN oauth_grants g ON g.id = t.grant_id
         WHERE t.digest = $1
         UNION ALL
         SELECT 'refresh_token', r.grant_id, g.org_id, o.slug, c.name, c.kind, c.client_id, u.email, g.scope,
                r.issued_at, r.expires_at, NULL, r.used_at, r.used_ip, g.revoked_at, g.last_used_at,
                c.revoked_before, o.revoked_before
         FROM oauth_refresh_tokens r JOIN oauth_grants g ON g.id = r.grant_id JOIN oauth_clients c ON c.id = g.client_pk
         JOIN orgs o ON o.id = g.org_id LEFT JOIN users u ON u.id = g.user_id
         WHERE r.digest = $1",
        digest
    )?;
    if let Some(t) = token {
        let live = t.revoked_at.is_none()
            && t.grant_revoked_at.is_none()
            && t.expires_at > now
            && (t.kind == "access_token" || t.used_at.is_none())
            && !cut_off(t.issued_at, &[t.client_cutoff, t.org_cutoff]);
        let (cmd, revoke) = match &t.grant_id {
            Some(g) if t.client_kind == "app" => (
                format!(
                    "rekey app revoke-authorization --org {} --name {} --id {g}",
                    t.slug, t.app
                ),
                Some(Revoke::Grant {
                    org_id: t.org_id.clone(),
                    app: t.app.clone(),
                    grant_id: g.clone(),
                }),
            ),
            _ => (
                format!(
                    "rekey m2m regenerate-secret --org {} --name {} --revoke-tokens",
                    t.slug, t.app
                ),
                Some(Revoke::ClientSecret {
                    org_id: t.org_id.clone(),
                    name: t.app.clone(),
                    m2m: true,
                }),
            ),
        };
        return Ok(Some(Radius {
            found: true,
            answer: json!({
                "found": true,
                "type": t.kind,
                "live": live,
                "org": t.slug,
                "application": t.app,
                "client_id": t.client_id,
                "speaks_for": {"org": t.slug, "scope": t.scope, "user": t.user_email},
                "unlocks": {"authorization": t.grant_id, "what": if t.kind == "refresh_token" {
                    "new access tokens for the authorization until it is revoked"
                } else {
                    "the org's People API as the user, until the token expires"
                }},
                "expires_at": rfc3339(t.expires_at),
                "last_used_at": t.used_at.or(t.grant_last_used_at).map(rfc3339),
                "last_used_from": t.used_ip,
                "kill": cmd,
            }),
            revoke,
        }));
    }
    let service = fetch_optional!(
        &mut c,
        (String, Option<i64>),
        "SELECT name, revoked_at FROM service_keys WHERE digest = $1",
        digest
    )?;
    if let Some((name, revoked_at)) = service {
        let cmd = format!("rekey service-key revoke --name {name}");
        // Its reads of connection credentials: the last one, from where.
        let read = fetch_optional!(
            &mut c,
            (i64, Option<String>),
            "SELECT read_at, ip FROM credential_reads
             WHERE reader = $1 OR substr(reader, 1, length($1) + 1) = $1 || '/'
             ORDER BY read_at DESC LIMIT 1",
            format!("service:{name}")
        )?;
        return Ok(Some(Radius {
            found: true,
            answer: json!({
                "found": true,
                "type": "service_key",
                "live": revoked_at.is_none(),
                "org": null,
                "name": name,
                "speaks_for": {"org": null, "scope": "read every org's connection credentials", "user": null},
                "unlocks": {"what": "GET …/connections/{id}/credentials of every connection"},
                "last_used_at": read.as_ref().map(|r| rfc3339(r.0)),
                "last_used_from": read.and_then(|r| r.1),
                "kill": cmd,
            }),
            revoke: Some(Revoke::ServiceKey { name }),
        }));
    }
    Ok(None)
}

/// A value held as (part of) a connection credential: every sealed slot
/// opened and each field compared in constant time.
async fn held(core: &Core, v: &str) -> Result<Option<Radius>, IncidentError> {
    let ids = fetch_all!(
        &mut core.db.read().await?,
        (String, String),
        "SELECT connection_id, slot FROM credential_slots WHERE slot IN ('current', 'previous', 'pending') AND retired_at IS NULL"
    )?;
    for (id, slot) in ids {
        let s = match slot.as_str() {
            "current" => Slot::Current,
            "previous" => Slot::Previous,
            _ => Slot::Pending,
        };
        let Some(creds) = slots::read(&mut core.db.read().await?, core, &id, s).await? else {
            continue;
        };
        let hit = creds
            .values()
            .filter_map(Value::as_str)
            .fold(false, |acc, f| {
                // Every field compared, hit or not: the time does not tell which.
                acc | bool::from(f.as_bytes().ct_eq(v.as_bytes()))
            });
        if hit {
            let conn = connections::get(&mut core.db.read().await?, &id).await?;
            return Ok(Some(connection_answer(core, &conn, &slot).await?));
        }
    }
    Ok(None)
}

async fn connection_answer(
    core: &Core,
    c: &connections::Connection,
    slot: &str,
) -> Result<Radius, IncidentError> {
    let org = crate::identity::orgs::find_in(&core.db, &c.org_id).await?;
    let readers = slots::readers(&mut core.db.read().await?, &c.id).await?;
    let last = readers.iter().max_by_key(|r| r.read_at);
    // A previous credential is retired by finishing the rotation that
    // keeps it; a current (or pending) one is rotated.
    let finishing = match slot {
        "previous" => crate::rotation::last_of(&mut core.db.read().await?, &c.id).await?,
        _ => None,
    };
    let cmd = match &finishing {
        Some(id) => format!("rekey rotation finish {id} --now"),
        None => format!("rekey rotate --org {} --connection {}", org.slug, c.name),
    };
    Ok(Radius {
        found: true,
        answer: json!({
            "found": true,
            "type": "connection_credential",
            "live": c.status != "disconnected",
            "org": org.slug,
            "name": c.name,
            "slot": slot,
            "speaks_for": {"org": org.slug, "connection": c.name, "kind": c.kind, "auth": c.auth},
            "unlocks": {
                "connections": [c.name],
                "settings": c.settings(),
                "deliveries": [],
            },
            "last_used_at": last.map(|r| rfc3339(r.read_at)),
            "last_used_from": last.map(|r| json!({"reader": r.reader, "ip": r.ip})),
            "kill": cmd,
        }),
        revoke: Some(match finishing {
            Some(rotation_id) => Revoke::Finish {
                org_id: org.id,
                rotation_id,
            },
            None => Revoke::Rotate {
                org_id: org.id,
                connection: c.name.clone(),
            },
        }),
    })
}

/// Runs the kill command (`--revoke`), audited by what it calls; returns
/// what it did (with a new secret, shown once, where there is one).
pub async fn revoke(core: &Core, actor: &Actor, r: &Revoke) -> Result<Value, IncidentError> {
    use crate::oauth::clients::{self, ClientKind};
    Ok(match r {
        Revoke::Key { org_id, name } => {
            crate::oauth::access_keys::revoke(core, actor, org_id, name).await?;
            json!({"revoked": true, "detail": format!("access key {name} revoked")})
        }
        Revoke::ClientSecret { org_id, name, m2m } => {
            let kind = if *m2m {
                ClientKind::M2m
            } else {
                ClientKind::App
            };
            let (c, secret) =
                clients::regenerate_secret(core, actor, org_id, kind, name, 0, true).await?;
            if *m2m {
                clients::revoke_tokens_before(
                    core,
                    actor,
                    &c,
                    core.now(),
                    Some("blast radius: a leaked secret"),
                )
                .await?;
            }
            json!({"revoked": true, "detail": format!("{name}: secret regenerated, the old one no longer works"), "new_secret": secret})
        }
        Revoke::Grant {
            org_id,
            app,
            grant_id,
        } => {
            let c = clients::find_in(&core.db, org_id, ClientKind::App, app).await?;
            crate::oauth::authorizations::revoke(core, actor, &c, grant_id).await?;
            json!({"revoked": true, "detail": format!("authorization {grant_id} revoked")})
        }
        Revoke::ServiceKey { name } => {
            crate::connectors::service_keys::revoke(core, actor, name).await?;
            json!({"revoked": true, "detail": format!("service key {name} revoked")})
        }
        Revoke::EndOverlap {
            org_id,
            name,
            client,
        } => {
            match client {
                None => {
                    crate::oauth::access_keys::end_overlap(core, actor, org_id, name).await?;
                }
                Some(kind) => {
                    clients::end_overlap(core, actor, org_id, *kind, name).await?;
                }
            }
            json!({"revoked": true, "detail": format!("{name}: the overlap ended; the previous value no longer works, the current one does")})
        }
        Revoke::Finish {
            org_id,
            rotation_id,
        } => {
            let f = crate::rotation::finish_cutover(core, actor, org_id, rotation_id, true).await?;
            let done = f.rotation.status == "completed";
            json!({
                "revoked": done,
                "detail": if done {
                    format!("rotation {rotation_id} finished at once: the previous credential no longer works")
                } else {
                    format!("rotation {rotation_id} is {}: {}", f.rotation.status, f.rotation.reason.clone().unwrap_or_default())
                },
                "breaks": f.breaks,
                "rotation": f.json(),
            })
        }
        Revoke::Rotate { org_id, connection } => {
            let req = crate::rotation::StartRequest {
                target: crate::rotation::TargetRef::Connection(connection.clone()),
                dry_run: false,
                preflight: false,
                cutover_window_ms: 0,
                deadline_ms: crate::rotation::limits::DEADLINE_MS,
                rotate_with: None,
                force_at_deadline: false,
                end_sessions: false,
            };
            match crate::rotation::start(core, actor, org_id, &req).await {
                Ok(crate::rotation::Started::Rotation(v)) => {
                    json!({"revoked": true, "detail": format!("rotation {} started", v.id), "rotation": *v})
                }
                Ok(crate::rotation::Started::Plan(p)) => p,
                Err(crate::rotation::RotationError::InProgress(v)) => {
                    json!({"revoked": false, "detail": format!("rotation {} is already in progress", v.id)})
                }
                Err(e) => return Err(e.into()),
            }
        }
    })
}
