//! The one outbound client: every call to an address an admin typed —
//! probes, OAuth token, revoke and discovery calls, database and Redis
//! connections, later deliveries and webhooks — goes through [`Egress`], so
//! one policy decides where rekey may connect.
//!
//! The check is made on the address actually connected to: names are
//! resolved here, every address is checked, and the connection goes to a
//! checked address (no window for DNS rebinding between check and connect).
//! Redirects are never followed: a 3xx is an answer, not a new destination.
//! A refusal is answered at once, names its rule, and is audited.

pub mod policy;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::json;

pub use policy::{Policy, PolicyError, Rule};

use crate::audit::{self, Actor, Event};
use crate::clock::Clock;
use crate::store::Db;

/// Longest an outbound HTTP call may take, and its connection.
const TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a session rekey opens at a target itself (databases, Redis)
/// may wait: for the login, and for the answer to each statement or
/// command. Set by `target_connect_timeout` and `target_statement_timeout`;
/// [`crate::connectors::session`] applies it to every such session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub connect: Duration,
    pub statement: Duration,
}

impl Default for Budget {
    /// A login is a few round trips: 10 s is generous across the world.
    /// A rotation statement changes one account and returns at once
    /// unless it waits on a lock: 30 s, then it is retried.
    fn default() -> Budget {
        Budget {
            connect: Duration::from_secs(10),
            statement: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EgressError {
    #[error("egress refused {host} ({addr}): {} (rule {rule})", rule.reason())]
    Refused {
        host: String,
        addr: IpAddr,
        rule: Rule,
    },
    #[error("{0:?} is not an http(s) URL with a host")]
    BadUrl(String),
    #[error("cannot resolve {0}")]
    Unresolvable(String),
}

/// Where refusals are audited.
#[derive(Clone, Debug)]
struct Sink {
    db: Db,
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct Inner {
    policy: Policy,
    sink: Option<Sink>,
}

/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Egress {
    inner: Arc<Inner>,
    http: reqwest::Client,
    budget: Budget,
}

impl Egress {
    /// `db` and `clock`, when given, are where refusals are audited.
    pub fn new(policy: Policy, audit_to: Option<(Db, Arc<dyn Clock>)>) -> Egress {
        let inner = Arc::new(Inner {
            policy,
            sink: audit_to.map(|(db, clock)| Sink { db, clock }),
        });
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(Resolver(inner.clone())))
            // A proxy from the environment would connect for us, to
            // addresses we never checked.
            .no_proxy()
            .build()
            .unwrap_or_default();
        Egress {
            inner,
            http,
            budget: Budget::default(),
        }
    }

    /// The same, with the sessions' budget the settings give.
    pub fn with_budget(self, budget: Budget) -> Egress {
        Egress { budget, ..self }
    }

    /// How long sessions at targets may wait.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// A request to `url`, refused before anything is sent when its host
    /// is an address the policy forbids. Named hosts are checked when they
    /// are resolved, on the address connected to.
    pub async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, EgressError> {
        let u = url::Url::parse(url).map_err(|_| EgressError::BadUrl(redact(url)))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(EgressError::BadUrl(redact(url)));
        }
        match u.host() {
            Some(url::Host::Ipv4(ip)) => self.check(&ip.to_string(), IpAddr::V4(ip)).await?,
            Some(url::Host::Ipv6(ip)) => self.check(&ip.to_string(), IpAddr::V6(ip)).await?,
            Some(url::Host::Domain(_)) => {}
            None => return Err(EgressError::BadUrl(redact(url))),
        }
        Ok(self.http.request(method, u))
    }

    pub async fn get(&self, url: &str) -> Result<reqwest::RequestBuilder, EgressError> {
        self.request(reqwest::Method::GET, url).await
    }

    pub async fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, EgressError> {
        self.request(reqwest::Method::POST, url).await
    }

    /// Resolves `host` and returns an address the policy allows, for
    /// drivers that connect themselves (databases, Redis): they connect to
    /// this address, never to the name again.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, EgressError> {
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(EgressError::Unresolvable("an empty host".into()));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check(host, ip).await?;
            return Ok(SocketAddr::new(ip, port));
        }
        let addrs = resolve_all(host, port).await?;
        self.pick(host, addrs).await
    }

