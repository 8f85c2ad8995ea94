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
            Raw::N(n) => Ok(Dur::secs(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

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
    /// Life of an authorization code; at most 60 s.
    pub authorization_code_ttl: Dur,
    /// How often the refresh keeper looks for connections to refresh; 0 turns it off.
    pub keeper_interval: Dur,
    /// Address ranges outbound calls may not reach besides link-local and
    /// metadata addresses (always refused): `private`, `loopback`.
    #[serde(deserialize_with = "str_list")]
    pub egress_deny: Vec<String>,
    /// CIDRs exempt from `egress_deny`.
    #[serde(deserialize_with = "str_list")]
    pub egress_allow: Vec<String>,
    /// Longest life of a machine client's access token (and its default).
    pub m2m_token_ttl_max: Dur,
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
            authorization_code_ttl: Dur::secs(60),
            keeper_interval: Dur::secs(10),
            egress_deny: Vec::new(),
            egress_allow: Vec::new(),
            m2m_token_ttl_max: Dur::secs(3600),
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
    "authorization_code_ttl",
    "keeper_interval",
    "egress_deny",
    "egress_allow",
    "m2m_token_ttl_max",
    // read by the CLI, not a server setting
    "config",
];

impl Config {
    /// Loads the layers. `file` is `--config`/`REKEY_CONFIG`, default `./rekey.toml`
    /// (silently absent when not given explicitly).
    pub fn load(
        file: Option<&Path>,
        overrides: Overrides,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(p) if !p.exists() => {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    p.display()
                )))
            }
            Some(p) => fig = fig.merge(Toml::file(p)),
            None => fig = fig.merge(Toml::file("rekey.toml")),
        }
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
        let cfg: Config = fig
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok((cfg, warnings))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!(
                "log_format must be text or json, not {:?}",
                self.log_format
            )));
        }
        if self.authorization_code_ttl.0.as_secs() > 60 || self.authorization_code_ttl.0.is_zero() {
            return Err(ConfigError::Invalid(
                "authorization_code_ttl must be between 1s and 60s".into(),
            ));
        }
        crate::egress::Policy::new(&self.egress_deny, &self.egress_allow)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if self.m2m_token_ttl_max.0.is_zero() {
            return Err(ConfigError::Invalid(
                "m2m_token_ttl_max must be at least 1s".into(),
            ));
        }
        if let Some(u) = &self.public_url {
            url::Url::parse(u)
                .map_err(|e| ConfigError::Invalid(format!("public_url {u:?}: {e}")))?;
        }
        Ok(())
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
