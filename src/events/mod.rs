//! What happened to a connection, for the people who look after it: the
//! activity log of each connection ([`activity`]), and signed webhooks for
//! the events a person must act on ([`webhooks`], sent by [`sender`]).
//! Both are written in the transaction of the change they report, so
//! neither tells of a change that was rolled back.

pub mod activity;
pub mod sender;
pub mod webhooks;

/// Longest message kept from a peer (a provider's error, a receiver's
/// answer): enough to read, not enough to fill the database.
pub const MESSAGE_MAX: usize = 500;

/// `s` cut to at most [`MESSAGE_MAX`] bytes, on a character boundary.
pub fn truncate(s: &str) -> String {
    if s.len() <= MESSAGE_MAX {
        return s.to_string();
    }
    let mut end = MESSAGE_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