    /// The first allowed address; if none is, the refusal of the first.
    async fn pick(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<SocketAddr, EgressError> {
        let mut first_refusal = None;
        for a in &addrs {
            match self.inner.policy.check(a.ip()) {
                Ok(()) => return Ok(*a),
                Err(rule) => {
                    first_refusal.get_or_insert((a.ip(), rule));
                }
            }
        }
        match first_refusal {
            Some((addr, rule)) => Err(self.refuse(host, addr, rule).await),
            None => Err(EgressError::Unresolvable(host.to_string())),
        }
    }

    async fn check(&self, host: &str, ip: IpAddr) -> Result<(), EgressError> {
        match self.inner.policy.check(ip) {
            Ok(()) => Ok(()),
            Err(rule) => Err(self.refuse(host, ip, rule).await),
        }
    }

    async fn refuse(&self, host: &str, addr: IpAddr, rule: Rule) -> EgressError {
        self.inner.refuse(host, addr, rule).await
    }
}

impl Inner {
    /// Builds the refusal and audits it (best effort: an audit failure is
    /// logged, and the call is refused all the same).
    async fn refuse(&self, host: &str, addr: IpAddr, rule: Rule) -> EgressError {
        let e = EgressError::Refused {
            host: host.to_string(),
            addr,
            rule,
        };
        tracing::warn!(host, %addr, rule = rule.name(), "egress refused");
        if let Some(sink) = &self.sink {
            if let Err(err) = audit_refusal(sink, host, addr, rule).await {
                tracing::error!(error = %err, "cannot audit an egress refusal");
            }
        }
        e
    }
}

async fn audit_refusal(
    sink: &Sink,
    host: &str,
    addr: IpAddr,
    rule: Rule,
) -> Result<(), crate::store::StoreError> {
    let now = sink.clock.now_ms();
    let mut tx = sink.db.begin_write().await?;
    audit::record(
        &mut tx,
        now,
        &Actor::new("egress", None),
        Event {
            org_id: None,
            action: "egress.refused",
            target: Some(host),
            detail: json!({"address": addr.to_string(), "rule": rule.name()}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn resolve_all(host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| EgressError::Unresolvable(host.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(EgressError::Unresolvable(host.to_string()));
    }
    Ok(addrs)
}

/// reqwest's resolver: only allowed addresses are handed to the connector.
struct Resolver(Arc<Inner>);

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let inner = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs = resolve_all(&host, 0).await?;
            let mut allowed = Vec::new();
            let mut first_refusal = None;
            for a in addrs {
                match inner.policy.check(a.ip()) {
                    Ok(()) => allowed.push(a),
                    Err(rule) => {
                        first_refusal.get_or_insert((a.ip(), rule));
                    }
                }
            }
            if allowed.is_empty() {
                let err = match first_refusal {
                    Some((addr, rule)) => inner.refuse(&host, addr, rule).await,
                    None => EgressError::Unresolvable(host),
                };
                return Err(Box::new(err) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The egress refusal behind a failed request, if that is what failed it.
pub fn refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressError> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<EgressError>() {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// Why a request failed, in words safe to store and show: never the URL
/// (its query may carry a credential).
pub fn describe(e: &reqwest::Error) -> String {
    if let Some(r) = refusal(e) {
        r.to_string()
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_redirect() {
        "redirected".into()
    } else {
        let mut s = e.to_string();
        if let Some(u) = e.url() {
            s = s.replace(u.as_str(), "(url)");
        }
        s
    }
}

/// A URL shown in an error without its query or credentials.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => url.chars().take(80).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literal_and_named_hosts_are_checked() {
        let e = Egress::new(Policy::new(&["loopback".into()], &[]).unwrap(), None);
        let r = e.get("http://169.254.169.254/latest/meta-data/").await;
        assert!(matches!(
            r,
            Err(EgressError::Refused {
                rule: Rule::LinkLocal,
                ..
            })
        ));
        let r = e.resolve("localhost", 5432).await;
        assert!(matches!(
            r,
            Err(EgressError::Refused {
                rule: Rule::Loopback,
                ..
            })
        ));
        // A named host is refused when it resolves, before any connection.
        let req = e.get("http://localhost:9/x").await.unwrap();
        let err = req.send().await.unwrap_err();
        assert!(
            matches!(
                refusal(&err),
                Some(EgressError::Refused {
                    rule: Rule::Loopback,
                    ..
                })
            ),
            "{err:?}"
        );
        assert!(describe(&err).contains("rule loopback"));
        assert!(e.get("ftp://example.com/").await.is_err());
    }
}
