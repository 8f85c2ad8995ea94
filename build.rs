//! Embeds the connector catalog (`catalog/*.toml`) into the binary, so
//! `rekey` runs from any directory; the files are validated at start-up.

use std::fmt::Write;

fn main() {
    println!("cargo:rerun-if-changed=catalog");
    let mut files: Vec<_> = std::fs::read_dir("catalog")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = String::from("/// (file name, contents) of every catalog file.\npub static FILES: &[(&str, &str)] = &[\n");
    for p in files {
        println!("cargo:rerun-if-changed={}", p.display());
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let abs = std::fs::canonicalize(&p).unwrap_or(p);
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            abs.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()))
        .join("catalog_files.rs");
    let _ = std::fs::write(dest, out);
}
