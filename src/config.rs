//! Settings: defaults, then `rekey.toml`, then `REKEY_*` environment
//! variables, then flags. Every setting has the same three names
//! (`listen` / `REKEY_LISTEN` / `--listen`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
}

/// A duration given as `30s`, `15m`, `1h`, `90d`, or a bare number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn ms(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
    pub fn secs(secs: u64) -> Dur {
        Dur(Duration::from_secs(secs))
    }
}

/// The longest duration any flag or setting takes: a hundred years. Longer
/// ones are refused rather than carried into time arithmetic, where they
/// would overflow or wrap (a key "valid until 1970").
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let d = match s.parse::<u64>() {
        Ok(n) => Duration::from_secs(n),
        Err(_) => humantime::parse_duration(s).ok()?,
    };
    (d <= MAX_DURATION).then_some(d)
}

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Dur).ok_or_else(|| {
            format!("invalid duration {s:?} (use 30s, 15m, 1h, 90d or seconds; at most 100 years)")
        })
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0.as_secs())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            // A number of seconds is held to the same bound as `90d`.
            Raw::N(n) if Duration::from_secs(n) <= MAX_DURATION => Ok(Dur::secs(n)),
            Raw::N(n) => Err(serde::de::Error::custom(format!(
                "invalid duration {n} (at most 100 years: {} seconds)",
                MAX_DURATION.as_secs()
            ))),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration in the OpenAPI document: what `Deserialize` above takes.
impl utoipa::PartialSchema for Dur {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .minimum(Some(0))
                    .maximum(Some(MAX_DURATION.as_secs()))
                    .description(Some("seconds")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .pattern(Some(r"^[0-9]{1,9} ?(s|m|h|d)?$"))
                    .description(Some("`30s`, `15m`, `1h`, `90d`, or seconds")),
            )
            .description(Some(
                "A duration: `30s`, `15m`, `1h`, `90d` (humantime), or a number of seconds; at most 100 years.",
            ))
            .examples([serde_json::json!("90d"), serde_json::json!(3600)])
            .into()
    }
}

impl utoipa::ToSchema for Dur {}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: String,
    /// `sqlite:PATH` or `postgres://…`; default `sqlite:{data_dir}/rekey.db`.
    pub database_url: Option<String>,
    /// The URL clients reach rekey at; the OAuth issuer. Default `http://{listen}`.
    pub public_url: Option<String>,
    /// Where the SQLite database and the generated master key live.
    pub data_dir: PathBuf,
    /// Master keys, base64, comma-separated, newest first. Prefer the environment.
    pub master_key: Option<String>,
    /// Key file used when `master_key` is unset; default `{data_dir}/master.key`.
    pub master_key_file: Option<PathBuf>,
    /// Log filter (tracing `EnvFilter` syntax).
    pub log: String,
    /// `text` or `json`.
    pub log_format: String,
    /// Largest accepted request body, bytes.
    pub body_limit: usize,
    /// argon2id memory cost (KiB), iterations and lanes for human passwords.
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Admin session lifetime.
    pub session_ttl: Dur,
    /// Failed logins allowed per account and per client IP in `login_window`.
    pub login_max_failures_per_account: i64,
    pub login_max_failures_per_ip: i64,
    pub login_window: Dur,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Proxies whose `X-Forwarded-For` is believed (CIDRs): the client is the
    /// right-most address not in this list.
    #[serde(deserialize_with = "str_list")]
    pub trusted_proxies: Vec<String>,
    /// Password hashes run at once (0: the number of cores) and waiting
    /// (0: twice that); past both, logins answer 503 with Retry-After.
    pub password_hash_concurrency: usize,
    pub password_hash_queue: usize,
    /// Time a client has to send a request's headers (also how long an
    /// idle keep-alive connection waits for its next request).
    pub header_read_timeout: Dur,
    /// A connection on which nothing is read or written for this long is closed.
    pub idle_timeout: Dur,
    /// Longest time a request may take, answered 408 after it.
    pub request_timeout: Dur,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Life of an authorization code; at most 60 s.
    pub authorization_code_ttl: Dur,
    /// How often the refresh keeper looks for connections to refresh; 0 turns it off.
    pub keeper_interval: Dur,
    /// How often an instance looks for due jobs (rotations); 0 turns it off.
    pub jobs_interval: Dur,
    /// Address ranges outbound calls may not reach besides link-local and
    /// metadata addresses (always refused): `private`, `loopback`.
    #[serde(deserialize_with = "str_list")]
    pub egress_deny: Vec<String>,
    /// CIDRs exempt from `egress_deny`.
    #[serde(deserialize_with = "str_list")]
    pub egress_allow: Vec<String>,
    /// Longest life of a machine client's access token (and its default).
    pub m2m_token_ttl_max: Dur,
    /// How long a login to a target rekey connects to itself (databases,
    /// Redis) may take, and how long each statement or command there may
    /// wait for its answer: a target that never answers fails the probe or
    /// rotation step instead of holding it.
    pub target_connect_timeout: Dur,
    pub target_statement_timeout: Dur,
    /// How long the outbox keeps a record after every enabled delivery has
    /// passed it: the window a backfill can replay in full. Beyond it,
    /// `rekey outbox compact` keeps only the latest state of each record.
    pub outbox_retention: Dur,
    /// How often an instance looks for records to deliver (a delivery
    /// caught up waits at most this long for a new one); 0 turns delivery
    /// off on this instance.
    pub delivery_interval: Dur,
}

