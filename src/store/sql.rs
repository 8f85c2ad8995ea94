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

/// A `LIKE … ESCAPE '\'` pattern that matches `s` literally (its `%`, `_`
/// and `\` escaped), lower-cased for a `LOWER(col)` or a lower-cased column:
/// `contains` puts a `%` before it; one always follows (a prefix).
pub fn like(s: &str, contains: bool) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    if contains {
        p.push('%');
    }
    for ch in s.to_lowercase().chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

/// One bind value of a statement whose argument count is only known at run
/// time (multi-row inserts).
#[derive(Debug, Clone)]
pub enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
}

/// Executes `sql` with `args` bound to `$1…$N` in order.
pub async fn exec_args<C: super::AsEx>(
    c: &mut C,
    sql: &str,
    args: Vec<Arg>,
) -> Result<u64, sqlx::Error> {
    macro_rules! bind_all {
        ($q:expr) => {{
            let mut q = $q;
            for a in args {
                q = match a {
                    Arg::Text(s) => q.bind(s),
                    Arg::OptText(s) => q.bind(s),
                    Arg::Int(i) => q.bind(i),
                };
            }
            q
        }};
    }
    match c.ex() {
        super::Ex::Sqlite(c) => Ok(bind_all!(sqlx::query(sql))
            .execute(&mut *c)
            .await?
            .rows_affected()),
        super::Ex::Postgres(c) => Ok(bind_all!(sqlx::query(sql))
            .execute(&mut *c)
            .await?
            .rows_affected()),
    }
}

/// Fetches every row of `sql` as `T`, with `args` bound to `$1…$N` in
/// order: [`fetch_all!`] for statements whose argument count is only known
/// at run time (an `IN (…)` list).
pub async fn fetch_all_args<C, T>(
    c: &mut C,
    sql: &str,
    args: Vec<Arg>,
) -> Result<Vec<T>, sqlx::Error>
where
    C: super::AsEx,
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    macro_rules! bind_all {
        ($q:expr) => {{
            let mut q = $q;
            for a in args {
                q = match a {
                    Arg::Text(s) => q.bind(s),
                    Arg::OptText(s) => q.bind(s),
                    Arg::Int(i) => q.bind(i),
                };
            }
            q
        }};
    }
    match c.ex() {
        super::Ex::Sqlite(c) => {
            bind_all!(sqlx::query_as::<_, T>(sql))
                .fetch_all(&mut *c)
                .await
        }
        super::Ex::Postgres(c) => {
            bind_all!(sqlx::query_as::<_, T>(sql))
                .fetch_all(&mut *c)
                .await
        }
    }
}

/// `($1, $2, …), (…)` for `rows` rows of `cols` columns, numbered from `$1`.
pub fn placeholders(rows: usize, cols: usize) -> String {
    placeholders_from(1, rows, cols)
}

/// `$first, $first+1, …` (`n` of them), for `IN (…)` lists.
pub fn param_list(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Like [`placeholders`], numbered from `$first`.
pub fn placeholders_from(first: usize, rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let inner: Vec<String> = (0..cols)
                .map(|c| format!("${}", first + r * cols + c))
                .collect();
            format!("({})", inner.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds one [`Arg`] to a SQLite query.
pub fn bind_sqlite<'q>(q: SqliteQuery<'q>, a: &'q Arg) -> SqliteQuery<'q> {
    match a {
        Arg::Text(s) => q.bind(s.as_str()),
        Arg::OptText(s) => q.bind(s.as_deref()),
        Arg::Int(i) => q.bind(*i),
    }
}

/// The type of one column of a [`json_table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonCol {
    Text,
    Int,
}

/// A derived table `(SELECT … AS c0, … AS cN, ord) AS alias` over the rows
/// of a JSON array of arrays bound as parameter `$param` (`ord` keeps the
/// array's order), for statements over
/// many rows: one bind whatever the row count. SQLite finds the name of
/// each bound parameter by a linear scan, so a statement with thousands of
/// `$N` spends quadratic time binding (measured: 29% of the CPU of a
/// 1,000-record People upsert went to `sqlite3_bind_parameter_name`).
///
/// BACKEND-SPECIFIC: `json_each` on SQLite, `jsonb_array_elements` on
/// PostgreSQL; everything around the derived table stays one text.
pub fn json_table<C: super::AsEx>(
    c: &mut C,
    param: usize,
    cols: &[JsonCol],
    alias: &str,
) -> String {
    let pg = matches!(c.ex(), super::Ex::Postgres(_));
    let mut exprs: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, t)| match (pg, t) {
            (false, _) => format!("value ->> {i} AS c{i}"),
            (true, JsonCol::Text) => format!("e ->> {i} AS c{i}"),
            (true, JsonCol::Int) => format!("(e ->> {i})::bigint AS c{i}"),
        })
        .collect();
    if pg {
        exprs.push("ord".into());
        format!(
            "(SELECT {} FROM jsonb_array_elements(${param}::jsonb) WITH ORDINALITY AS t(e, ord)) AS {alias}",
            exprs.join(", ")
        )
    } else {
        exprs.push("key AS ord".into());
        format!(
            "(SELECT {} FROM json_each(${param})) AS {alias}",
            exprs.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_patterns_match_literally() {
        assert_eq!(like("Admin@Acme", true), "%admin@acme%");
        assert_eq!(like("user.", false), "user.%");
        assert_eq!(like("50%_off\\", true), "%50\\%\\_off\\\\%");
    }
}
