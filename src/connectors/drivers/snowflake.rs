//! Snowflake key pairs. A user holds two public-key slots
//! (`RSA_PUBLIC_KEY`, `RSA_PUBLIC_KEY_2`), so the old key keeps working
//! beside the new one until cut-over. rekey generates the RSA key pair,
//! reads `DESC USER` to find the free slot — writing the slot in use would
//! break every client on the current key — sets the new public key there,
//! verifies with a key-pair JWT signed by the new private key (the
//! connection's probe), and unsets the old slot after cut-over.
//!
//! Statements go through Snowflake's SQL API (`POST /api/v2/statements`)
//! authenticated by a key-pair JWT: as the user itself by default (a user
//! may set its own public keys), or through an admin connection
//! (`--rotate-with`, a role with `MODIFY PROGRAMMATIC AUTHENTICATION
//! METHODS` or ownership of the user). The API's base URL is the
//! connection's `api_url` endpoint override when set.

use rand::rngs::OsRng;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::RsaPrivateKey;
use serde_json::{json, Map, Value};

use super::{text, Applied, BoxFut, Driver, Target};
use crate::connectors::mint::{public_key_body, public_key_fingerprint, rsa_key, snowflake_jwt};

pub struct SnowflakeKeyPair;

const KEY_BITS: usize = 2048;
const SLOTS: [&str; 2] = ["RSA_PUBLIC_KEY", "RSA_PUBLIC_KEY_2"];

/// A Snowflake identifier as written in a statement: plain names as they
/// are (Snowflake upper-cases them, as it did when the user was created),
/// anything else double-quoted.
pub fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

pub fn desc_user(user: &str) -> String {
    format!("DESC USER {}", ident(user))
}

pub fn set_key(user: &str, slot: &str, public_key_body: &str) -> String {
    // The body is base64: nothing in it needs escaping.
    format!(
        "ALTER USER {} SET {slot} = '{public_key_body}'",
        ident(user)
    )
}

pub fn unset_key(user: &str, slot: &str) -> String {
    format!("ALTER USER {} UNSET {slot}", ident(user))
}

/// The fingerprint in each slot (`RSA_PUBLIC_KEY_FP`, `RSA_PUBLIC_KEY_2_FP`)
/// from a `DESC USER` answer of the SQL API.
pub fn slot_fingerprints(answer: &Value) -> Result<[Option<String>; 2], String> {
    let cols = answer["resultSetMetaData"]["rowType"]
        .as_array()
        .ok_or("the SQL API answered without resultSetMetaData.rowType")?;
    let col = |n: &str| {
        cols.iter().position(|c| {
            c["name"]
                .as_str()
                .is_some_and(|x| x.eq_ignore_ascii_case(n))
        })
    };
    let (p, v) = match (col("property"), col("value")) {
        (Some(p), Some(v)) => (p, v),
        _ => return Err("DESC USER answered without property and value columns".into()),
    };
    let mut out = [None, None];
    for row in answer["data"].as_array().into_iter().flatten() {
        let prop = row[p].as_str().unwrap_or_default();
        let val = row[v].as_str().unwrap_or_default();
        let fp = (!val.is_empty() && val != "null").then(|| val.to_string());
        for (i, slot) in SLOTS.iter().enumerate() {
            if prop.eq_ignore_ascii_case(&format!("{slot}_FP")) {
                out[i] = fp.clone();
            }
        }
    }
    Ok(out)
}

/// The credential's private key (decrypted with its passphrase, if any).
fn key_of(creds: &Map<String, Value>) -> Result<RsaPrivateKey, String> {
    let pass = creds
        .get("private_key_passphrase")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    rsa_key(&text(creds, "private_key"), pass)
}

fn fingerprint_of(creds: &Map<String, Value>) -> Result<String, String> {
    public_key_fingerprint(&key_of(creds)?)
}

/// The slot holding `fp`, if any.
fn slot_of(slots: &[Option<String>; 2], fp: &str) -> Option<usize> {
    slots.iter().position(|s| s.as_deref() == Some(fp))
}

