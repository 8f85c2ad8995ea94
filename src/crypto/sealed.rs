//! The `sealed` table: every secret rekey holds for someone else, encrypted
//! under the keyring and bound to its owner (table, column, row).

use super::keyring::{Keyring, KeyringError, Place};
use crate::store::{AsEx, Db, StoreError, Tx};
use crate::{exec, fetch_all, fetch_optional};

#[derive(Debug, thiserror::Error)]
pub enum SealedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{place}: {source}")]
    Keyring { place: String, source: KeyringError },
}

impl From<sqlx::Error> for SealedError {
    fn from(e: sqlx::Error) -> Self {
        SealedError::Store(e.into())
    }
}

#[derive(sqlx::FromRow)]
struct SealedRow {
    owner_table: String,
    owner_column: String,
    owner_id: String,
    key_id: String,
    ciphertext: Vec<u8>,
    updated_at: i64,
}

/// Stores (or replaces) the secret at `place`.
pub async fn put(
    tx: &mut Tx,
    keyring: &Keyring,
    place: Place<'_>,
    plaintext: &[u8],
    now: i64,
) -> Result<(), SealedError> {
    let ct = keyring.seal(place, plaintext);
    exec!(
        tx,
        "INSERT INTO sealed (owner_table, owner_column, owner_id, key_id, ciphertext, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (owner_table, owner_column, owner_id)
         DO UPDATE SET key_id = excluded.key_id, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        place.table,
        place.column,
        place.row,
        Keyring::key_id_of(&ct),
        ct,
        now
    )?;
    Ok(())
}

/// Stores the secret at `place` unless one is already there; returns whether it was stored.
pub async fn put_if_absent(
    tx: &mut Tx,
    keyring: &Keyring,
    place: Place<'_>,
    plaintext: &[u8],
    now: i64,
) -> Result<bool, SealedError> {
    let ct = keyring.seal(place, plaintext);
    let n = exec!(
        tx,
        "INSERT INTO sealed (owner_table, owner_column, owner_id, key_id, ciphertext, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (owner_table, owner_column, owner_id) DO NOTHING",
        place.table,
        place.column,
        place.row,
        Keyring::key_id_of(&ct),
        ct,
        now
    )?;
    Ok(n == 1)
}

/// Opens the secret at `place`, if there is one.
pub async fn get<C: AsEx>(
    c: &mut C,
    keyring: &Keyring,
    place: Place<'_>,
) -> Result<Option<Vec<u8>>, SealedError> {
    let row = fetch_optional!(
        c,
        SealedRow,
        "SELECT owner_table, owner_column, owner_id, key_id, ciphertext, updated_at FROM sealed
         WHERE owner_table = $1 AND owner_column = $2 AND owner_id = $3",
        place.table,
        place.column,
        place.row
    )?;
    match row {
        None => Ok(None),
        Some(r) => keyring
            .open(place, &r.ciphertext)
            .map(Some)
            .map_err(|source| SealedError::Keyring {
                place: describe(place),
                source,
            }),
    }
}

pub async fn delete(tx: &mut Tx, place: Place<'_>) -> Result<(), SealedError> {
    exec!(
        tx,
        "DELETE FROM sealed WHERE owner_table = $1 AND owner_column = $2 AND owner_id = $3",
        place.table,
        place.column,
        place.row
    )?;
    Ok(())
}

/// Deletes every secret of one owner row (all its columns).
pub async fn delete_owner(tx: &mut Tx, table: &str, row: &str) -> Result<(), SealedError> {
    exec!(
        tx,
        "DELETE FROM sealed WHERE owner_table = $1 AND owner_id = $2",
        table,
        row
    )?;
    Ok(())
}

fn describe(p: Place<'_>) -> String {
    format!("{}.{}[{}]", p.table, p.column, p.row)
}

#[derive(sqlx::FromRow, Debug, Clone, serde::Serialize)]
pub struct KeyCount {
    pub key_id: String,
    pub count: i64,
}

