//! PostgreSQL roles. A role may change its own password, so the connection
//! rotates itself by default, or through an admin connection holding a
//! `CREATEROLE` or superuser role (`--rotate-with`):
//! `ALTER ROLE r PASSWORD 'SCRAM-SHA-256$…'`, where the
//! SCRAM-SHA-256 verifier (RFC 5802, RFC 7677, as PostgreSQL stores it) is
//! computed here, so the plaintext never reaches the server, its statement
//! log or `pg_stat_statements`. A role holds one password: the old one
//! stops working when the new one is set (write-ahead keeps that safe), and
//! a failed verification sets the old verifier back.

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

pub struct PgRole;

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

fn new_verifier(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    scram_verifier(password, &salt, ITERATIONS)
}

/// Logs in as whoever makes the change: the admin connection, or the role
/// itself with the first of `own` that works.
async fn connect(
    t: &Target<'_>,
    own: &[&Map<String, Value>],
) -> Result<Sql<sqlx::PgConnection>, String> {
    let (settings, creds) = t.acting(own);
    session::postgres(t.egress, settings, &creds).await
}

async fn set_password(
    t: &Target<'_>,
    own: &[&Map<String, Value>],
    password: &str,
) -> Result<String, String> {
    let r = role(t.settings);
    let mut c = connect(t, own).await?;
    // The verifier is base64 and `$:` only: safe inside a literal. (ALTER
    // ROLE takes no bind parameters.)
    let sql = format!(
        "ALTER ROLE {} PASSWORD '{}'",
        quote_ident(&r),
        new_verifier(password)
    );
    c.run(|c| sqlx::query(&sql).execute(c)).await?;
    c.close().await;
    Ok(format!(
        "ALTER ROLE {} PASSWORD (a SCRAM-SHA-256 verifier), {}",
        quote_ident(&r),
        t.actor()
    ))
}

impl Driver for PgRole {
    fn dual(&self) -> bool {
        false
    }

    fn plan(&self, settings: &Map<String, Value>) -> Vec<String> {
        let r = quote_ident(&role(settings));
        vec![
            "SELECT current_user, rolcreaterole   (who acts: the role itself, or the --rotate-with admin)".to_string(),
            format!("ALTER ROLE {r} PASSWORD 'SCRAM-SHA-256$4096:********$********:********'   (a verifier computed by rekey; the password never reaches the server)"),
            format!("connect as {r} with the new password   (verify)"),
        ]
    }

    fn check<'a>(&'a self, t: &'a Target<'a>) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let r = role(t.settings);
            let mut c = connect(t, &[t.current]).await?;
            // Who acts, whether it may alter r, and whether r exists.
            let (who, may, exists): (String, bool, bool) = c
                .run(|c| {
                    sqlx::query_as(
                        "SELECT current_user::text, \
                                COALESCE((SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user), false) \
                                  OR current_user = $1, \
                                EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
                    )
                    .bind(&r)
                    .fetch_one(c)
                })
                .await?;
            c.close().await;
            match &t.admin {
                None if who != r => Err(format!(
                    "the credential logs in as {who}, not as the role {r} it would rotate"
                )),
                Some(a) if !may => Err(format!(
                    "{} logs in as {who}, which has neither CREATEROLE nor superuser and cannot change the password of {r}",
                    a.name
                )),
                Some(a) if !exists => Err(format!("the role {r} does not exist on the server {} connects to", a.name)),
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
            set_password(t, &[t.current, new], &text(new, "password"))
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
        Box::pin(async move { set_password(t, &[new, old], &text(old, "password")).await })
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
