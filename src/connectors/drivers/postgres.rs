//! PostgreSQL roles. A role may change its own password, so the connection
//! rotates itself by default, or through an admin connection holding a
//! `CREATEROLE` or superuser role (`--rotate-with`):
//! `ALTER ROLE r PASSWORD 'SCRAM-SHA-256$…'`, where the
//! SCRAM-SHA-256 verifier (RFC 5802, RFC 7677, as PostgreSQL stores it) is
//! computed here, so the plaintext never reaches the server, its statement
//! log or `pg_stat_statements`. A role holds one password: the old one
//! stops working when the new one is set (write-ahead keeps that safe), and
//! a failed verification sets the old verifier back.
//!
//! The steps are [`PgFamily`]'s, shared with the servers that speak
//! PostgreSQL's protocol and differ only in the statement, the verifier
//! and the privilege check ([`Flavour`]): Amazon Redshift (`redshift.rs`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{nothing_to_retire, text, with_new_password, Applied, BoxFut, Driver, Target};
use crate::connectors::session::{self, Sql};

/// PostgreSQL's own default (`scram_iterations`).
const ITERATIONS: u32 = 4096;

fn role(settings: &Map<String, Value>) -> String {
    text(settings, "username")
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password`:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. Passwords
/// rekey generates are ASCII, which SASLprep leaves as they are.
pub fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let server_key = hmac_sha256(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored_key),
        B64.encode(server_key)
    )
}

fn new_verifier(_role: &str, password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    scram_verifier(password, &salt, ITERATIONS)
}

/// What differs between servers that speak PostgreSQL's protocol and take
/// a password by `ALTER … PASSWORD '<verifier>'`: the statement, the
/// verifier they accept (computed here, so the plaintext never reaches the
/// server, its statement log or `pg_stat_statements`), and how to ask
/// whether the acting login may change the account's password. The steps
/// themselves are [`PgFamily`]'s, one text for all of them.
pub struct Flavour {
    /// `ALTER ROLE` or `ALTER USER`.
    pub statement: &'static str,
    /// What the account is called there, for errors: `role`, `user`.
    pub account: &'static str,
    /// The verifier of (account, password).
    pub verifier: fn(&str, &str) -> String,
    /// The verifier as plans and step details show it.
    pub shown: &'static str,
    /// The verifier masked, for `--dry-run`.
    pub masked: &'static str,
    /// One row: who acts (text), whether it may change the password of
    /// account `$1` (bool), whether `$1` exists (bool).
    pub may_alter: &'static str,
    /// The privilege an admin connection needs, for errors.
    pub privilege: &'static str,
}

/// A server of the PostgreSQL family: one password per account.
pub struct PgFamily(pub Flavour);

/// PostgreSQL roles.
pub static PG_ROLE: PgFamily = PgFamily(Flavour {
    statement: "ALTER ROLE",
    account: "role",
    verifier: new_verifier,
    shown: "a SCRAM-SHA-256 verifier",
    masked: "'SCRAM-SHA-256$4096:********$********:********'",
    may_alter: "SELECT current_user::text, \
                COALESCE((SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user), false) \
                  OR current_user = $1, \
                EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
    privilege: "neither CREATEROLE nor superuser",
});

/// Logs in as whoever makes the change: the admin connection, or the role
/// itself with the first of `own` that works.
async fn connect(
    t: &Target<'_>,
    own: &[&Map<String, Value>],
) -> Result<Sql<sqlx::PgConnection>, String> {
    let (settings, creds) = t.acting(own);
    Ok(session::postgres(t.egress, settings, &creds).await?)
}

impl PgFamily {
    async fn set_password(
        &self,
        t: &Target<'_>,
        own: &[&Map<String, Value>],
        password: &str,
    ) -> Result<String, String> {
        let f = &self.0;
        let r = role(t.settings);
        let mut c = connect(t, own).await?;
        // The verifiers are hex, base64 and `$:` only: safe inside a
        // literal. (ALTER takes no bind parameters.)
        let sql = format!(
            "{} {} PASSWORD '{}'",
            f.statement,
            quote_ident(&r),
            (f.verifier)(&r, password)
        );
        c.run(|c| sqlx::query(&sql).execute(c)).await?;
        c.close().await;
        Ok(format!(
            "{} {} PASSWORD ({}), {}",
            f.statement,
            quote_ident(&r),
            f.shown,
            t.actor()
        ))
    }
}

impl Driver for PgFamily {
    fn dual(&self) -> bool {
        false
    }

    fn plan(&self, settings: &Map<String, Value>) -> Vec<String> {
        let f = &self.0;
        let r = quote_ident(&role(settings));
        vec![
            format!("who acts (the {} itself, or the --rotate-with admin) and whether it may change the password", f.account),
            format!("{} {r} PASSWORD {}   ({} computed by rekey; the password never reaches the server)", f.statement, f.masked, f.shown),
            format!("connect as {r} with the new password   (verify)"),
        ]
    }

    fn check<'a>(&'a self, t: &'a Target<'a>) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let f = &self.0;
            let r = role(t.settings);
            let mut c = connect(t, &[t.current]).await?;
            let (who, may, exists): (String, bool, bool) = c
                .run(|c| sqlx::query_as(f.may_alter).bind(&r).fetch_one(c))
                .await?;
            c.close().await;
            match &t.admin {
                None if who != r => Err(format!(
                    "the credential logs in as {who}, not as the {} {r} it would rotate",
                    f.account
                )),
                Some(a) if !may => Err(format!(
                    "{} logs in as {who}, which has {} and cannot change the password of {r}",
                    a.name, f.privilege
                )),
                Some(a) if !exists => Err(format!(
                    "the {} {r} does not exist on the server {} connects to",
                    f.account, a.name
                )),
                _ => Ok(()),
            }
        })
    }

    fn create(&self, current: &Map<String, Value>) -> Map<String, Value> {
        with_new_password(current)
    }

    fn apply<'a>(
        &'a self,
        t: &'a Target<'a>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<Applied, String>> {
        // After a crash the new password may already be set: act with it then.
        Box::pin(async move {
            self.set_password(t, &[t.current, new], &text(new, "password"))
                .await
                .map(Applied::from)
        })
    }

    fn retire<'a>(
        &'a self,
        _t: &'a Target<'a>,
        _old: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        nothing_to_retire()
    }

    fn rollback<'a>(
        &'a self,
        t: &'a Target<'a>,
        old: &'a Map<String, Value>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        Box::pin(async move {
            self.set_password(t, &[new, old], &text(old, "password"))
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3's example: user "user", password "pencil", salt
    /// "W22ZaJ0SNY7soEsUEjb6gQ==", 4096 iterations.
    #[test]
    fn verifier_matches_rfc_7677() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = scram_verifier("pencil", &salt, 4096);
        let client_key = {
            let mut salted = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(b"pencil", &salt, 4096, &mut salted);
            hmac_sha256(&salted, b"Client Key")
        };
        // The RFC's client proof is ClientKey XOR HMAC(StoredKey, AuthMessage);
        // recompute it from the verifier's StoredKey and compare.
        let stored = B64
            .decode(v.split('$').nth(2).unwrap().split(':').next().unwrap())
            .unwrap();
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac_sha256(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        assert_eq!(
            B64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(v.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
    }
}
