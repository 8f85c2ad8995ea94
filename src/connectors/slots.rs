//! A connection's credential in versions (slots):
//!
//! - `current` — what platform code reads and probes use;
//! - `pending` — a new credential sealed *before* the target system is
//!   changed, so a crash between "changed there" and "stored here" loses
//!   nothing (make before break);
//! - `previous` — the one `current` replaced, kept (sealed) until it is
//!   retired, when nothing uses it any more.
//!
//! Each slot is sealed at its own place (`connections`/`credentials`,
//! `credentials_pending`, `credentials_previous`, row = connection id), so
//! a value moved between slots is re-sealed, never copied. The table
//! `credential_slots` holds each slot's version and times; nothing here is
//! ever shown but those.

use serde::Serialize;
use serde_json::{Map, Value};

use super::ConnectorError;
use crate::clock::rfc3339;
use crate::crypto::keyring::Place;
use crate::crypto::sealed;
use crate::state::Core;
use crate::store::{AsEx, Tx};
use crate::{exec, fetch_all, scalar_optional};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Current,
    Pending,
    Previous,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Current => "current",
            Slot::Pending => "pending",
            Slot::Previous => "previous",
        }
    }

    fn column(self) -> &'static str {
        match self {
            // The place `current` always had: credentials stored before
            // slots existed are the current slot as they are.
            Slot::Current => "credentials",
            Slot::Pending => "credentials_pending",
            Slot::Previous => "credentials_previous",
        }
    }

    pub fn place(self, connection_id: &str) -> Place<'_> {
        Place {
            table: "connections",
            column: self.column(),
            row: connection_id,
        }
    }
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct SlotRow {
    pub slot: String,
    pub version: i64,
    pub created_at: i64,
    pub verified_at: Option<i64>,
    pub last_read_at: Option<i64>,
    pub retired_at: Option<i64>,
}

#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
pub struct SlotView {
    pub version: i64,
    pub created_at: String,
    pub verified_at: Option<String>,
    pub last_read_at: Option<String>,
    pub retired_at: Option<String>,
}

#[derive(Serialize, Debug, Clone, Default, utoipa::ToSchema)]
pub struct SlotsView {
    pub current: Option<SlotView>,
    pub pending: Option<SlotView>,
    pub previous: Option<SlotView>,
}

impl SlotRow {
    fn view(&self) -> SlotView {
        SlotView {
            version: self.version,
            created_at: rfc3339(self.created_at),
            verified_at: self.verified_at.map(rfc3339),
            last_read_at: self.last_read_at.map(rfc3339),
            retired_at: self.retired_at.map(rfc3339),
        }
    }
}

pub async fn list<C: AsEx>(c: &mut C, connection_id: &str) -> Result<Vec<SlotRow>, ConnectorError> {
    Ok(fetch_all!(
        c,
        SlotRow,
        "SELECT slot, version, created_at, verified_at, last_read_at, retired_at
         FROM credential_slots WHERE connection_id = $1",
        connection_id
    )?)
}

pub fn view(rows: &[SlotRow]) -> SlotsView {
    let find = |s: Slot| {
        rows.iter()
            .find(|r| r.slot == s.as_str())
            .map(SlotRow::view)
    };
    SlotsView {
        current: find(Slot::Current),
        pending: find(Slot::Pending),
        previous: find(Slot::Previous),
    }
}

async fn next_version(tx: &mut Tx, connection_id: &str) -> Result<i64, ConnectorError> {
    let v = scalar_optional!(
        tx,
        Option<i64>,
        "SELECT MAX(version) FROM credential_slots WHERE connection_id = $1",
        connection_id
    )?;
    Ok(v.flatten().unwrap_or(0).saturating_add(1))
}

async fn upsert(
    tx: &mut Tx,
    connection_id: &str,
    slot: Slot,
    version: i64,
    now: i64,
) -> Result<(), ConnectorError> {
    exec!(
        tx,
        "INSERT INTO credential_slots (connection_id, slot, version, created_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (connection_id, slot) DO UPDATE SET version = excluded.version,
           created_at = excluded.created_at, verified_at = NULL, last_read_at = NULL, retired_at = NULL",
        connection_id,
        slot.as_str(),
        version,
        now
    )?;
    Ok(())
}

/// Seals `creds` into `slot` as a new version; returns the version.
pub async fn write(
    tx: &mut Tx,
    core: &Core,
    connection_id: &str,
    slot: Slot,
    creds: &Map<String, Value>,
    now: i64,
) -> Result<i64, ConnectorError> {
    refill(tx, core, connection_id, slot, creds, now).await?;
    let version = next_version(tx, connection_id).await?;
    upsert(tx, connection_id, slot, version, now).await?;
    Ok(version)
}