/// A list given as a TOML array or, from the environment, a comma list.
fn str_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        One(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(v) => v,
        Raw::One(s) => s.split(',').map(str::to_string).collect(),
    }
    .into_iter()
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
    .collect())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            database_url: None,
            public_url: None,
            data_dir: PathBuf::from("./rekey-data"),
            master_key: None,
            master_key_file: None,
            log: "info".into(),
            log_format: "text".into(),
            body_limit: 1024 * 1024,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            session_ttl: Dur::secs(12 * 3600),
            login_max_failures_per_account: 5,
            login_max_failures_per_ip: 50,
            login_window: Dur::secs(15 * 60),
            trust_forwarded_for: false,
            trusted_proxies: vec!["127.0.0.0/8".into(), "::1/128".into()],
            password_hash_concurrency: 0,
            password_hash_queue: 0,
            header_read_timeout: Dur::secs(10),
            idle_timeout: Dur::secs(60),
            request_timeout: Dur::secs(60),
            max_connections: 1024,
            authorization_code_ttl: Dur::secs(60),
            keeper_interval: Dur::secs(10),
            jobs_interval: Dur::secs(10),
            egress_deny: Vec::new(),
            egress_allow: Vec::new(),
            m2m_token_ttl_max: Dur::secs(3600),
            target_connect_timeout: Dur(crate::egress::Budget::default().connect),
            target_statement_timeout: Dur(crate::egress::Budget::default().statement),
            outbox_retention: Dur::secs(30 * 24 * 3600),
            delivery_interval: Dur::secs(1),
        }
    }
}

/// Values given as flags; `None` leaves the lower layers alone.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

const KNOWN: &[&str] = &[
    "listen",
    "database_url",
    "public_url",
    "data_dir",
    "master_key",
    "master_key_file",
    "log",
    "log_format",
    "body_limit",
    "argon2_memory_kib",
    "argon2_iterations",
    "argon2_parallelism",
    "session_ttl",
    "login_max_failures_per_account",
    "login_max_failures_per_ip",
    "login_window",
    "trust_forwarded_for",
    "trusted_proxies",
    "password_hash_concurrency",
    "password_hash_queue",
    "header_read_timeout",
    "idle_timeout",
    "request_timeout",
    "max_connections",
    "authorization_code_ttl",
    "keeper_interval",
    "jobs_interval",
    "egress_deny",
    "egress_allow",
    "m2m_token_ttl_max",
    "target_connect_timeout",
    "target_statement_timeout",
    "outbox_retention",
    "delivery_interval",
    // read by the CLI, not a server setting
    "config",
];

/// Settings whose values are secret (or may hold a password, as a database
/// URL does): errors about them name the setting, never the value.
fn is_secret_setting(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "database_url"
        || ["key", "secret", "password", "token"]
            .iter()
            .any(|w| key.contains(w))
}

