//! A campaign's plan: the scope named on the command line resolved to
//! items, each with its action, in the order they must happen.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::IncidentError;
use crate::connectors::catalog::{self, Rotation as Mode};
use crate::connectors::{connections, drivers};
use crate::identity::orgs::{self, Org};
use crate::oauth::clients::{self, ClientKind};
use crate::state::Core;
use crate::store::Tx;
use crate::{exec, fetch_optional};

pub enum Scope {
    All,
    Org(Org),
}

impl Scope {
    /// `all` or `org:SLUG`.
    pub async fn parse(core: &Core, s: &str) -> Result<Scope, IncidentError> {
        match s.trim() {
            "all" => Ok(Scope::All),
            other => match other.strip_prefix("org:") {
                Some(slug) if !slug.trim().is_empty() => {
                    let o = orgs::find_in(&core.db, slug).await.map_err(|_| {
                        IncidentError::Invalid(format!(
                            "the scope names no org: {slug:?} does not exist"
                        ))
                    })?;
                    Ok(Scope::Org(o))
                }
                _ => Err(IncidentError::Invalid(format!(
                    "scope {other:?}: use org:SLUG or all"
                ))),
            },
        }
    }

    pub fn name(&self) -> String {
        match self {
            Scope::All => "all".into(),
            Scope::Org(o) => format!("org:{}", o.slug),
        }
    }

    pub fn org_id(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Org(o) => Some(&o.id),
        }
    }
}

/// One item before it is stored.
#[derive(Debug, Clone)]
pub struct PlannedItem {
    pub n: i64,
    pub org_id: Option<String>,
    pub target_type: &'static str,
    pub target_id: String,
    pub target_name: String,
    pub kind: Option<String>,
    pub action: &'static str,
    pub host: Option<String>,
    pub after_n: Option<i64>,
    pub detail: String,
}

impl PlannedItem {
    pub fn view(&self, orgs: &HashMap<String, String>) -> Value {
        json!({
            "n": self.n,
            "org": self.org_id.as_ref().and_then(|o| orgs.get(o)),
            "target": {"type": self.target_type, "name": self.target_name, "kind": self.kind},
            "action": self.action,
            "after": self.after_n,
            "detail": self.detail,
        })
    }
}

/// The host a connection's rotation acts on: what campaigns throttle by.
pub fn host_of(c: &connections::Connection) -> String {
    let s = c.settings();
    ["host", "base_url", "account", "instance_url", "bucket"]
        .iter()
        .find_map(|k| s.get(*k).and_then(Value::as_str).filter(|v| !v.is_empty()))
        .map(|v| format!("{}:{v}", c.kind))
        .unwrap_or_else(|| c.kind.clone())
}