/// Replaces the value sealed in `slot`, keeping its version: the pending
/// credential once the target itself made it (a placeholder was written
/// ahead).
pub async fn refill(
    tx: &mut Tx,
    core: &Core,
    connection_id: &str,
    slot: Slot,
    creds: &Map<String, Value>,
    now: i64,
) -> Result<(), ConnectorError> {
    sealed::put(
        tx,
        &core.keyring,
        slot.place(connection_id),
        Value::Object(creds.clone()).to_string().as_bytes(),
        now,
    )
    .await?;
    Ok(())
}

/// The credential in `slot`, if there is one.
pub async fn read<C: AsEx>(
    c: &mut C,
    core: &Core,
    connection_id: &str,
    slot: Slot,
) -> Result<Option<Map<String, Value>>, ConnectorError> {
    let raw = sealed::get(c, &core.keyring, slot.place(connection_id)).await?;
    Ok(raw.and_then(|b| serde_json::from_slice(&b).ok()))
}

pub async fn mark_verified(
    tx: &mut Tx,
    connection_id: &str,
    slot: Slot,
    now: i64,
) -> Result<(), ConnectorError> {
    exec!(
        tx,
        "UPDATE credential_slots SET verified_at = $1 WHERE connection_id = $2 AND slot = $3",
        now,
        connection_id,
        slot.as_str()
    )?;
    Ok(())
}

/// Who reads, as the credentials endpoint saw it.
pub struct ReadBy<'a> {
    /// `service:NAME`, the service key that read.
    pub reader: &'a str,
    /// The consumer behind the key, when it named itself
    /// (`X-Rekey-Consumer`); `None` counts the key as one consumer.
    pub consumer: Option<&'a str>,
    pub ip: Option<&'a str>,
    /// How long the value handed out may be used (its `refresh_after`).
    pub refresh_after_ms: i64,
}

/// Records that a reader is about to read `slot` (the credentials
/// endpoint), with the version in it now, and until when the reader may
/// use that version (`now` plus its `refresh_after`). Recorded before the
/// read: if a rotation promotes in between, the reader is counted on the
/// older version and the rotation waits for its next read — never the
/// other way round. When this read moves a reader to a newer version, a
/// rotation waiting in its cut-over is woken to look again at once.
pub async fn record_read(
    core: &Core,
    connection_id: &str,
    slot: Slot,
    by: &ReadBy<'_>,
    now: i64,
) -> Result<(), ConnectorError> {
    let consumer = by.consumer.unwrap_or("");
    let until = now.saturating_add(by.refresh_after_ms);
    let mut tx = core.db.begin_write().await?;
    let Some(version) = scalar_optional!(
        &mut tx,
        i64,
        "SELECT version FROM credential_slots WHERE connection_id = $1 AND slot = $2",
        connection_id,
        slot.as_str()
    )?
    else {
        return Ok(());
    };
    let before = scalar_optional!(
        &mut tx,
        i64,
        "SELECT version FROM credential_reads WHERE connection_id = $1 AND reader = $2 AND consumer = $3",
        connection_id,
        by.reader,
        consumer
    )?;
    exec!(
        &mut tx,
        "INSERT INTO credential_reads (connection_id, reader, consumer, ip, version, read_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (connection_id, reader, consumer) DO UPDATE SET ip = excluded.ip,
           version = excluded.version, read_at = excluded.read_at",
        connection_id,
        by.reader,
        consumer,
        by.ip,
        version,
        now
    )?;
    // The latest of the times handed out for this version: a read with a
    // shorter `refresh_after` (the setting changed) does not shorten what
    // an earlier answer promised.
    exec!(
        &mut tx,
        "INSERT INTO credential_holds (connection_id, reader, consumer, version, until_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (connection_id, reader, consumer, version) DO UPDATE SET until_at =
           CASE WHEN excluded.until_at > credential_holds.until_at THEN excluded.until_at
                ELSE credential_holds.until_at END",
        connection_id,
        by.reader,
        consumer,
        version,
        until
    )?;
    exec!(
        &mut tx,
        "UPDATE credential_slots SET last_read_at = $1 WHERE connection_id = $2 AND slot = $3",
        now,
        connection_id,
        slot.as_str()
    )?;
    let moved = before.is_some_and(|v| v < version);
    let woke = moved && crate::rotation::wake_cutover(&mut tx, connection_id, now).await?;
    tx.commit().await?;
    if woke {
        core.work_due.notify_one();
    }
    Ok(())
}

