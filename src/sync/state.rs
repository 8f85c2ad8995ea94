//! A delivery's state machine, typed: every change goes through [`next`],
//! so no caller can write a state that does not exist or a move the machine
//! does not make.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Sending: there is more to deliver than has been.
    Running,
    /// Waiting for its connection: `needs_reauth` or `disconnected`. Resumes
    /// by itself when the connection is connected again.
    PausedAuth,
    /// A passing failure (the receiver down, 5xx, 429, a timeout), retried
    /// with backoff; or a batch the receiver refused (parked), retried by a
    /// person.
    PausedError,
    PausedByUser,
    /// A backfill of this delivery runs; live delivery waits for it.
    Backfilling,
    /// Everything written so far is delivered.
    CaughtUp,
}

/// What happened to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A batch was delivered; `more` when records are left after it.
    Sent {
        more: bool,
    },
    /// Nothing left to send.
    Empty,
    /// The target refused the credential and a refresh did not help, or the
    /// connection is not connected.
    AuthLost,
    /// The connection is connected again (re-authorized, a credential set
    /// and probed, a rotation completed).
    AuthBack,
    /// A failure that passes (retried with backoff), or a parked batch.
    Failed,
    Pause,
    Resume,
    BackfillStarted,
    BackfillEnded,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::PausedAuth => "paused_auth",
            State::PausedError => "paused_error",
            State::PausedByUser => "paused_by_user",
            State::Backfilling => "backfilling",
            State::CaughtUp => "caught_up",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "running" => State::Running,
            "paused_auth" => State::PausedAuth,
            "paused_error" => State::PausedError,
            "paused_by_user" => State::PausedByUser,
            "backfilling" => State::Backfilling,
            "caught_up" => State::CaughtUp,
            _ => return None,
        })
    }

    /// Paused for any reason: the time paused counts toward the catch-up.
    pub fn paused(self) -> bool {
        matches!(
            self,
            State::PausedAuth | State::PausedError | State::PausedByUser
        )
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a connection in `status` can carry records: connected, or
/// passing through an error or a rotation (its credential still opens the
/// target). Anything else (`needs_reauth`, `disconnected`, never
/// authorized) pauses a delivery and holds a backfill until it is back.
pub fn usable(status: &str) -> bool {
    matches!(status, "connected" | "error" | "rotating")
}

/// The one transition function. A person's pause outranks everything but
/// their resume; a backfill holds live delivery until it ends; a lost
/// credential holds it until the connection is back.
pub fn next(state: State, event: Event) -> State {
    use Event as E;
    use State as S;
    match (state, event) {
        (S::PausedByUser, E::Resume) => S::Running,
        (S::PausedByUser, _) => S::PausedByUser,
        (_, E::Pause) => S::PausedByUser,
        (S::Backfilling, E::BackfillEnded) => S::Running,
        (_, E::BackfillStarted) => S::Backfilling,
        (S::Backfilling, E::AuthLost) => S::PausedAuth,
        (S::Backfilling, _) => S::Backfilling,
        (S::PausedAuth, E::AuthBack | E::Resume) => S::Running,
        (S::PausedAuth, _) => S::PausedAuth,
        (_, E::AuthLost) => S::PausedAuth,
        (_, E::Failed) => S::PausedError,
        (_, E::Sent { more: true }) => S::Running,
        (_, E::Sent { more: false } | E::Empty) => S::CaughtUp,
        (S::PausedError, E::Resume) => S::Running,
        (s, E::Resume | E::AuthBack | E::BackfillEnded) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_pause_outranks_everything_but_resume() {
        for e in [
            Event::Sent { more: true },
            Event::Empty,
            Event::AuthLost,
            Event::AuthBack,
            Event::Failed,
            Event::BackfillStarted,
            Event::BackfillEnded,
        ] {
            assert_eq!(next(State::PausedByUser, e), State::PausedByUser, "{e:?}");
        }
        assert_eq!(next(State::PausedByUser, Event::Resume), State::Running);
    }

    #[test]
    fn a_lost_credential_holds_until_the_connection_is_back() {
        assert_eq!(next(State::CaughtUp, Event::AuthLost), State::PausedAuth);
        assert_eq!(next(State::PausedAuth, Event::Empty), State::PausedAuth);
        assert_eq!(next(State::PausedAuth, Event::AuthBack), State::Running);
    }

    #[test]
    fn a_backfill_holds_live_delivery() {
        assert_eq!(
            next(State::CaughtUp, Event::BackfillStarted),
            State::Backfilling
        );
        assert_eq!(
            next(State::Backfilling, Event::Sent { more: false }),
            State::Backfilling
        );
        assert_eq!(
            next(State::Backfilling, Event::BackfillEnded),
            State::Running
        );
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in [
            State::Running,
            State::PausedAuth,
            State::PausedError,
            State::PausedByUser,
            State::Backfilling,
            State::CaughtUp,
        ] {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
    }
}