/// Runs one statement through the SQL API as whoever acts.
async fn statement(t: &Target<'_>, sql: &str) -> Result<Value, String> {
    let (settings, creds) = t.acting(&[t.current]);
    let creds = creds[0];
    let account = text(settings, "account");
    let key = key_of(creds)?;
    let jwt = snowflake_jwt(&account, &text(settings, "username"), &key, now_ms())?;
    let base = match t.endpoints.get("api_url").and_then(Value::as_str) {
        Some(u) if !u.is_empty() => u.trim_end_matches('/').to_string(),
        _ => format!("https://{account}.snowflakecomputing.com"),
    };
    let mut body = json!({"statement": sql, "timeout": 60});
    for k in ["role", "warehouse"] {
        let v = text(settings, k);
        if !v.is_empty() {
            body[k] = Value::String(v);
        }
    }
    let resp = t
        .egress
        .post(&format!("{base}/api/v2/statements"))
        .await
        .map_err(|e| e.to_string())?
        .timeout(std::time::Duration::from_secs(60))
        .bearer_auth(jwt)
        .header("X-Snowflake-Authorization-Token-Type", "KEYPAIR_JWT")
        .header("Accept", "application/json")
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("request failed: {}", crate::egress::describe(&e)))?;
    let status = resp.status().as_u16();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    if status == 200 {
        return Ok(answer);
    }
    let msg = answer["message"].as_str().unwrap_or("no message");
    Err(format!("Snowflake answered HTTP {status}: {msg}"))
}

/// Wall time for the JWT's `iat`, never the test clock: Snowflake checks
/// it against its own.
fn now_ms() -> i64 {
    use crate::clock::Clock;
    crate::clock::SystemClock.now_ms()
}

async fn slots(t: &Target<'_>) -> Result<[Option<String>; 2], String> {
    let user = text(t.settings, "username");
    slot_fingerprints(&statement(t, &desc_user(&user)).await?)
}

impl Driver for SnowflakeKeyPair {
    fn dual(&self) -> bool {
        true
    }

    fn plan(&self, settings: &Map<String, Value>) -> Vec<String> {
        let u = text(settings, "username");
        vec![
            format!(
                "{}   (which slot holds the current key; the other must be free)",
                desc_user(&u)
            ),
            format!(
                "{}   (a new {KEY_BITS}-bit key pair; both keys work)",
                set_key(&u, "RSA_PUBLIC_KEY_2", "MIIB********")
            ),
            "GET /api/v2/databases with a key-pair JWT of the new key   (verify)".into(),
            format!(
                "{}   (the old key's slot, after cut-over)",
                unset_key(&u, "RSA_PUBLIC_KEY")
            ),
        ]
    }

    fn check<'a>(&'a self, t: &'a Target<'a>) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let user = text(t.settings, "username");
            let s = slots(t).await?;
            let fp = fingerprint_of(t.current)?;
            match slot_of(&s, &fp) {
                None => Err(format!(
                    "the stored private key ({fp}) is in neither key slot of the user {user}; fix the connection's key first"
                )),
                Some(i) if s[1 - i].is_some() => Err(format!(
                    "both key slots of the user {user} are set ({} holds the stored key, {} holds {}); unset the one nothing uses ({}) and rotate again",
                    SLOTS[i],
                    SLOTS[1 - i],
                    s[1 - i].as_deref().unwrap_or_default(),
                    unset_key(&user, SLOTS[1 - i])
                )),
                Some(_) => Ok(()),
            }
        })
    }

    fn create(&self, current: &Map<String, Value>) -> Map<String, Value> {
        let mut m = current.clone();
        // Sealed at rest like every credential: no passphrase of its own.
        m.remove("private_key_passphrase");
        let pem = RsaPrivateKey::new(&mut OsRng, KEY_BITS)
            .ok()
            .and_then(|k| k.to_pkcs8_pem(LineEnding::LF).ok())
            .map(|p| p.to_string())
            .unwrap_or_default();
        m.insert("private_key".into(), Value::String(pem));
        m
    }

    fn apply<'a>(
        &'a self,
        t: &'a Target<'a>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<Applied, String>> {
        Box::pin(async move {
            let user = text(t.settings, "username");
            let key = key_of(new)?;
            let fp = public_key_fingerprint(&key)?;
            let s = slots(t).await?;
            if let Some(i) = slot_of(&s, &fp) {
                return Ok(format!(
                    "the new key is already in {} (the step ran before a restart)",
                    SLOTS[i]
                )
                .into());
            }
            let free = (0..2)
                .find(|&i| s[i].is_none())
                .ok_or_else(|| format!("no free key slot on the user {user}: both are set"))?;
            statement(t, &set_key(&user, SLOTS[free], &public_key_body(&key)?)).await?;
            Ok(format!(
                "{}, {}",
                set_key(&user, SLOTS[free], "MIIB********"),
                t.actor()
            )
            .into())
        })
    }

    fn retire<'a>(
        &'a self,
        t: &'a Target<'a>,
        old: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        Box::pin(async move { unset(t, old).await })
    }

    fn rollback<'a>(
        &'a self,
        t: &'a Target<'a>,
        _old: &'a Map<String, Value>,
        new: &'a Map<String, Value>,
    ) -> BoxFut<'a, Result<String, String>> {
        Box::pin(async move { unset(t, new).await })
    }
}

