//! `rekey incident report ID --format json|csv|md`: the record for the
//! post-incident review — each item with its action, who did it, when it
//! was done and when verified, and what is still open.

use super::{get, Asker, IncidentError, IncidentView};
use crate::state::Core;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Md,
}

impl std::str::FromStr for Format {
    type Err = IncidentError;
    fn from_str(s: &str) -> Result<Format, IncidentError> {
        match s {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "md" | "markdown" => Ok(Format::Md),
            other => Err(IncidentError::Invalid(format!(
                "format {other:?}: use json, csv or md"
            ))),
        }
    }
}

pub async fn report(
    core: &Core,
    asker: &Asker<'_>,
    id: &str,
    format: Format,
) -> Result<String, IncidentError> {
    let v = get(core, asker, id).await?;
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(&json_report(&v)).unwrap_or_default(),
        Format::Csv => csv(&v),
        Format::Md => md(&v),
    })
}

fn json_report(v: &IncidentView) -> serde_json::Value {
    let open: Vec<_> = v
        .items
        .iter()
        .filter(|i| !matches!(i.status.as_str(), "verified" | "cancelled"))
        .map(|i| i.n)
        .collect();
    serde_json::json!({
        "campaign": {
            "id": v.id, "scope": v.scope, "reason": v.reason, "status": v.status,
            "started_by": v.started_by, "started_at": v.started_at, "finished_at": v.finished_at,
        },
        "counts": v.counts,
        "total": v.total,
        "verified_pct": v.verified_pct,
        "items": v.items,
        "open": open,
    })
}

const HEADERS: [&str; 11] = [
    "n",
    "org",
    "type",
    "name",
    "kind",
    "action",
    "status",
    "done_by",
    "done_at",
    "verified_at",
    "detail",
];

fn cells(i: &super::ItemView) -> [String; 11] {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    [
        i.n.to_string(),
        i.org.clone().unwrap_or_default(),
        s(&i.target["type"]),
        s(&i.target["name"]),
        s(&i.target["kind"]),
        i.action.clone(),
        i.status.clone(),
        i.done_by.clone().unwrap_or_default(),
        i.done_at.clone().unwrap_or_default(),
        i.verified_at.clone().unwrap_or_default(),
        i.detail.clone().unwrap_or_default(),
    ]
}

/// RFC 4180: fields with a comma, quote or line break are quoted, quotes
/// doubled.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

fn csv(v: &IncidentView) -> String {
    let mut out = HEADERS.join(",");
    out.push_str("\r\n");
    for i in &v.items {
        out.push_str(
            &cells(i)
                .iter()
                .map(|c| csv_field(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    out
}

fn md_cell(f: &str) -> String {
    f.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn md(v: &IncidentView) -> String {
    let mut out = format!(
        "# Incident {}\n\n- Reason: {}\n- Scope: {}\n- Status: {}\n- Started: {} by {}\n- Finished: {}\n- Items: {} ({}% verified)\n\n",
        v.id,
        md_cell(&v.reason),
        v.scope,
        v.status,
        v.started_at,
        md_cell(&v.started_by),
        v.finished_at.clone().unwrap_or_else(|| "not yet".into()),
        v.total,
        v.verified_pct
    );
    out.push_str(&format!("| {} |\n", HEADERS.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(HEADERS.len())));
    for i in &v.items {
        out.push_str(&format!(
            "| {} |\n",
            cells(i)
                .iter()
                .map(|c| md_cell(c))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    let open: Vec<_> = v
        .items
        .iter()
        .filter(|i| !matches!(i.status.as_str(), "verified" | "cancelled"))
        .collect();
    out.push_str("\n## Still open\n\n");
    if open.is_empty() {
        out.push_str("Nothing: every item is verified.\n");
    }
    for i in open {
        out.push_str(&format!(
            "- item {} ({} {}): {}{}\n",
            i.n,
            i.target["type"].as_str().unwrap_or_default(),
            i.target["name"].as_str().unwrap_or_default(),
            i.status,
            i.waiting_on
                .as_ref()
                .map(|w| format!(", waiting on {w}"))
                .unwrap_or_default()
        ));
    }
    out
}
