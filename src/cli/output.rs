//! Output for people (text on stdout) or scripts (one JSON document).

use serde::Serialize;

#[derive(Clone, Copy, Debug)]
pub struct Out {
    pub json: bool,
}

impl Out {
    pub fn new(json: bool) -> Out {
        Out { json }
    }

    /// Prints `value` as JSON, or `human(value)` as text.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce(&T) -> String) {
        if self.json {
            match serde_json::to_string_pretty(value) {
                Ok(s) => print_line(&s),
                Err(e) => eprintln!("error: cannot render JSON: {e}"),
            }
        } else {
            let text = human(value);
            if !text.is_empty() {
                print_line(text.trim_end());
            }
        }
    }
}

/// Writes `text` and a newline to stdout. A reader that went away (`rekey
/// … | head -1`) ends the command quietly: what it did is done, and
/// nobody is left to read the rest.
pub fn print_line(text: &str) {
    print_raw(&format!("{text}\n"));
}

/// [`print_line`] without the newline (a document printed as it is).
pub fn print_raw(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
    }
}

/// Formats rows as aligned columns.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_uppercase()).collect())];
    for r in rows {
        out.push(line(r));
    }
    out.join("\n")
}

/// An age for a person: seconds under a minute, else whole minutes and up
/// (`42s`, `3h 12m`, `90days`), never `0s` for a fresh credential.
pub fn age(secs: i64) -> String {
    let secs = u64::try_from(secs).unwrap_or(0);
    let shown = if secs < 60 { secs } else { secs / 60 * 60 };
    humantime::format_duration(std::time::Duration::from_secs(shown)).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages_read_well() {
        assert_eq!(super::age(0), "0s");
        assert_eq!(super::age(42), "42s");
        assert_eq!(super::age(3 * 3600 + 12 * 60 + 5), "3h 12m");
        assert_eq!(super::age(-5), "0s");
    }
}