/// Unsets the slot holding `creds`' public key (none: already done).
async fn unset(t: &Target<'_>, creds: &Map<String, Value>) -> Result<String, String> {
    let user = text(t.settings, "username");
    let fp = fingerprint_of(creds)?;
    match slot_of(&slots(t).await?, &fp) {
        None => Ok(format!("the key {fp} is no longer set on {user}")),
        Some(i) => {
            let sql = unset_key(&user, SLOTS[i]);
            statement(t, &sql).await?;
            Ok(format!("{sql} ({fp})"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_follow_snowflakes_grammar() {
        assert_eq!(desc_user("svc_loader"), "DESC USER svc_loader");
        assert_eq!(desc_user("svc loader"), "DESC USER \"svc loader\"");
        assert_eq!(desc_user("a\"b"), "DESC USER \"a\"\"b\"");
        assert_eq!(
            set_key("SVC", "RSA_PUBLIC_KEY_2", "MIIBIjAN"),
            "ALTER USER SVC SET RSA_PUBLIC_KEY_2 = 'MIIBIjAN'"
        );
        assert_eq!(
            unset_key("SVC", "RSA_PUBLIC_KEY"),
            "ALTER USER SVC UNSET RSA_PUBLIC_KEY"
        );
    }

    /// The documented shape of a DESC USER answer from the SQL API: four
    /// columns, fingerprints as `SHA256:…` or the string `null`.
    #[test]
    fn reads_slots_from_desc_user() {
        let answer = json!({
            "resultSetMetaData": {"rowType": [
                {"name": "property"}, {"name": "value"}, {"name": "default"}, {"name": "description"}
            ]},
            "data": [
                ["NAME", "SVC", "null", "Name"],
                ["RSA_PUBLIC_KEY_FP", "SHA256:abc=", "null", "Fingerprint of user's RSA public key."],
                ["RSA_PUBLIC_KEY_2_FP", "null", "null", "Fingerprint of user's second RSA public key."]
            ]
        });
        let s = slot_fingerprints(&answer).unwrap();
        assert_eq!(s, [Some("SHA256:abc=".to_string()), None]);
        assert_eq!(slot_of(&s, "SHA256:abc="), Some(0));
    }

    #[test]
    fn new_key_is_a_fresh_pkcs8_pair_and_its_fingerprint_is_documented_form() {
        let m = SnowflakeKeyPair.create(&Map::new());
        let pem = text(&m, "private_key");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let fp = fingerprint_of(&m).unwrap();
        assert!(fp.starts_with("SHA256:") && fp.len() == 7 + 44, "{fp}");
        let other = SnowflakeKeyPair.create(&Map::new());
        assert_ne!(fingerprint_of(&other).unwrap(), fp);
    }
}