/// Reads and checks a TOML file. A syntax error names the file, line,
/// column and setting — never the line itself, which for `master_key`
/// would print the key.
fn read_toml(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Invalid(format!("cannot read {}: {e}", path.display())))?;
    if let Err(e) = text.parse::<toml::Table>() {
        let at = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
        let before = text.get(..at).unwrap_or("");
        let line_no = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let line = text.lines().nth(line_no - 1).unwrap_or("");
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
            .filter(|k| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            });
        let what = match &key {
            Some(k) if is_secret_setting(k) => format!("in the value of {k} (not shown)"),
            Some(k) => format!("in {k}: {}", e.message()),
            None => "invalid TOML (line not shown)".to_string(),
        };
        return Err(ConfigError::Invalid(format!(
            "{} line {line_no}, column {col}: {what}",
            path.display()
        )));
    }
    Ok(text)
}

/// The configuration file as read, to point at the line of a setting.
struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    /// Where top-level setting `key` is written (`rekey.toml line 3,
    /// column 1`), if it is.
    fn position(&self, key: &str) -> Option<String> {
        use std::collections::BTreeMap;
        // The keys with their spans (the file parsed already, in
        // `read_toml`); the values are not looked at.
        let keys: BTreeMap<toml::Spanned<String>, serde::de::IgnoredAny> =
            toml::from_str(&self.text).ok()?;
        let span = keys.keys().find(|k| k.get_ref() == key)?.span();
        let before = self.text.get(..span.start)?;
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Some(format!("{} line {line}, column {col}", self.path.display()))
    }

    /// `message` about setting `key`, prefixed with where the file sets it.
    fn at(&self, key: &str, message: &str) -> String {
        match self.position(key) {
            Some(at) => format!("{at}: {message}"),
            None => format!("{}: {message}", self.path.display()),
        }
    }
}

/// One setting error, without the value when the setting is secret; one
/// about a value the file holds names the file and its line.
fn describe_error(e: &figment::Error, source: Option<&Source>) -> String {
    use figment::error::Kind;
    let key = e.path.first().cloned().unwrap_or_default();
    let from_file = e
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.starts_with("TOML"));
    if let (true, Some(src)) = (from_file, source) {
        let what = match &e.kind {
            Kind::UnknownField(name, _) => format!("unknown setting {name}"),
            _ if is_secret_setting(&key) => format!("invalid value for {key} (not shown)"),
            kind => format!("in {key}: {kind}"),
        };
        return src.at(&key, &what);
    }
    let key = e.path.last().cloned().unwrap_or_default();
    if !is_secret_setting(&key) {
        return e.to_string();
    }
    let from = e
        .metadata
        .as_ref()
        .map(|m| format!(" (from {})", m.name))
        .unwrap_or_default();
    format!("invalid value for {key}{from}; value not shown")
}