pub async fn plan(
    core: &Core,
    scope: &Scope,
    kinds: &[String],
    include_own: bool,
) -> Result<Vec<PlannedItem>, IncidentError> {
    let orgs: Vec<Org> = match scope {
        Scope::All => orgs::list(&core.db).await?,
        Scope::Org(o) => vec![o.clone()],
    };
    let mut conns = Vec::new();
    for o in &orgs {
        for c in connections::list(&core.db, &o.id, None).await? {
            if c.has_credentials && (kinds.is_empty() || kinds.contains(&c.kind)) {
                conns.push(c);
            }
        }
    }
    let mut items: Vec<PlannedItem> = Vec::new();
    // 1. The platform's own OAuth client of each kind whose connections
    //    use it: rotated at the provider before anyone re-authorizes.
    let mut provider_item: BTreeMap<String, i64> = BTreeMap::new();
    if matches!(scope, Scope::All) {
        let mut wanted: Vec<String> = conns
            .iter()
            .filter(|c| c.auth == "oauth2" && c.client_id.is_none())
            .map(|c| c.kind.clone())
            .collect();
        wanted.sort();
        wanted.dedup();
        for kind in wanted {
            let configured = fetch_optional!(
                &mut core.db.read().await?,
                (String,),
                "SELECT client_id FROM connector_clients WHERE kind = $1",
                &kind
            )?;
            let Some((client_id,)) = configured else {
                continue;
            };
            let n = items.len() as i64 + 1;
            provider_item.insert(kind.clone(), n);
            items.push(PlannedItem {
                n,
                org_id: None,
                target_type: "provider_client",
                target_id: kind.clone(),
                target_name: kind.clone(),
                kind: Some(kind.clone()),
                action: "operator",
                host: Some(kind.clone()),
                after_n: None,
                detail: format!(
                    "the operator rotates the client secret of OAuth client {client_id} in the provider's developer console, then stores it: rekey connector configure {kind} --client-id {client_id} --client-secret-stdin"
                ),
            });
        }
    }
    // 2. Connections.
    for c in &conns {
        let Some(k) = catalog::kind(&c.kind) else {
            continue;
        };
        let Some(m) = k.method(&c.auth) else { continue };
        let (action, detail) = match m.rotation {
            Mode::Automatic if drivers::for_kind(&c.kind, &c.auth).is_some() => (
                "rotate",
                "rekey rotates it at the target and verifies the new credential".to_string(),
            ),
            Mode::Reauthorize => (
                "reauthorize",
                "revoked at the provider where it can be; an org admin re-authorizes it"
                    .to_string(),
            ),
            _ => (
                "runbook",
                "an org admin rotates it at the provider (the runbook) and stores the new value"
                    .to_string(),
            ),
        };
        let after = (action == "reauthorize" && c.client_id.is_none())
            .then(|| provider_item.get(&c.kind).copied())
            .flatten();
        items.push(PlannedItem {
            n: items.len() as i64 + 1,
            org_id: Some(c.org_id.clone()),
            target_type: "connection",
            target_id: c.id.clone(),
            target_name: c.name.clone(),
            kind: Some(c.kind.clone()),
            action,
            host: Some(host_of(c)),
            after_n: after,
            detail,
        });
    }
    // 3. rekey's own credentials; those a connection in scope holds are
    //    rotated by its item (2.), which leaves it holding the new value.
    if include_own {
        let held = drivers::rekey::held_by(core, &conns).await?;
        for o in &orgs {
            for app in clients::list(&core.db, &o.id, ClientKind::App).await? {
                for (t, action, detail) in [
                    ("app_tokens", "revoke", "every authorization and refresh token of the application revoked (one cut-off)"),
                    ("app", "regenerate", "the application's client secret regenerated"),
                ] {
                    items.push(own_item(&items, o, t, &app.id, &app.name, action, detail));
                }
            }
            for m in clients::list(&core.db, &o.id, ClientKind::M2m).await? {
                if held.contains(&m.id) {
                    continue;
                }
                items.push(own_item(
                    &items,
                    o,
                    "m2m",
                    &m.id,
                    &m.name,
                    "regenerate",
                    "the machine client's secret regenerated",
                ));
            }
            for k in crate::oauth::access_keys::list(&core.db, &o.id).await? {
                if k.revoked_at.is_none() && !held.contains(&k.id) {
                    items.push(own_item(
                        &items,
                        o,
                        "key",
                        &k.id,
                        &k.name,
                        "regenerate",
                        "the access key regenerated",
                    ));
                }
            }
        }
    }
    Ok(items)
}

fn own_item(
    items: &[PlannedItem],
    o: &Org,
    target_type: &'static str,
    id: &str,
    name: &str,
    action: &'static str,
    detail: &str,
) -> PlannedItem {
    PlannedItem {
        n: items.len() as i64 + 1,
        org_id: Some(o.id.clone()),
        target_type,
        target_id: id.to_string(),
        target_name: name.to_string(),
        kind: None,
        action,
        host: None,
        after_n: None,
        detail: detail.to_string(),
    }
}

pub async fn insert(
    tx: &mut Tx,
    incident_id: &str,
    p: &PlannedItem,
    now: i64,
) -> Result<(), IncidentError> {
    exec!(
        tx,
        "INSERT INTO incident_items (incident_id, n, org_id, target_type, target_id, target_name, kind, action, host,
            status, detail, after_n, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12)",
        incident_id,
        p.n,
        &p.org_id,
        p.target_type,
        &p.target_id,
        &p.target_name,
        &p.kind,
        p.action,
        &p.host,
        &p.detail,
        p.after_n,
        now
    )?;
    Ok(())
}
