//! `rekey keyring status|rotate|verify|generate`.

use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::args::KeyringCmd;
use super::Out;
use crate::crypto::keyring::{self, KeySource, Keyring};
use crate::crypto::sealed;
use crate::state::Core;

pub fn generate(out: &Out) -> anyhow::Result<()> {
    let key = keyring::generate_key();
    out.emit(&json!({"key": key}), |_| key.clone());
    Ok(())
}

pub async fn run(
    core: &Core,
    out: &Out,
    source: KeySource,
    cmd: KeyringCmd,
) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyringCmd::Generate => generate(out)?,
        KeyringCmd::Status => {
            let counts = sealed::counts(&core.db).await?;
            let ids = core.keyring.key_ids();
            let v = json!({
                "newest_key": core.keyring.newest_id(),
                "configured_keys": ids,
                "ciphertexts": counts,
                "pending": counts.iter().filter(|c| c.key_id != core.keyring.newest_id()).map(|c| c.count).sum::<i64>(),
            });
            out.emit(&v, |_| {
                let mut s = format!(
                    "newest key: {}\nconfigured keys: {}\n",
                    core.keyring.newest_id(),
                    ids.join(", ")
                );
                for c in &counts {
                    let note = if c.key_id == core.keyring.newest_id() {
                        ""
                    } else if ids.contains(&c.key_id) {
                        "  (needs rotation)"
                    } else {
                        "  (KEY NOT CONFIGURED)"
                    };
                    s.push_str(&format!("{}: {} ciphertexts{note}\n", c.key_id, c.count));
                }
                s
            });
        }
        KeyringCmd::Verify => {
            let (checked, failures) = sealed::verify_all(&core.db, &core.keyring).await?;
            out.emit(&json!({"checked": checked, "failures": failures}), |_| {
                let mut s = format!("{checked} ciphertexts checked, {} failed", failures.len());
                for f in &failures {
                    s.push_str(&format!("\n  {f}"));
                }
                s
            });
            if !failures.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        KeyringCmd::Rotate {
            generate,
            batch_size,
            pause,
            remove_old,
        } => {
            return rotate(
                core,
                out,
                source,
                generate,
                batch_size.max(1),
                pause,
                remove_old,
            )
            .await
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn key_file_of(source: &KeySource) -> Option<&std::path::Path> {
    match source {
        KeySource::File(p) | KeySource::Generated(p) => Some(p),
        KeySource::Environment => None,
    }
}

async fn rotate(
    core: &Core,
    out: &Out,
    source: KeySource,
    generate: bool,
    batch_size: i64,
    pause: Option<crate::config::Dur>,
    remove_old: bool,
) -> anyhow::Result<ExitCode> {
    let mut keyring = core.keyring.clone();
    if generate {
        let Some(path) = key_file_of(&source) else {
            anyhow::bail!("--generate needs a key file; with REKEY_MASTER_KEY, put a new key (rekey keyring generate) first in the list");
        };
        let existing = std::fs::read_to_string(path)?;
        let new_key = keyring::generate_key();
        keyring::write_key_file(path, &format!("{new_key}\n{}", strip_comments(&existing)))?;
        keyring = Keyring::parse(&std::fs::read_to_string(path)?)?;
        eprintln!(
            "generated key {} at the front of {}",
            keyring.newest_id(),
            path.display()
        );
    }
    let total = sealed::pending(&core.db, &keyring).await?;
    let bar = if out.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(total as u64);
        b.set_style(
            ProgressStyle::with_template(
                "re-encrypting {bar:40} {pos}/{len} ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };
    let progress = Progress {
        bar,
        json: out.json,
        total,
    };
    let mut done = reencrypt(core, &keyring, batch_size, pause, &progress, 0).await?;
    let newest = keyring.newest_id();
    let old: Vec<String> = keyring
        .key_ids()
        .into_iter()
        .filter(|k| *k != newest)
        .collect();
    let mut removed = false;
    if remove_old && !old.is_empty() {
        let Some(path) = key_file_of(&source) else {
            anyhow::bail!("--remove-old edits the key file; with REKEY_MASTER_KEY, remove the old keys from the variable yourself");
        };
        // A running server seals under the new key once it sees the file
        // change, but a transaction that sealed under the old key just
        // before may commit after the pass above: let those land and take
        // them too before the old key goes.
        tokio::time::sleep(REMOVE_SETTLE).await;
        done += reencrypt(core, &keyring, batch_size, None, &progress, done).await?;
        let text = std::fs::read_to_string(path)?;
        let first = strip_comments(&text)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        keyring::write_key_file(path, &first)?;
        removed = true;
    }
    progress.bar.finish_and_clear();
    let where_ = match &source {
        KeySource::Environment => "REKEY_MASTER_KEY".to_string(),
        KeySource::File(p) | KeySource::Generated(p) => p.display().to_string(),
    };
    out.emit(
        &json!({"rotated": done, "newest_key": newest, "old_keys": old, "old_keys_removed": removed, "done": true}),
        |_| {
            let mut s = format!("re-encrypted {done} ciphertexts; every secret is now under key {newest}.");
            if removed {
                s.push_str(&format!("\nremoved old keys {} from {where_}.", old.join(", ")));
            } else if !old.is_empty() {
                s.push_str(&format!(
                    "\nno ciphertext uses key(s) {} any more: you may now remove them from {where_}.",
                    old.join(", ")
                ));
            }
            s
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// The progress bar (hidden with `--json`, which prints progress lines).
struct Progress {
    bar: ProgressBar,
    json: bool,
    total: i64,
}

/// How long `--remove-old` waits for writes sealed under the old key by
/// servers that had not yet seen the new key file.
const REMOVE_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Re-encrypts every ciphertext not under `keyring`'s newest key, in
/// batches; returns how many it re-encrypted.
async fn reencrypt(
    core: &Core,
    keyring: &Keyring,
    batch_size: i64,
    pause: Option<crate::config::Dur>,
    progress: &Progress,
    before: i64,
) -> anyhow::Result<i64> {
    let mut done = before;
    loop {
        let n = sealed::rotate_batch(&core.db, keyring, batch_size).await? as i64;
        if n == 0 {
            // Rows changed concurrently are skipped by the compare-and-set;
            // stop only when nothing is left under an old key.
            if sealed::pending(&core.db, keyring).await? == 0 {
                break;
            }
            continue;
        }
        done += n;
        progress.bar.set_position(done as u64);
        if progress.json {
            eprintln!(
                "{}",
                json!({"progress": {"done": done, "total": progress.total}})
            );
        }
        if let Some(p) = pause {
            tokio::time::sleep(p.0).await;
        }
    }
    Ok(done - before)
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}
