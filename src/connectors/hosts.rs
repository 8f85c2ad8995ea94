//! Where a catalog URL template may lead. A setting substituted into a
//! URL's host must be a host name (no `:`, `/`, `#`, `@`, `?` to bend the
//! URL elsewhere), and the rendered host must stay within the host patterns
//! the kind declares (`hosts = ["*.freshdesk.com"]`).
//!
//! A URL is the **catalog's own** when its host is fixed in the catalog,
//! comes from an enum setting (values the catalog lists), or matches the
//! kind's patterns. Only there may the operator's kind-wide OAuth client be
//! presented; a host an admin chose (a `url` setting of a kind without
//! patterns, an endpoint override, a discovered provider) gets the
//! connection's own client or nothing.

use super::catalog::{references, Format, Kind};
use super::template::{render, Vars};
use super::ConnectorError;

/// A rendered URL and whether its host is the catalog's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub url: String,
    pub own: bool,
}

/// The authority part of a template: what lies between `scheme://` and
/// the first `/`, `?` or `#` of the template text itself. A template that
/// starts with a reference (`${settings.base_url}/x`) has that reference as
/// its authority: the whole host comes from the value.
pub(crate) fn template_authority(template: &str) -> &str {
    if template.starts_with("${") {
        return match template.find('}') {
            Some(j) => &template[..=j],
            None => template,
        };
    }
    let rest = match template.find("://") {
        Some(i) => &template[i + 3..],
        None => template,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// A DNS name: labels of letters, digits and `-`, separated by dots.
pub fn is_host_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Does `host` match `pattern` (`example.com` exactly, or `*.example.com`:
/// one or more labels before the suffix)?
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        None => host == pattern,
    }
}

/// Renders `template` for a connection of `kind`, checking where it leads.
pub fn render_url(
    kind: &Kind,
    template: &str,
    vars: &Vars<'_>,
) -> Result<Rendered, ConnectorError> {
    let r = render_checked(kind, template, vars)?;
    Ok(Rendered {
        url: stand_in(r.url),
        own: r.own,
    })
}

/// Debug builds only ([`crate::test_hooks`]): `REKEY_TEST_CATALOG_URLS` holds
/// `FROM=TO` pairs (separated by spaces) that send a catalog URL starting
/// with `FROM` to `TO` instead — a local stand-in for a provider whose host
/// the catalog fixes, the only kind of host the operator's kind-wide OAuth
/// client goes to. A release build ignores it: it would move where secrets
/// are sent.
fn stand_in(url: String) -> String {
    let Some(pairs) = crate::test_hooks::catalog_urls() else {
        return url;
    };
    for pair in pairs.split_whitespace() {
        if let Some((from, to)) = pair.split_once('=') {
            if let Some(rest) = url.strip_prefix(from) {
                return format!("{to}{rest}");
            }
        }
    }
    url
}

fn render_checked(
    kind: &Kind,
    template: &str,
    vars: &Vars<'_>,
) -> Result<Rendered, ConnectorError> {
    let authority = template_authority(template);
    let refs = references(authority);
    let mut from_enum_only = true;
    for r in &refs {
        let Some(("settings", key)) = r.split_once('.') else {
            from_enum_only = false;
            continue;
        };
        let field = kind.settings.iter().find(|f| f.key == key);
        let format = field.map(|f| f.format);
        if format != Some(Format::Enum) {
            from_enum_only = false;
        }
        // A setting inside the host (not a whole URL) must be a host name.
        if !template.starts_with("${") {
            let value = vars
                .settings
                .get(key)
                .and_then(|v| v.as_str())
                .unwrap_or("");
            if !value.is_empty() && !is_host_name(value) {
                return Err(ConnectorError::Invalid(format!(
                    "setting {key} must be a host name (letters, digits, '-' and '.'), not {value:?}"
                )));
            }
        }
    }
    let url = render(template, vars)
        .map_err(|e| ConnectorError::Invalid(format!("cannot build the provider URL: {e}")))?;
    let parsed = url::Url::parse(&url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| ConnectorError::Invalid("the provider URL is not an http(s) URL".into()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| ConnectorError::Invalid("the provider URL has no host".into()))?
        .to_string();
    // A URL that starts with a URL setting keeps that URL's host: what
    // follows (a path setting holding `@evil.example`) cannot move it.
    if let (true, [only]) = (template.starts_with("${"), refs.as_slice()) {
        let base_host = only
            .strip_prefix("settings.")
            .and_then(|k| vars.settings.get(k).or_else(|| vars.credentials.get(k)))
            .and_then(|v| v.as_str())
            .and_then(|v| url::Url::parse(v).ok())
            .and_then(|u| u.host_str().map(str::to_string));
        if base_host.as_deref() != Some(host.as_str()) {
            return Err(ConnectorError::Invalid(format!(
                "the URL built from {only} leads to another host ({host:?})"
            )));
        }
    }
    if refs.is_empty() || from_enum_only {
        return Ok(Rendered { url, own: true });
    }
    if kind.hosts.is_empty() {
        return Ok(Rendered { url, own: false });
    }
    if kind.hosts.iter().any(|p| host_matches(p, &host)) {
        Ok(Rendered { url, own: true })
    } else {
        Err(ConnectorError::Invalid(format!(
            "host {host:?} is outside the hosts of {} ({})",
            kind.kind,
            kind.hosts.join(", ")
        )))
    }
}

/// The origin (scheme, host, port) of a URL, for "does this still go to
/// the same place" comparisons.
pub fn origin(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    Some(u.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(
            template_authority("https://${settings.subdomain}.freshdesk.com/api"),
            "${settings.subdomain}.freshdesk.com"
        );
        assert_eq!(
            template_authority("${settings.base_url}${settings.probe_path}"),
            "${settings.base_url}"
        );
        assert_eq!(
            template_authority("https://api.atlassian.com/ex/jira/${settings.cloud_id}"),
            "api.atlassian.com"
        );
    }

    #[test]
    fn patterns() {
        assert!(host_matches("*.freshdesk.com", "acme.freshdesk.com"));
        assert!(host_matches("*.freshdesk.com", "a.b.freshdesk.com"));
        assert!(!host_matches("*.freshdesk.com", "freshdesk.com"));
        assert!(!host_matches("*.freshdesk.com", "evilfreshdesk.com"));
        assert!(!host_matches("*.freshdesk.com", "freshdesk.com.evil.io"));
        assert!(host_matches("login.salesforce.com", "LOGIN.salesforce.com"));
    }

    #[test]
    fn rendered_hosts_stay_within_the_kind() {
        use serde_json::{json, Map, Value};
        let kind = crate::connectors::catalog::kind("freshdesk").unwrap();
        let url = kind.auth[0].probe.url.clone().unwrap();
        let render = |sub: &str| {
            let s: Map<String, Value> = json!({ "subdomain": sub }).as_object().cloned().unwrap();
            let c = Map::new();
            render_url(
                kind,
                &url,
                &Vars {
                    settings: &s,
                    credentials: &c,
                },
            )
        };
        assert!(render("acme").unwrap().own);
        for bad in ["localhost:1234/x#", "a@b", "evil.com/x"] {
            assert!(render(bad).is_err(), "{bad}");
        }
        let custom = crate::connectors::catalog::kind("custom_rest").unwrap();
        let t = custom.auth[0].probe.url.clone().unwrap();
        let s: Map<String, Value> =
            json!({"base_url": "https://api.example.com", "probe_path": "@evil.example/x"})
                .as_object()
                .cloned()
                .unwrap();
        let c = Map::new();
        let vars = Vars {
            settings: &s,
            credentials: &c,
        };
        assert!(
            render_url(custom, &t, &vars).is_err(),
            "a path cannot move the host"
        );
    }

    #[test]
    fn host_names() {
        assert!(is_host_name("acme"));
        assert!(is_host_name("xy12345.us-east-1"));
        for bad in ["localhost:8080/x#", "a@b", "a/b", "a?b", "", "a..b", "-a"] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}