/// The slot platform code is handed: `current`, except while a rotation of
/// a one-password target (MariaDB, PostgreSQL) is past its apply and not
/// yet promoted. The target then accepts only the pending credential
/// (apply's commit recorded that it took), so handing out `current` would
/// lock every reader out until the rotation resumes — after a crash, a
/// whole lease. Where the target keeps two credentials, `current` works
/// throughout and is handed out.
pub async fn served<C: AsEx>(
    c: &mut C,
    conn: &super::connections::Connection,
) -> Result<Slot, ConnectorError> {
    let Some(driver) = super::drivers::for_kind(&conn.kind, &conn.auth) else {
        return Ok(Slot::Current);
    };
    let job: Option<(String, String)> = crate::fetch_optional!(
        c,
        (String, String),
        "SELECT j.step, j.payload FROM rotations r JOIN jobs j ON j.id = r.job_id
         WHERE r.target_type = 'connection' AND r.target_id = $1 AND r.finished_at IS NULL",
        &conn.id
    )?;
    let Some((step, payload)) = job else {
        return Ok(Slot::Current);
    };
    let payload: Value = serde_json::from_str(&payload).unwrap_or(Value::Null);
    let dual = payload["dual"].as_bool().unwrap_or(driver.dual());
    let applied = matches!(step.as_str(), "verify" | "recover" | "promote");
    if dual || !applied {
        return Ok(Slot::Current);
    }
    let pending = list(c, &conn.id).await?.iter().any(|r| r.slot == "pending");
    Ok(if pending {
        Slot::Pending
    } else {
        Slot::Current
    })
}

#[derive(sqlx::FromRow, Debug, Clone, Serialize)]
pub struct Reader {
    pub reader: String,
    /// The consumer behind the service key, '' when it named none.
    pub consumer: String,
    pub ip: Option<String>,
    pub version: i64,
    #[serde(skip)]
    pub read_at: i64,
}

/// Every live reader of the connection's credentials and the version it
/// last got. A reader whose service key was revoked or deleted is none: it
/// can read nothing more, and counting its last read would let anyone who
/// revokes a key (or an attacker who read once with a key since revoked)
/// hold a cut-over, and so a leaked credential, open forever.
pub async fn readers<C: AsEx>(
    c: &mut C,
    connection_id: &str,
) -> Result<Vec<Reader>, ConnectorError> {
    Ok(fetch_all!(
        c,
        Reader,
        "SELECT r.reader, r.consumer, r.ip, r.version, r.read_at FROM credential_reads r
         WHERE r.connection_id = $1
           AND EXISTS (SELECT 1 FROM service_keys k
                       WHERE 'service:' || k.name = r.reader AND k.revoked_at IS NULL)
         ORDER BY r.reader, r.consumer",
        connection_id
    )?)
}

/// The live readers still on a version older than `version` (the promoted
/// one): who a cut-over waits for.
pub async fn readers_behind<C: AsEx>(
    c: &mut C,
    connection_id: &str,
    version: i64,
) -> Result<Vec<Reader>, ConnectorError> {
    Ok(readers(c, connection_id)
        .await?
        .into_iter()
        .filter(|r| r.version < version)
        .collect())
}

/// A version a live reader was handed and may still use from its cache.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct Hold {
    pub reader: String,
    pub consumer: String,
    pub version: i64,
    pub until_at: i64,
}

impl Hold {
    pub fn who(&self) -> String {
        match self.consumer.as_str() {
            "" => self.reader.clone(),
            c => format!("{} (consumer {c})", self.reader),
        }
    }
}

/// What live readers were handed of a version older than `version` (the
/// promoted one) and may still use after `now`: a cut-over does not retire
/// the previous version before the last of them has passed. A revoked key
/// holds nothing, as in [`readers`].
pub async fn holds_before<C: AsEx>(
    c: &mut C,
    connection_id: &str,
    version: i64,
    now: i64,
) -> Result<Vec<Hold>, ConnectorError> {
    Ok(fetch_all!(
        c,
        Hold,
        "SELECT h.reader, h.consumer, h.version, h.until_at FROM credential_holds h
         WHERE h.connection_id = $1 AND h.version < $2 AND h.until_at > $3
           AND EXISTS (SELECT 1 FROM service_keys k
                       WHERE 'service:' || k.name = h.reader AND k.revoked_at IS NULL)
         ORDER BY h.until_at DESC, h.reader, h.consumer",
        connection_id,
        version,
        now
    )?)
}

/// Every version live readers were handed of `connection_id` and may
/// still use from their caches after `now` (for `rotation show`: until
/// when each reader may keep the version it has).
pub async fn holds<C: AsEx>(
    c: &mut C,
    connection_id: &str,
    now: i64,
) -> Result<Vec<Hold>, ConnectorError> {
    Ok(fetch_all!(
        c,
        Hold,
        "SELECT h.reader, h.consumer, h.version, h.until_at FROM credential_holds h
         WHERE h.connection_id = $1 AND h.until_at > $2
         ORDER BY h.until_at DESC, h.reader, h.consumer",
        connection_id,
        now
    )?)
}

