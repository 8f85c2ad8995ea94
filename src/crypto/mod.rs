//! Keyring (versioned master keys, AEAD bound to its place), issued secrets
//! (minting and keyed digests) and password hashing.

pub mod keyring;
pub mod password;
pub mod password_pool;
pub mod sealed;
pub mod signature;
pub mod token;

pub use keyring::{Keyring, KeyringError};
pub use token::{Pepper, TokenKind};
