//! The layout rules of docs/ARCHITECTURE.md, checked: no import circles
//! between the files of `src/`, and the front-end-independent rooms never
//! name the command line.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_import_circles_between_files() {
    let out = std::process::Command::new("python3")
        .arg(repo().join("scripts/import_cycles.py"))
        .arg(repo().join("src"))
        .output()
        .expect("python3 runs scripts/import_cycles.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("no import circles"), "{text}");
}

#[test]
fn the_checker_finds_a_circle() {
    // The checker itself must be able to fail: two files naming each other.
    let dir = std::env::temp_dir().join(format!("semcon_layout_{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\n").unwrap();
    std::fs::write(
        src.join("a/mod.rs"),
        "pub mod b;\npub struct T;\npub fn f() { b::g() }\n",
    )
    .unwrap();
    std::fs::write(src.join("a/b.rs"), "use super::T;\npub fn g() {}\n").unwrap();
    let out = std::process::Command::new("python3")
        .arg(repo().join("scripts/import_cycles.py"))
        .arg(&src)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("a/b.rs") && text.contains("a/mod.rs"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lower_rooms_never_name_the_command_line() {
    let mut files = Vec::new();
    for room in [
        "src/tui",
        "src/engine",
        "src/data",
        "src/model",
        "src/metrics",
        "src/eval",
    ] {
        rust_files(&repo().join(room), &mut files);
    }
    for f in ["src/session.rs", "src/report.rs"] {
        files.push(repo().join(f));
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains("crate::cli"),
            "{} names crate::cli",
            f.display()
        );
    }
}

#[test]
fn every_source_file_says_what_it_owns() {
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            text.trim_start().starts_with("//!"),
            "{} does not open with a //! comment",
            f.display()
        );
    }
}