impl Reader {
    /// The reader for a person: its name, the consumer it named, and the
    /// address it read from.
    pub fn who(&self) -> String {
        let who = self.name();
        match &self.ip {
            Some(ip) => format!("{who} from {ip}"),
            None => who,
        }
    }

    /// The service key, and the consumer when it named itself.
    pub fn name(&self) -> String {
        match self.consumer() {
            Some(c) => format!("{} (consumer {c})", self.reader),
            None => self.reader.clone(),
        }
    }

    /// The consumer it named, if any.
    pub fn consumer(&self) -> Option<&str> {
        Some(self.consumer.as_str()).filter(|c| !c.is_empty())
    }

    pub fn view(&self, current_version: Option<i64>) -> Value {
        serde_json::json!({
            "reader": self.reader,
            "consumer": self.consumer(),
            "ip": self.ip,
            "version": self.version,
            "last_read_at": rfc3339(self.read_at),
            "on_current": current_version.is_some_and(|v| self.version >= v),
        })
    }
}

/// `pending` becomes `current` and `current` becomes `previous` (kept,
/// sealed, until [`retire_previous`]), in one transaction. Errors when there
/// is nothing pending.
pub async fn promote(
    tx: &mut Tx,
    core: &Core,
    connection_id: &str,
    now: i64,
) -> Result<i64, ConnectorError> {
    let rows = list(tx, connection_id).await?;
    let pending = rows
        .iter()
        .find(|r| r.slot == "pending")
        .cloned()
        .ok_or_else(|| ConnectorError::Invalid("no pending credential to promote".into()))?;
    let Some(new) = read(tx, core, connection_id, Slot::Pending).await? else {
        return Err(ConnectorError::Invalid(
            "the pending credential cannot be read".into(),
        ));
    };
    if let Some(old) = read(tx, core, connection_id, Slot::Current).await? {
        sealed::put(
            tx,
            &core.keyring,
            Slot::Previous.place(connection_id),
            Value::Object(old).to_string().as_bytes(),
            now,
        )
        .await?;
        exec!(
            tx,
            "DELETE FROM credential_slots WHERE connection_id = $1 AND slot = 'previous'",
            connection_id
        )?;
        exec!(
            tx,
            "UPDATE credential_slots SET slot = 'previous' WHERE connection_id = $1 AND slot = 'current'",
            connection_id
        )?;
    }
    sealed::put(
        tx,
        &core.keyring,
        Slot::Current.place(connection_id),
        Value::Object(new).to_string().as_bytes(),
        now,
    )
    .await?;
    sealed::delete(tx, Slot::Pending.place(connection_id)).await?;
    exec!(
        tx,
        "UPDATE credential_slots SET slot = 'current' WHERE connection_id = $1 AND slot = 'pending'",
        connection_id
    )?;
    Ok(pending.version)
}

/// Destroys the previous credential; its slot keeps its times, retired.
pub async fn retire_previous(
    tx: &mut Tx,
    connection_id: &str,
    now: i64,
) -> Result<(), ConnectorError> {
    sealed::delete(tx, Slot::Previous.place(connection_id)).await?;
    exec!(
        tx,
        "UPDATE credential_slots SET retired_at = $1 WHERE connection_id = $2 AND slot = 'previous' AND retired_at IS NULL",
        now,
        connection_id
    )?;
    // What was handed out of retired versions holds nothing any more.
    exec!(
        tx,
        "DELETE FROM credential_holds WHERE connection_id = $1 AND version <
           (SELECT version FROM credential_slots WHERE connection_id = $1 AND slot = 'current')",
        connection_id
    )?;
    Ok(())
}

/// Drops a pending credential that was never applied (a rotation rolled back).
pub async fn discard_pending(tx: &mut Tx, connection_id: &str) -> Result<(), ConnectorError> {
    sealed::delete(tx, Slot::Pending.place(connection_id)).await?;
    exec!(
        tx,
        "DELETE FROM credential_slots WHERE connection_id = $1 AND slot = 'pending'",
        connection_id
    )?;
    Ok(())
}

/// Every slot gone (the authorization was revoked): the values and the rows.
pub async fn clear(tx: &mut Tx, connection_id: &str) -> Result<(), ConnectorError> {
    for s in [Slot::Current, Slot::Pending, Slot::Previous] {
        sealed::delete(tx, s.place(connection_id)).await?;
    }
    exec!(
        tx,
        "DELETE FROM credential_slots WHERE connection_id = $1",
        connection_id
    )?;
    Ok(())
}
