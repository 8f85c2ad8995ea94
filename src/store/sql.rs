//! Query macros: the same SQL text and binds, compiled once per backend.
//!
//! `$c` is anything that implements [`AsEx`](super::AsEx) (`&mut Tx`,
//! `&mut Conn`). Arguments are bound in order to `$1`, `$2`, …; only one arm
//! runs, so moving an argument is fine.

/// Executes a statement; yields `Result<u64, sqlx::Error>` (rows affected).
#[macro_export]
macro_rules! exec {
    ($c:expr, $sql:expr $(, $arg:expr)* $(,)?) => {{
        match $crate::store::AsEx::ex($c) {
            $crate::store::Ex::Sqlite(c) => ::sqlx::query($sql)$(.bind($arg))*.execute(&mut *c).await.map(|r| r.rows_affected()),
            $crate::store::Ex::Postgres(c) => ::sqlx::query($sql)$(.bind($arg))*.execute(&mut *c).await.map(|r| r.rows_affected()),
        }
    }};
}

/// Fetches at most one row as `$t` (a `FromRow` type).
#[macro_export]
macro_rules! fetch_optional {
    ($c:expr, $t:ty, $sql:expr $(, $arg:expr)* $(,)?) => {{
        match $crate::store::AsEx::ex($c) {
            $crate::store::Ex::Sqlite(c) => ::sqlx::query_as::<_, $t>($sql)$(.bind($arg))*.fetch_optional(&mut *c).await,
            $crate::store::Ex::Postgres(c) => ::sqlx::query_as::<_, $t>($sql)$(.bind($arg))*.fetch_optional(&mut *c).await,
        }
    }};
}

/// Fetches every row as `$t`.
#[macro_export]
macro_rules! fetch_all {
    ($c:expr, $t:ty, $sql:expr $(, $arg:expr)* $(,)?) => {{
        match $crate::store::AsEx::ex($c) {
            $crate::store::Ex::Sqlite(c) => ::sqlx::query_as::<_, $t>($sql)$(.bind($arg))*.fetch_all(&mut *c).await,
            $crate::store::Ex::Postgres(c) => ::sqlx::query_as::<_, $t>($sql)$(.bind($arg))*.fetch_all(&mut *c).await,
        }
    }};
}

/// Fetches one scalar of type `$t`; yields `Result<Option<$t>, _>`.
#[macro_export]
macro_rules! scalar_optional {
    ($c:expr, $t:ty, $sql:expr $(, $arg:expr)* $(,)?) => {{
        match $crate::store::AsEx::ex($c) {
            $crate::store::Ex::Sqlite(c) => ::sqlx::query_scalar::<_, $t>($sql)$(.bind($arg))*.fetch_optional(&mut *c).await,
            $crate::store::Ex::Postgres(c) => ::sqlx::query_scalar::<_, $t>($sql)$(.bind($arg))*.fetch_optional(&mut *c).await,
        }
    }};
}
