//! The connector catalog: typed, validated data, one TOML file per kind
//! (`catalog/`, embedded at build time). Validation names the file and the
//! field, and fails start-up rather than a connection later.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::config::Dur;

mod files {
    include!(concat!(env!("OUT_DIR"), "/catalog_files.rs"));
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("catalog/{file}: {field}: {message}")]
pub struct CatalogError {
    pub file: String,
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    String,
    Url,
    Hostname,
    Integer,
    Port,
    Email,
    Enum,
    Bool,
    PemPrivateKey,
    PemCertificate,
    ServiceAccountJson,
    AwsAccessKeyId,
    AwsSecretAccessKey,
}

fn default_format() -> Format {
    Format::String
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub key: String,
    pub label: String,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub optional: bool,
    #[serde(default = "default_format")]
    pub format: Format,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// For settings: this one decides where a credential is sent although
    /// neither its format nor the URL templates say so (code builds the
    /// address from it, as S3's bucket and region). See
    /// [`Kind::decides_destination`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destination: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Oauth2,
    ClientCredentials,
    ApiKey,
    Basic,
    AccessToken,
    RsaKeyPair,
    ServiceAccount,
    AwsKeys,
    Certificate,
    Bearer,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Oauth2 => "oauth2",
            Method::ClientCredentials => "client_credentials",
            Method::ApiKey => "api_key",
            Method::Basic => "basic",
            Method::AccessToken => "access_token",
            Method::RsaKeyPair => "rsa_key_pair",
            Method::ServiceAccount => "service_account",
            Method::AwsKeys => "aws_keys",
            Method::Certificate => "certificate",
            Method::Bearer => "bearer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    Automatic,
    Reauthorize,
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthStyle {
    #[default]
    Basic,
    Body,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    pub token_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_url: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_separator: Option<String>,
    #[serde(default)]
    pub pkce: bool,
    #[serde(default)]
    pub client_auth: ClientAuthStyle,
    #[serde(default)]
    pub rotates_refresh_token: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_margin: Option<Dur>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorize_params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub token_params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refresh_params: BTreeMap<String, String>,
    #[serde(default)]
    pub discovery: bool,
}

impl OAuthSpec {
    pub fn margin_ms(&self) -> i64 {
        self.refresh_margin.map(Dur::ms).unwrap_or(300_000)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Http,
    Postgres,
    Mysql,
    Redis,
    /// Signed AWS calls: STS GetCallerIdentity, then S3 HeadBucket.
    Aws,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Apply {
    Bearer,
    Basic,
    Header,
    Query,
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub kind: ProbeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<Apply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthMethod {
    pub method: Method,
    pub rotation: Rotation,
    /// For `automatic` rotation: the driver that rotates it, by the name
    /// `connectors::drivers` knows it by (`postgres`, `redis`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default)]
    pub deprecated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecation_note: Option<String>,
    #[serde(default)]
    pub fields: Vec<Field>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthSpec>,
    pub probe: Probe,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runbook: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u8>,
}

impl AuthMethod {
    pub fn is_oauth_code(&self) -> bool {
        self.method == Method::Oauth2
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kind {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<String>,
    /// Host patterns (`api.example.com`, `*.example.com`) that URLs built
    /// from settings or provider answers must stay within. Required when a
    /// template puts a non-enum setting into a host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub settings: Vec<Field>,
    pub auth: Vec<AuthMethod>,
}

impl Kind {
    pub fn method(&self, m: &str) -> Option<&AuthMethod> {
        self.auth.iter().find(|a| a.method.as_str() == m)
    }

    /// Whether rekey presents an OAuth client of its own to this kind's
    /// provider (`connector configure`): one of its methods is the
    /// authorization-code flow.
    pub fn takes_oauth_client(&self) -> bool {
        self.auth.iter().any(AuthMethod::is_oauth_code)
    }

    /// Whether setting `key` decides where a credential of this kind goes:
    /// a host, port or URL; one substituted into the host of any of the
    /// kind's URL templates (OAuth endpoints, probe); or one the catalog
    /// marks `destination = true`. These are frozen while a credential is
    /// held, so changing them cannot deliver it to someone else.
    pub fn decides_destination(&self, key: &str) -> bool {
        let Some(f) = self.settings.iter().find(|f| f.key == key) else {
            return false;
        };
        if f.destination || matches!(f.format, Format::Hostname | Format::Port | Format::Url) {
            return true;
        }
        let wanted = format!("settings.{key}");
        self.auth
            .iter()
            .flat_map(AuthMethod::url_templates)
            .any(|t| references(super::hosts::template_authority(t)).contains(&wanted))
    }
}

impl AuthMethod {
    /// The URL templates credentials of this method are sent to.
    fn url_templates(&self) -> Vec<&String> {
        let mut out: Vec<&String> = self.probe.url.iter().collect();
        if let Some(o) = &self.oauth {
            out.push(&o.token_url);
            out.extend(o.authorize_url.iter());
            out.extend(o.revoke_url.iter());
        }
        out
    }
}

/// Every `${…}` reference in a template.
pub fn references(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                out.push(after[..j].to_string());
                rest = &after[j + 1..];
            }
            None => {
                out.push(after.to_string());
                break;
            }
        }
    }
    out
}

fn validate(file: &str, k: &Kind) -> Result<(), CatalogError> {
    let err = |field: String, message: String| CatalogError {
        file: file.to_string(),
        field,
        message,
    };
    let stem = file.trim_end_matches(".toml");
    if k.kind != stem {
        return Err(err(
            "kind".into(),
            format!("is {:?} but the file is named {file}", k.kind),
        ));
    }
    if !k
        .kind
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(err("kind".into(), "use a-z, 0-9 and _".into()));
    }
    for (i, h) in k.hosts.iter().enumerate() {
        let name = h.strip_prefix("*.").unwrap_or(h);
        if !super::hosts::is_host_name(name) || !name.contains('.') {
            return Err(err(
                format!("hosts[{i}]"),
                format!("{h:?} is not a host name or *.suffix pattern"),
            ));
        }
    }
    if k.auth.is_empty() {
        return Err(err(
            "auth".into(),
            "at least one auth method is required".into(),
        ));
    }
    let check_fields = |prefix: &str, fields: &[Field]| -> Result<BTreeSet<String>, CatalogError> {
        let mut keys = BTreeSet::new();
        for (i, f) in fields.iter().enumerate() {
            let at = format!("{prefix}[{i}]");
            if f.key.is_empty()
                || !f
                    .key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(err(
                    format!("{at}.key"),
                    format!("{:?} must be snake_case", f.key),
                ));
            }
            if !keys.insert(f.key.clone()) {
                return Err(err(
                    format!("{at}.key"),
                    format!("{:?} is defined twice", f.key),
                ));
            }
            if f.format == Format::Enum && f.options.is_empty() {
                return Err(err(format!("{at}.options"), "an enum needs options".into()));
            }
            if let (Some(d), Format::Enum) = (&f.default, f.format) {
                if !f.options.contains(d) {
                    return Err(err(
                        format!("{at}.default"),
                        format!("{d:?} is not one of the options"),
                    ));
                }
            }
        }
        Ok(keys)
    };
    let settings = check_fields("settings", &k.settings)?;
    let mut methods = BTreeSet::new();
    for (i, a) in k.auth.iter().enumerate() {
        let at = format!("auth[{i}]");
        if !methods.insert(a.method.as_str()) {
            return Err(err(
                format!("{at}.method"),
                format!("{} is listed twice", a.method.as_str()),
            ));
        }
        let fields = check_fields(&format!("{at}.fields"), &a.fields)?;
        if let Some(i) = a.fields.iter().position(|f| f.destination) {
            return Err(err(
                format!("{at}.fields[{i}].destination"),
                "only settings decide where a credential goes".into(),
            ));
        }
        let oauthish = matches!(a.method, Method::Oauth2 | Method::ClientCredentials);
        if oauthish {
            let Some(o) = &a.oauth else {
                return Err(err(
                    format!("{at}.oauth"),
                    format!("{} needs an [auth.oauth] table", a.method.as_str()),
                ));
            };
            if a.method == Method::Oauth2 && o.authorize_url.is_none() && !o.discovery {
                return Err(err(
                    format!("{at}.oauth.authorize_url"),
                    "is required for oauth2 (or set discovery)".into(),
                ));
            }
        } else if a.oauth.is_some() {
            return Err(err(
                format!("{at}.oauth"),
                format!("{} does not use OAuth endpoints", a.method.as_str()),
            ));
        }
        check_driver(a).map_err(|m| err(format!("{at}.driver"), m))?;
        if matches!(a.rotation, Rotation::Manual | Rotation::Reauthorize) && a.runbook.is_empty() {
            return Err(err(
                format!("{at}.runbook"),
                "a manual or reauthorize rotation needs its steps".into(),
            ));
        }
        let mut urls: Vec<(String, &String)> = Vec::new();
        if let Some(o) = &a.oauth {
            urls.push((format!("{at}.oauth.token_url"), &o.token_url));
            for (name, v) in [
                ("authorize_url", &o.authorize_url),
                ("revoke_url", &o.revoke_url),
            ] {
                if let Some(v) = v {
                    urls.push((format!("{at}.oauth.{name}"), v));
                }
            }
        }
        if let Some(u) = &a.probe.url {
            urls.push((format!("{at}.probe.url"), u));
        }
        for (where_, t) in urls {
            let needs_pattern = references(super::hosts::template_authority(t))
                .iter()
                .any(|r| match r.split_once('.') {
                    Some(("settings", key)) => k
                        .settings
                        .iter()
                        .find(|f| f.key == key)
                        .is_some_and(|f| !matches!(f.format, Format::Enum | Format::Url)),
                    _ => false,
                });
            if needs_pattern && k.hosts.is_empty() {
                return Err(err(
                    where_,
                    "a setting is substituted into the host: declare the kind's hosts".into(),
                ));
            }
        }
        let mut templates: Vec<(String, String)> = Vec::new();
        if let Some(o) = &a.oauth {
            for (name, v) in [
                ("authorize_url", &o.authorize_url),
                ("revoke_url", &o.revoke_url),
            ] {
                if let Some(v) = v {
                    templates.push((format!("{at}.oauth.{name}"), v.clone()));
                }
            }
            templates.push((format!("{at}.oauth.token_url"), o.token_url.clone()));
            for s in &o.scopes {
                templates.push((format!("{at}.oauth.scopes"), s.clone()));
            }
            for (m, map) in [
                ("authorize_params", &o.authorize_params),
                ("token_params", &o.token_params),
                ("refresh_params", &o.refresh_params),
            ] {
                for (key, v) in map {
                    templates.push((format!("{at}.oauth.{m}.{key}"), v.clone()));
                }
            }
        }
        let p = &a.probe;
        let pat = format!("{at}.probe");
        match p.kind {
            ProbeKind::Http => {
                let Some(url) = &p.url else {
                    return Err(err(
                        format!("{pat}.url"),
                        "an http probe needs a url".into(),
                    ));
                };
                templates.push((format!("{pat}.url"), url.clone()));
                match p.apply.unwrap_or(Apply::None) {
                    Apply::Basic if p.username.is_none() => {
                        return Err(err(
                            format!("{pat}.username"),
                            "basic needs username (and password)".into(),
                        ))
                    }
                    Apply::Header if p.header.is_none() || p.value.is_none() => {
                        return Err(err(
                            format!("{pat}.header"),
                            "header needs header and value".into(),
                        ))
                    }
                    Apply::Query if p.param.is_none() || p.value.is_none() => {
                        return Err(err(
                            format!("{pat}.param"),
                            "query needs param and value".into(),
                        ))
                    }
                    _ => {}
                }
            }
            ProbeKind::None if p.note.is_none() => {
                return Err(err(
                    format!("{pat}.note"),
                    "a connector without a probe must say why".into(),
                ));
            }
            _ => {}
        }
        for (name, v) in [
            ("token", &p.token),
            ("username", &p.username),
            ("password", &p.password),
            ("value", &p.value),
        ] {
            if let Some(v) = v {
                templates.push((format!("{pat}.{name}"), v.clone()));
            }
        }
        for (h, v) in &p.headers {
            templates.push((format!("{pat}.headers.{h}"), v.clone()));
        }
        for (where_, t) in templates {
            for r in references(&t) {
                let ok = match r.split_once('.') {
                    Some(("settings", s)) => settings.contains(s),
                    Some(("credentials", c)) => fields.contains(c),
                    None => {
                        r == "access_token"
                            && (oauthish
                                || matches!(
                                    a.method,
                                    Method::RsaKeyPair
                                        | Method::Certificate
                                        | Method::ServiceAccount
                                ))
                    }
                    _ => false,
                };
                if !ok {
                    return Err(err(
                        where_,
                        format!("template refers to ${{{r}}}, which this kind does not define"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// An automatic rotation names a driver rekey has, for credentials of its
/// method; any other rotation names none (a person acts).
fn check_driver(a: &AuthMethod) -> Result<(), String> {
    let known = || super::drivers::names().collect::<Vec<_>>().join(", ");
    match (a.rotation, a.driver.as_deref()) {
        (Rotation::Automatic, None) => Err(format!(
            "an automatic rotation names the driver that rotates it (one of: {}); without one, make the rotation manual with a runbook",
            known()
        )),
        (Rotation::Automatic, Some(d)) => match super::drivers::by_name(d) {
            None => Err(format!("{d:?} is not a driver rekey has (one of: {})", known())),
            Some(n) if n.method != a.method => Err(format!(
                "the {d} driver rotates {} credentials, not {}",
                n.method.as_str(),
                a.method.as_str()
            )),
            Some(_) => Ok(()),
        },
        (_, Some(d)) => Err(format!(
            "names driver {d:?}, but only an automatic rotation has a driver"
        )),
        (_, None) => Ok(()),
    }
}

/// Parses and validates the catalog files.
pub fn load(files: &[(&str, &str)]) -> Result<BTreeMap<String, Kind>, CatalogError> {
    let mut out = BTreeMap::new();
    for (file, text) in files {
        let k: Kind = toml::from_str(text).map_err(|e| CatalogError {
            file: file.to_string(),
            field: "(parse)".into(),
            message: e.to_string().replace('\n', " "),
        })?;
        validate(file, &k)?;
        out.insert(k.kind.clone(), k);
    }
    Ok(out)
}

static CATALOG: OnceLock<Result<BTreeMap<String, Kind>, CatalogError>> = OnceLock::new();

/// The embedded catalog (parsed once).
pub fn catalog() -> Result<&'static BTreeMap<String, Kind>, CatalogError> {
    CATALOG
        .get_or_init(|| load(files::FILES))
        .as_ref()
        .map_err(Clone::clone)
}

pub fn kind(id: &str) -> Option<&'static Kind> {
    catalog().ok()?.get(id)
}

impl Kind {
    /// The JSON form the CLI and API show: the kind with `auth_methods`.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind,
            "name": self.name,
            "category": self.category,
            "docs": self.docs,
            "hosts": self.hosts,
            "settings": self.settings,
            "auth_methods": self.auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_is_valid() {
        let c = catalog().unwrap();
        let required = [
            "jira",
            "zoho",
            "intercom",
            "dynamics365",
            "pipedrive",
            "freshdesk",
            "zuora",
            "snowflake",
            "aha",
            "productboard",
            "ecosystem",
            "bulk_api",
            "custom_rest",
            "sap_datasphere",
            "platform_access_key",
            "platform_m2m",
            "eventstream",
            "bigquery",
            "databricks",
            "servicenow",
            "s3",
            "s3_managed",
            "segment",
            "mixpanel",
            "google_analytics",
            "postgres",
            "mysql",
            "redshift",
            "salesforce",
            "redis",
            "rekey",
        ];
        for k in required {
            assert!(c.contains_key(k), "{k}");
        }
        for k in ["postgres", "mysql", "redshift", "redis"] {
            let keys: Vec<&str> = c[k].settings.iter().map(|f| f.key.as_str()).collect();
            assert!(
                keys.contains(&"host") && keys.contains(&"port") && keys.contains(&"username"),
                "{k}"
            );
            assert_eq!(keys.contains(&"database"), k != "redis", "{k}");
            assert!(
                c[k].auth[0]
                    .fields
                    .iter()
                    .any(|f| f.key == "password" && f.secret),
                "{k}"
            );
        }
    }

    #[test]
    fn settings_that_decide_where_a_credential_goes() {
        let c = catalog().unwrap();
        let frozen = |kind: &str| -> Vec<&str> {
            let k = &c[kind];
            k.settings
                .iter()
                .map(|f| f.key.as_str())
                .filter(|key| k.decides_destination(key))
                .collect()
        };
        assert_eq!(frozen("redis"), ["host", "port"]);
        assert_eq!(frozen("s3"), ["bucket", "region"], "marked in the catalog");
        // substituted into a host, though an enum: the region's server
        assert_eq!(frozen("mixpanel"), ["api_host"]);
        // a role or a scope decides what, not where
        assert_eq!(frozen("snowflake"), ["account"]);
        assert_eq!(frozen("rekey"), ["base_url"]);
    }

    #[test]
    fn errors_name_file_and_field() {
        let bad = "kind = \"x\"\nname = \"X\"\n[[auth]]\nmethod = \"api_key\"\nrotation = \"manual\"\nrunbook = [\"a\"]\n[auth.probe]\nkind = \"http\"\nurl = \"https://${settings.nope}/\"\n";
        let e = load(&[("x.toml", bad)]).unwrap_err();
        assert_eq!(e.file, "x.toml");
        assert_eq!(e.field, "auth[0].probe.url");
        let e = load(&[("y.toml", bad)]).unwrap_err();
        assert_eq!(e.field, "kind");
        let e = load(&[("x.toml", "kind = 3")]).unwrap_err();
        assert_eq!(e.field, "(parse)");
    }

    /// An entry that says rekey rotates it names the driver that does:
    /// start-up fails on one that names none, or one rekey does not have,
    /// or one for another kind of credential, naming file and field.
    #[test]
    fn automatic_rotation_names_a_driver_rekey_has() {
        let entry = |rotation: &str, driver: &str| {
            format!(
                "kind = \"x\"\nname = \"X\"\n[[auth]]\nmethod = \"basic\"\nrotation = \"{rotation}\"\n{driver}runbook = [\"a\"]\n[auth.probe]\nkind = \"postgres\"\n"
            )
        };
        let fails = |text: String| load(&[("x.toml", &text)]).unwrap_err();
        let e = fails(entry("automatic", ""));
        assert_eq!(
            (e.file.as_str(), e.field.as_str()),
            ("x.toml", "auth[0].driver")
        );
        assert!(
            e.to_string()
                .contains("an automatic rotation names the driver")
                && e.message.contains("redshift"),
            "{e}"
        );
        let e = fails(entry("automatic", "driver = \"oracle\"\n"));
        assert_eq!(e.field, "auth[0].driver");
        assert!(
            e.message.contains("\"oracle\" is not a driver rekey has"),
            "{e}"
        );
        let e = fails(entry("automatic", "driver = \"aws_keys\"\n"));
        assert!(
            e.message
                .contains("rotates aws_keys credentials, not basic"),
            "{e}"
        );
        let e = fails(entry("manual", "driver = \"postgres\"\n"));
        assert!(e.message.contains("only an automatic rotation"), "{e}");
        assert!(load(&[("x.toml", &entry("automatic", "driver = \"postgres\"\n"))]).is_ok());
    }

    /// Every automatic entry of the embedded catalog has its driver.
    #[test]
    fn every_automatic_entry_has_a_driver() {
        for k in catalog().unwrap().values() {
            for a in &k.auth {
                let has = super::super::drivers::for_kind(&k.kind, a.method.as_str()).is_some();
                assert_eq!(
                    has,
                    a.rotation == Rotation::Automatic,
                    "{} {}",
                    k.kind,
                    a.method.as_str()
                );
            }
        }
        for (kind, method) in [
            ("redshift", "basic"),
            ("platform_access_key", "api_key"),
            ("bulk_api", "api_key"),
            ("platform_m2m", "client_credentials"),
        ] {
            assert!(
                super::super::drivers::for_kind(kind, method).is_some(),
                "{kind}"
            );
        }
    }

    #[test]
    fn template_references() {
        assert_eq!(
            references("https://${settings.a}.x/${credentials.b}"),
            vec!["settings.a", "credentials.b"]
        );
    }
}