impl Config {
    /// Loads the layers. `file` is `--config`/`REKEY_CONFIG`, default `./rekey.toml`
    /// (silently absent when not given explicitly).
    pub fn load(
        file: Option<&Path>,
        overrides: Overrides,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        // The file and its text, so that an error about a setting it holds
        // names the file and the line.
        let source = match file {
            Some(p) if !p.exists() => {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    p.display()
                )))
            }
            Some(p) => Some(p.to_path_buf()),
            None if Path::new("rekey.toml").exists() => Some(PathBuf::from("rekey.toml")),
            None => None,
        };
        let source = match source {
            Some(p) => {
                let text = read_toml(&p)?;
                fig = fig.merge(Toml::string(&text));
                Some(Source { path: p, text })
            }
            None => None,
        };
        for (k, _) in std::env::vars() {
            if let Some(rest) = k.strip_prefix("REKEY_") {
                let key = rest.to_ascii_lowercase();
                if !KNOWN.contains(&key.as_str()) && !key.starts_with("test_") {
                    warnings.push(format!("unknown environment variable {k} ignored"));
                }
            }
        }
        fig = fig
            .merge(Env::prefixed("REKEY_").only(&KNOWN[..KNOWN.len() - 1]))
            .merge(Serialized::globals(overrides));
        let cfg: Config = fig.extract().map_err(|e| {
            ConfigError::Invalid(
                e.into_iter()
                    .map(|e| describe_error(&e, source.as_ref()))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        // Named where the value came from: the file's line, or the variable.
        cfg.validate().map_err(|(key, message)| {
            let from = fig.find_metadata(key).map(|m| m.name.to_string());
            ConfigError::Invalid(match (&source, from) {
                (Some(src), Some(name)) if name.starts_with("TOML") => src.at(key, &message),
                (_, Some(name)) if name.contains("environment") => {
                    format!("REKEY_{}: {message}", key.to_ascii_uppercase())
                }
                _ => message,
            })
        })?;
        Ok((cfg, warnings))
    }

    /// Checks what the types cannot; an error names its setting.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let bad = |key: &'static str, m: String| Err((key, m));
        if let Err(e) = self.listen_addr() {
            return bad("listen", e.to_string().replace("configuration: ", ""));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return bad(
                "log_format",
                format!("log_format must be text or json, not {:?}", self.log_format),
            );
        }
        if self.authorization_code_ttl.0.as_secs() > 60 || self.authorization_code_ttl.0.is_zero() {
            return bad(
                "authorization_code_ttl",
                "authorization_code_ttl must be between 1s and 60s".into(),
            );
        }
        // Checked apart first, so that the error names the one at fault.
        if let Err(e) = crate::egress::Policy::new(&self.egress_deny, &[]) {
            return bad("egress_deny", e.to_string());
        }
        if let Err(e) = crate::egress::Policy::new(&self.egress_deny, &self.egress_allow) {
            return bad("egress_allow", e.to_string());
        }
        if self.m2m_token_ttl_max.0.is_zero() {
            return bad(
                "m2m_token_ttl_max",
                "m2m_token_ttl_max must be at least 1s".into(),
            );
        }
        if let Err(e) = self.trusted_proxy_nets() {
            return bad(
                "trusted_proxies",
                e.to_string().replace("configuration: ", ""),
            );
        }
        for (name, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("request_timeout", self.request_timeout),
            ("target_connect_timeout", self.target_connect_timeout),
            ("target_statement_timeout", self.target_statement_timeout),
        ] {
            if d.0.is_zero() || d.0 > Duration::from_secs(86_400) {
                return bad(name, format!("{name} must be between 1s and 1d"));
            }
        }
        if self.max_connections == 0 {
            return bad(
                "max_connections",
                "max_connections must be at least 1".into(),
            );
        }
        if let Some(u) = &self.public_url {
            if let Err(e) = url::Url::parse(u) {
                return bad("public_url", format!("public_url {u:?}: {e}"));
            }
        }
        Ok(())
    }

    /// `trusted_proxies` parsed; a bare address is a one-address network.
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError::Invalid(format!("trusted_proxies: {s:?} is not a CIDR"))
                    })
            })
            .collect()
    }

    /// The budget of sessions at targets.
    pub fn target_budget(&self) -> crate::egress::Budget {
        crate::egress::Budget {
            connect: self.target_connect_timeout.0,
            statement: self.target_statement_timeout.0,
        }
    }

    /// Password-hashing threads: the setting, or the number of cores.
    pub fn password_hash_workers(&self) -> usize {
        match self.password_hash_concurrency {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// Places in the password-hashing queue: the setting, or twice the workers.
    pub fn password_hash_queue_len(&self) -> usize {
        match self.password_hash_queue {
            0 => self.password_hash_workers().saturating_mul(2),
            n => n,
        }
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("listen {:?} is not ADDR:PORT", self.listen)))
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("rekey.db").display()))
    }

    pub fn key_file(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// The public URL without a trailing slash, for processes that do not
    /// bind (the CLI): the setting, or `http://{listen}`.
    pub fn public_url_configured(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_string()
    }

    /// The public URL without a trailing slash.
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
            .trim_end_matches('/')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("90d"), Some(Duration::from_secs(90 * 86400)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("99999999999d"), None);
        assert_eq!(parse_duration("18446744073709551615"), None);
        assert!(parse_duration("36500d").is_some());
    }
}
