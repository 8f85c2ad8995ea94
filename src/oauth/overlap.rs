//! How long the previous secret of an access key or a client keeps working
//! once a new one is issued: a fixed overlap (`key reset --overlap`,
//! `regenerate-secret --overlap`, a campaign's), or until the rotation that
//! issued the new one retires it when nobody uses the old one any more
//! (stored as a previous digest without an end).

use super::OAuthError;
use crate::clock::rfc3339;
use crate::store::AsEx;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// For this many milliseconds (0: the previous secret stops at once).
    For(i64),
    /// Until its rotation's cut-over retires it.
    UntilRetired,
}

impl Overlap {
    /// The previous digest and its end, for a secret whose current digest
    /// is `current`.
    pub fn previous(
        self,
        current: &str,
        now: i64,
    ) -> Result<(Option<String>, Option<i64>), OAuthError> {
        match self {
            Overlap::For(ms) if !(0..=crate::rotation::limits::MAX_OVERLAP_MS).contains(&ms) => {
                Err(OAuthError::InvalidRequest(
                    "overlap must be between 0s and 30d".into(),
                ))
            }
            Overlap::For(0) => Ok((None, None)),
            Overlap::For(ms) => Ok((Some(current.to_string()), Some(now.saturating_add(ms)))),
            Overlap::UntilRetired => Ok((Some(current.to_string()), None)),
        }
    }

    /// For the audit record: the fixed overlap in seconds, null when held
    /// by a rotation.
    pub fn seconds(self) -> Option<i64> {
        match self {
            Overlap::For(ms) => Some(ms / 1000),
            Overlap::UntilRetired => None,
        }
    }
}

/// The refusal of a reset over a previous secret that a rotation still
/// holds: resetting would cut off whoever still uses it, with no rotation
/// left to say so. Names the rotation to finish.
pub async fn previous_held<C: AsEx>(
    noun: &str,
    name: &str,
    target_id: &str,
    c: &mut C,
) -> Result<OAuthError, OAuthError> {
    let by = crate::rotation::last_of(c, target_id)
        .await?
        .unwrap_or_else(|| "ID".into());
    Ok(OAuthError::InvalidRequest(format!(
        "the previous secret of {noun} {name:?} still works until rotation {by} retires it once nobody uses it: \
         finish that rotation first (`rekey rotation finish {by}`, with `--now` to retire it at once)"
    )))
}

/// A previous secret that still works is never overwritten — by a new
/// rotation of rekey's own secret, or of a connection that holds it:
/// someone may still use it, and nothing would be left to say so.
/// `previous` is its digest and end; `command` the `rekey` noun of the
/// owner's commands (`key`, `m2m`, `app`).
pub async fn refuse_live_previous<C: AsEx>(
    c: &mut C,
    noun: &str,
    name: &str,
    target_id: &str,
    command: &str,
    previous: (Option<&str>, Option<i64>),
    now: i64,
) -> Result<(), OAuthError> {
    match previous {
        (Some(_), None) => Err(previous_held(noun, name, target_id, c).await?),
        (Some(_), Some(until)) if until > now => Err(OAuthError::InvalidRequest(format!(
            "the previous secret of {noun} {name:?} still works until {} (an earlier overlap): let it end, or end it now (`rekey {command} end-overlap`), before rotating",
            rfc3339(until)
        ))),
        _ => Ok(()),
    }
}
