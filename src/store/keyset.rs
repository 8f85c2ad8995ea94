//! Keyset paging, one shape for every list: a page is the rows after a
//! cursor in a fixed order, fetched with `LIMIT`, with the exact total of
//! the whole list. A deep page costs what the first does (no `OFFSET`),
//! and a row written between two pages neither repeats nor hides another.
//!
//! The cursor is `SORTKEY.ID` of the last row of the page before: the sort
//! key (a time in unix ms, or a name) and the row's id, which breaks ties.
//! Ids (ULID/UUID) hold no `.`, so the id is what follows the last `.`
//! and a sort key (a name) may hold dots. It says nothing the reader of
//! the page may not see.

use std::fmt::Display;

/// The most rows one page may ask for.
pub const MAX: i64 = 1_000;

/// Rows of a console list page.
pub const PAGE: i64 = 50;

/// One page: its rows, the exact total of the list, and the cursor of the
/// next page when one follows.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// The page of `rows`, fetched in page order with `LIMIT limit + 1`:
    /// the extra row only says that more follow. `key` gives a row's
    /// cursor (`Cursor::of`).
    pub fn from_rows(
        mut rows: Vec<T>,
        limit: i64,
        total: i64,
        key: impl Fn(&T) -> String,
    ) -> Page<T> {
        let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more { rows.last().map(key) } else { None };
        Page {
            items: rows,
            total,
            next,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            next: self.next,
        }
    }
}

impl<T: serde::Serialize> Page<T> {
    /// The page as the admin API and `--json` answer it:
    /// `{items, total, next_after}`.
    pub fn answer(&self) -> serde_json::Value {
        serde_json::json!({
            "items": self.items,
            "total": self.total,
            "next_after": self.next,
        })
    }
}

/// A page size as asked (`?limit=`), within 1..=`MAX`.
pub fn limit(asked: i64) -> i64 {
    asked.clamp(1, MAX)
}

/// A cursor that is not one `next` gave (hand-edited or truncated).
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a page cursor; start from the first page")]
pub struct BadCursor(pub String);

/// A parsed cursor: the sort key of the last row before the page, and
/// its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub key: String,
    pub id: String,
}

impl Cursor {
    /// `SORTKEY.ID` of one row.
    pub fn of(key: impl Display, id: &str) -> String {
        format!("{key}.{id}")
    }

    pub fn parse(s: &str) -> Result<Cursor, BadCursor> {
        s.rsplit_once('.')
            .filter(|(_, id)| !id.is_empty())
            .map(|(key, id)| Cursor {
                key: key.to_string(),
                id: id.to_string(),
            })
            .ok_or_else(|| BadCursor(s.to_string()))
    }

    /// A cursor whose sort key is a number (a time in unix ms).
    pub fn parse_at(s: &str) -> Result<(i64, String), BadCursor> {
        let c = Cursor::parse(s)?;
        let at = c.key.parse().map_err(|_| BadCursor(s.to_string()))?;
        Ok((at, c.id))
    }

    /// An optional cursor as a query carries it: absent or empty is the
    /// first page.
    pub fn opt(s: Option<&str>) -> Result<Option<Cursor>, BadCursor> {
        s.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Cursor::parse)
            .transpose()
    }

    /// `opt` with a numeric sort key.
    pub fn opt_at(s: Option<&str>) -> Result<Option<(i64, String)>, BadCursor> {
        s.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Cursor::parse_at)
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_names_may_hold_dots() {
        let c = Cursor::parse(&Cursor::of("db.prod.eu", "01J9")).unwrap();
        assert_eq!(c.key, "db.prod.eu");
        assert_eq!(c.id, "01J9");
        assert_eq!(
            Cursor::parse_at("1700.01J9").unwrap(),
            (1700, "01J9".into())
        );
        assert!(Cursor::parse("nodot").is_err());
        assert!(Cursor::parse("x.").is_err());
        assert!(Cursor::parse_at("x.01J9").is_err());
        assert_eq!(Cursor::opt(Some("  ")).unwrap(), None);
    }

    #[test]
    fn a_page_keeps_limit_rows_and_says_more_follow() {
        let p = Page::from_rows(vec![1, 2, 3], 2, 3, |n| n.to_string());
        assert_eq!(p.items, vec![1, 2]);
        assert_eq!(p.next.as_deref(), Some("2"));
        let p = Page::from_rows(vec![1, 2], 2, 2, |n| n.to_string());
        assert_eq!(p.next, None);
    }
}