/// Number of ciphertexts per key id.
pub async fn counts(db: &Db) -> Result<Vec<KeyCount>, SealedError> {
    let mut c = db.read().await?;
    Ok(fetch_all!(
        &mut c,
        KeyCount,
        "SELECT key_id, COUNT(*) AS count FROM sealed GROUP BY key_id ORDER BY key_id"
    )?)
}

/// Re-encrypts up to `batch` ciphertexts not under the newest key, in one
/// transaction. Returns how many were re-encrypted; 0 means done. Each row is
/// updated by compare-and-set on its key and time, so a secret replaced
/// concurrently is left alone (it is already under the newest key).
pub async fn rotate_batch(db: &Db, keyring: &Keyring, batch: i64) -> Result<u64, SealedError> {
    let newest = keyring.newest_id();
    let mut tx = db.begin_write().await?;
    let rows = fetch_all!(
        &mut tx,
        SealedRow,
        "SELECT owner_table, owner_column, owner_id, key_id, ciphertext, updated_at FROM sealed
         WHERE key_id <> $1 ORDER BY owner_table, owner_column, owner_id LIMIT $2",
        &newest,
        batch
    )?;
    let mut done = 0;
    for r in rows {
        let place = Place {
            table: &r.owner_table,
            column: &r.owner_column,
            row: &r.owner_id,
        };
        let plain = keyring
            .open(place, &r.ciphertext)
            .map_err(|source| SealedError::Keyring {
                place: describe(place),
                source,
            })?;
        let ct = keyring.seal(place, &plain);
        done += exec!(
            &mut tx,
            "UPDATE sealed SET key_id = $1, ciphertext = $2
             WHERE owner_table = $3 AND owner_column = $4 AND owner_id = $5 AND key_id = $6 AND updated_at = $7",
            Keyring::key_id_of(&ct),
            ct,
            &r.owner_table,
            &r.owner_column,
            &r.owner_id,
            &r.key_id,
            r.updated_at
        )?;
    }
    tx.commit().await?;
    Ok(done)
}

/// Whether the database holds any sealed value (it does once a server or
/// command has run: the pepper is one).
pub async fn any(db: &Db) -> Result<bool, SealedError> {
    let mut c = db.read().await?;
    Ok(
        crate::scalar_optional!(&mut c, i64, "SELECT CAST(1 AS BIGINT) FROM sealed LIMIT 1")?
            .is_some(),
    )
}

/// Number of ciphertexts not yet under the newest key.
pub async fn pending(db: &Db, keyring: &Keyring) -> Result<i64, SealedError> {
    let mut c = db.read().await?;
    Ok(crate::scalar_optional!(
        &mut c,
        i64,
        "SELECT COUNT(*) FROM sealed WHERE key_id <> $1",
        keyring.newest_id()
    )?
    .unwrap_or(0))
}

/// Opens every ciphertext; returns the places that fail (and why).
pub async fn verify_all(db: &Db, keyring: &Keyring) -> Result<(u64, Vec<String>), SealedError> {
    let mut c = db.read().await?;
    let mut failures = Vec::new();
    let mut checked = 0u64;
    let mut after = (String::new(), String::new(), String::new());
    loop {
        let rows = fetch_all!(
            &mut c,
            SealedRow,
            "SELECT owner_table, owner_column, owner_id, key_id, ciphertext, updated_at FROM sealed
             WHERE (owner_table > $1) OR (owner_table = $1 AND owner_column > $2)
                OR (owner_table = $1 AND owner_column = $2 AND owner_id > $3)
             ORDER BY owner_table, owner_column, owner_id LIMIT 500",
            &after.0,
            &after.1,
            &after.2
        )?;
        let Some(last) = rows.last() else { break };
        after = (
            last.owner_table.clone(),
            last.owner_column.clone(),
            last.owner_id.clone(),
        );
        for r in &rows {
            checked += 1;
            let place = Place {
                table: &r.owner_table,
                column: &r.owner_column,
                row: &r.owner_id,
            };
            if let Err(e) = keyring.open(place, &r.ciphertext) {
                failures.push(format!("{}: {e}", describe(place)));
            }
        }
    }
    Ok((checked, failures))
}
