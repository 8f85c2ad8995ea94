//! Text contrast of the console's stylesheet (`src/web/static/rekey.css`):
//! every text colour it sets against the background it sits on has a
//! WCAG 2 contrast ratio of at least 4.5:1, in the light scheme and in a
//! `prefers-color-scheme: dark` block when there is one. The chart's SVG
//! text (`fill` in the templates) is checked against the chart's
//! background. (`tests/browser/console.mjs` checks the same on the
//! rendered pages, element by element.)
//!
//! Which background a colour sits on, from the stylesheet alone:
//! - a rule that sets both: that pair (badges, buttons, notices, inputs);
//! - a rule under an ancestor that sets a background (`header.top a`):
//!   that ancestor's background;
//! - otherwise: every surface text can sit on, i.e. the page's background
//!   and every background set by a rule that sets no colour (cards,
//!   tables, menus, the secret box).

use std::collections::BTreeMap;

const MIN: f64 = 4.5;

/// One rule: its selector (one of a comma list) and declarations.
#[derive(Debug, Clone)]
struct Rule {
    selector: String,
    decls: BTreeMap<String, String>,
}

fn strip_comments(css: &str) -> String {
    let mut out = String::new();
    let mut rest = css;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = match rest[i + 2..].find("*/") {
            Some(j) => &rest[i + 2 + j + 2..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// The rules of `css` in order; each `@media` block's rules as
/// `(condition, rules)`.
fn parse(css: &str) -> (Vec<Rule>, Vec<(String, Vec<Rule>)>) {
    let (mut top, mut media) = (vec![], vec![]);
    let mut rest = css.trim();
    while !rest.is_empty() {
        let Some(open) = rest.find('{') else { break };
        let head = rest[..open].trim().to_string();
        if head.starts_with('@') {
            // the block runs to its matching brace
            let mut depth = 0;
            let mut end = open;
            for (i, ch) in rest[open..].char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let (inner, _) = parse(&rest[open + 1..end]);
            media.push((head, inner));
            rest = rest[end + 1..].trim();
        } else {
            let close = rest[open..]
                .find('}')
                .map(|i| open + i)
                .unwrap_or(rest.len());
            let mut decls = BTreeMap::new();
            for d in rest[open + 1..close].split(';') {
                if let Some((k, v)) = d.split_once(':') {
                    let v = v.trim().trim_end_matches("!important").trim();
                    decls.insert(k.trim().to_lowercase(), v.to_string());
                }
            }
            for selector in head.split(',') {
                top.push(Rule {
                    selector: selector.split_whitespace().collect::<Vec<_>>().join(" "),
                    decls: decls.clone(),
                });
            }
            rest = rest[(close + 1).min(rest.len())..].trim();
        }
    }
    (top, media)
}

/// `#rgb`, `#rrggbb`, `#rrggbbaa` (opaque only), `white`, `black`; `None`
/// for what is no colour of its own (`none`, `transparent`, `inherit`,
/// `currentColor`).
fn hex(v: &str) -> Option<[f64; 3]> {
    let v = v.trim().to_lowercase();
    match v.as_str() {
        "white" => return Some([255.0; 3]),
        "black" => return Some([0.0; 3]),
        _ => {}
    }
    let h = v.strip_prefix('#')?;
    let digits: Vec<u8> = match h.len() {
        3 | 4 => h
            .chars()
            .map(|c| c.to_digit(16).map(|d| (d * 17) as u8))
            .collect::<Option<_>>()?,
        6 | 8 => (0..h.len() / 2)
            .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<_>>()?,
        _ => return None,
    };
    if digits.len() == 4 && digits[3] != 255 {
        return None;
    }
    Some([digits[0] as f64, digits[1] as f64, digits[2] as f64])
}

/// `v` with `var(--x)` resolved from `vars`, and its first colour token.
fn colour(v: &str, vars: &BTreeMap<String, String>) -> Option<(String, [f64; 3])> {
    for t in v.split_whitespace() {
        let t = t.trim_end_matches(',');
        let t = match t.strip_prefix("var(").and_then(|t| t.strip_suffix(')')) {
            Some(name) => vars.get(name)?.clone(),
            None => t.to_string(),
        };
        if let Some(c) = hex(&t) {
            return Some((t, c));
        }
    }
    None
}

fn luminance([r, g, b]: [f64; 3]) -> f64 {
    let lin = |c: f64| {
        let c = c / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
}

/// The WCAG 2 contrast ratio of two colours.
fn ratio(a: [f64; 3], b: [f64; 3]) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

/// Every (what, text colour, background, ratio) of one scheme's rules.
fn pairs(rules: &[Rule]) -> Vec<(String, String, String, f64)> {
    let mut vars = BTreeMap::new();
    for r in rules.iter().filter(|r| r.selector == ":root") {
        for (k, v) in &r.decls {
            if k.starts_with("--") {
                vars.insert(k.clone(), v.clone());
            }
        }
    }
    let bg_of = |r: &Rule| {
        r.decls
            .get("background-color")
            .or_else(|| r.decls.get("background"))
            .and_then(|v| colour(v, &vars))
    };
    let fg_of = |r: &Rule| r.decls.get("color").and_then(|v| colour(v, &vars));
    // the surfaces: the page's background, and every background set
    // without a colour
    let mut surfaces: Vec<(String, [f64; 3])> = vec![];
    for r in rules {
        let page = r.selector == "body";
        if let (Some(bg), true) = (bg_of(r), page || fg_of(r).is_none()) {
            if !surfaces.iter().any(|(s, _)| s == &bg.0) {
                surfaces.push(bg);
            }
        }
    }
    assert!(!surfaces.is_empty(), "no page background found");
    let mut out = vec![];
    for r in rules {
        let Some((fg_name, fg)) = fg_of(r) else {
            continue;
        };
        let on: Vec<(String, [f64; 3])> = match bg_of(r) {
            Some(bg) => vec![bg],
            None => {
                // the nearest ancestor in the selector that sets one
                let parts: Vec<&str> = r.selector.split(' ').collect();
                (1..parts.len())
                    .rev()
                    .find_map(|k| {
                        let prefix = parts[..k].join(" ");
                        rules
                            .iter()
                            .filter(|a| a.selector == prefix)
                            .find_map(&bg_of)
                    })
                    .map(|bg| vec![bg])
                    .unwrap_or_else(|| surfaces.clone())
            }
        };
        for (bg_name, bg) in on {
            out.push((r.selector.clone(), fg_name.clone(), bg_name, ratio(fg, bg)));
        }
    }
    out
}

/// The light scheme's rules (top level and every `@media` block but a
/// dark one) and, when the stylesheet has one, the dark scheme's (the
/// same with the dark block's rules after them).
fn schemes(css: &str) -> Vec<(&'static str, Vec<Rule>)> {
    let (top, media) = parse(&strip_comments(css));
    let dark = |m: &str| m.contains("prefers-color-scheme") && m.contains("dark");
    let mut light = top;
    for (m, rules) in &media {
        if !dark(m) {
            light.extend(rules.iter().cloned());
        }
    }
    let mut out = vec![("light", light.clone())];
    let dark_rules: Vec<Rule> = media
        .iter()
        .filter(|(m, _)| dark(m))
        .flat_map(|(_, r)| r.iter().cloned())
        .collect();
    if !dark_rules.is_empty() {
        let mut all = light;
        all.extend(dark_rules);
        out.push(("dark", all));
    }
    out
}

/// Merges rules of one selector (later declarations win), keeping the
/// order of first appearance.
fn merged(rules: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = vec![];
    for r in rules {
        match out.iter_mut().find(|o| o.selector == r.selector) {
            Some(o) => o.decls.extend(r.decls),
            None => out.push(r),
        }
    }
    out
}

/// Every pair of `css` (and of SVG text `fill`s in `templates` on the
/// chart's background) below `MIN`, and how many pairs were checked.
fn failures(css: &str, templates: &[(String, String)]) -> (Vec<String>, usize) {
    let (mut bad, mut n) = (vec![], 0);
    for (scheme, rules) in schemes(css) {
        let rules = merged(rules);
        let mut all = pairs(&rules);
        // SVG text in the templates, on the chart's background
        let chart = rules
            .iter()
            .find(|r| r.selector == "svg.chart")
            .and_then(|r| r.decls.get("background"))
            .and_then(|v| hex(v));
        for (name, t) in templates {
            for text in t.split("<text").skip(1) {
                let tag = text.split('>').next().unwrap_or_default();
                let Some(fill) = tag
                    .split("fill=\"")
                    .nth(1)
                    .and_then(|f| f.split('"').next())
                else {
                    continue;
                };
                let (Some(fg), Some(bg)) = (hex(fill), chart) else {
                    continue;
                };
                all.push((
                    format!("{name} <text>"),
                    fill.into(),
                    "svg.chart".into(),
                    ratio(fg, bg),
                ));
            }
        }
        n += all.len();
        for (what, fg, bg, r) in all {
            if r < MIN {
                bad.push(format!("{scheme}: {what}: {fg} on {bg} is {r:.2}:1"));
            }
        }
    }
    (bad, n)
}

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn templates() -> Vec<(String, String)> {
    let mut out = vec![];
    for e in std::fs::read_dir(root().join("templates")).unwrap() {
        let p = e.unwrap().path();
        out.push((
            p.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read_to_string(&p).unwrap(),
        ));
    }
    out
}

#[test]
fn every_text_colour_of_the_console_has_contrast_of_at_least_4_5() {
    let css = std::fs::read_to_string(root().join("src/web/static/rekey.css")).unwrap();
    let (bad, n) = failures(&css, &templates());
    assert!(n >= 20, "only {n} pairs found: the stylesheet was not read");
    assert!(
        bad.is_empty(),
        "text below {MIN}:1 contrast:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_contrast_check_finds_a_bad_colour() {
    // the measure: black on white is 21:1, a colour on itself 1:1, and
    // the WCAG example #777 on white just misses 4.5
    assert!((ratio([0.0; 3], [255.0; 3]) - 21.0).abs() < 1e-9);
    assert!((ratio([119.0; 3], [119.0; 3]) - 1.0).abs() < 1e-9);
    assert!(ratio([119.0; 3], [255.0; 3]) < MIN);
    let css = std::fs::read_to_string(root().join("src/web/static/rekey.css")).unwrap();
    // a muted grey too light, a badge pair, text under the dark header
    // and a dark block's variable: each caught
    for (from, to, caught) in [
        ("--muted:#4f5863", "--muted:#8f98a3", "th"),
        ("--warn:#7a4b00", "--warn:#c08a2a", ".badge.warn"),
        (
            "header.top a{color:#fff}",
            "header.top a{color:#3a4a6d}",
            "header.top a",
        ),
    ] {
        assert!(css.contains(from), "{from} is no longer in the stylesheet");
        let (bad, _) = failures(&css.replace(from, to), &[]);
        assert!(
            bad.iter().any(|b| b.contains(caught)),
            "{to}: not caught: {bad:?}"
        );
    }
    let dark = format!("{css}\n@media (prefers-color-scheme: dark){{:root{{--bg:#5a5f66}}}}");
    let (bad, _) = failures(&dark, &[]);
    assert!(bad.iter().any(|b| b.starts_with("dark: body")), "{bad:?}");
    let svg = vec![(
        "x.html".to_string(),
        "<text fill=\"#bbbbbb\">a</text>".to_string(),
    )];
    let (bad, _) = failures(&css, &svg);
    assert!(bad.iter().any(|b| b.contains("x.html")), "{bad:?}");
}
