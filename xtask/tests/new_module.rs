//! `cargo xtask new-module` on a copy of this workspace: the module it creates is
//! registered everywhere, and at once builds, passes clippy, its own tests on every
//! engine, the app's OpenAPI tests and the architecture test.
//!
//! The copy builds into this workspace's `target/`, so that only the changed crates
//! compile. Its `migrations` differs from ours under the same package id, so the copy
//! builds it with another profile setting: then no crate built from the copy has the
//! hash of one built from here (else cargo would take one for the other by mtime).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The workspace root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The target directory this test was built in (`…/target/debug/deps/new_module-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_owned()
}

/// The copy's own build setting for `migrations` (see the top of this file).
const SEPARATE_BUILD: &str = "\n[profile.dev.package.migrations]\ncodegen-units = 255\n";

/// What a copy of the workspace leaves out: builds, history, the app's data.
const NOT_SOURCES: [&str; 3] = ["target", ".git", "data"];

/// Copies the workspace's sources (not `target/`, `.git/` or `data/`) to `to`, keeping
/// modification times so that cargo sees the unchanged crates as unchanged.
fn copy_sources(from: &Path, to: &Path, top: bool) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if top && NOT_SOURCES.iter().any(|skip| name == *skip) {
            continue;
        }
        let kind = entry.file_type().unwrap();
        let dest = to.join(&name);
        if kind.is_dir() {
            copy_sources(&entry.path(), &dest, false);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dest).unwrap();
            let modified = entry.metadata().unwrap().modified().unwrap();
            std::fs::File::options()
                .write(true)
                .open(&dest)
                .unwrap()
                .set_modified(modified)
                .unwrap();
        }
    }
}

/// Every file under `dir` (relative, sorted), with its contents.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, top: bool, into: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if top && NOT_SOURCES.iter().any(|skip| name == *skip) {
                continue;
            }
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, false, into);
            } else {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                into.push((relative, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, dir, true, &mut found);
    found.sort();
    found
}

/// A command whose environment is this process's without what cargo sets for a test
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …): a build script that watches one of them
/// would otherwise rerun, and rebuild much of the workspace's build for nothing.
fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" {
            command.env_remove(key.as_ref());
        }
    }
    command.env("CARGO_TARGET_DIR", target_dir());
    command
}

/// Runs `cargo args…` in `dir` on the shared target directory; panics with its output
/// unless it succeeds.
fn cargo(dir: &Path, args: &[&str]) {
    let began = Instant::now();
    let output = command(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "`cargo {}` failed in the copy:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("cargo {}: {:.1?}", args.join(" "), began.elapsed());
}

fn new_module(dir: &Path, args: &[&str]) -> std::process::Output {
    command(env!("CARGO_BIN_EXE_xtask"))
        .arg("new-module")
        .args(args)
        .args(["--root".as_ref(), dir.as_os_str()])
        .output()
        .unwrap()
}

#[test]
fn a_new_module_is_registered_and_passes_its_checks_at_once() {
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("workspace");
    copy_sources(&workspace(), &copy, true);
    let config = copy.join(".cargo/config.toml");
    let mut settings = std::fs::read_to_string(&config).unwrap();
    settings.push_str(SEPARATE_BUILD);
    std::fs::write(&config, settings).unwrap();
    let before = files(&copy);

    let made = command(env!("CARGO_BIN_EXE_xtask"))
        .args(["new-module", "loyalty", "--root"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    // What changed: new files under the module's paths, one line in each list, the
    // document, and the lock file (which cargo updates).
    let after = files(&copy);
    let edited: Vec<&str> = after
        .iter()
        .filter(|(path, text)| before.iter().any(|(p, t)| p == path && t != text))
        .map(|(path, _)| path.as_str())
        .collect();
    assert_eq!(
        edited,
        [
            "Cargo.lock",
            "Cargo.toml",
            "apps/switchyard/Cargo.toml",
            "apps/switchyard/openapi.json",
            "apps/switchyard/src/http/mod.rs",
            "crates/workflows/Cargo.toml",
            "migrations/src/lib.rs",
        ]
    );
    let created: Vec<&str> = after
        .iter()
        .filter(|(path, _)| !before.iter().any(|(p, _)| p == path))
        .map(|(path, _)| path.as_str())
        .collect();
    assert!(
        created
            .iter()
            .all(|path| path.starts_with("crates/loyalty/")
                || path.starts_with("migrations/src/loyalty/")
                || *path == "apps/switchyard/src/http/loyalty.rs"),
        "{created:?}"
    );
    let openapi = std::fs::read_to_string(copy.join("apps/switchyard/openapi.json")).unwrap();
    assert!(openapi.contains("/api/loyalty/items/{id}"), "{openapi}");

    cargo(&copy, &["test", "-p", "loyalty"]);
    cargo(
        &copy,
        &[
            "clippy",
            "-p",
            "loyalty",
            "-p",
            "migrations",
            "-p",
            "workflows",
            "-p",
            "switchyard",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    );
    cargo(&copy, &["fmt", "--all", "--check"]);
    // The router and the document agree, the committed document is current, and
    // the new routes refuse callers without a session or without their ability.
    cargo(&copy, &["test", "-p", "switchyard", "--lib", "http::"]);
    cargo(
        &copy,
        &["test", "-p", "tests", "--test", "tests", "architecture"],
    );

    // Run again, the module exists: refused, nothing written.
    let again = new_module(&copy, &["loyalty", "--no-openapi"]);
    assert!(!again.status.success());
    let message = String::from_utf8_lossy(&again.stderr);
    assert!(message.contains("module `loyalty` exists"), "{message}");
    assert_eq!(files(&copy), after);
}

#[test]
fn a_bad_or_taken_name_is_refused_before_anything_is_written() {
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("workspace");
    copy_sources(&workspace(), &copy, true);
    let before = files(&copy);
    // As `cargo xtask` runs it, without --root: in the workspace cargo names at run
    // time (`CARGO_MANIFEST_DIR`), not the one the binary was built in.
    let output = command(env!("CARGO_BIN_EXE_xtask"))
        .args(["new-module", "inventory", "--no-openapi"])
        .env("CARGO_MANIFEST_DIR", copy.join("xtask"))
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("module `inventory` exists"), "{message}");
    let output = command(env!("CARGO_BIN_EXE_xtask"))
        .args(["new-module", "inventory", "--no-openapi"])
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("run it as `cargo xtask …`"), "{message}");
    for (name, says) in [
        ("Loyalty", "is not a module name"),
        ("loyalty-points", "is not a module name"),
        ("inventory", "module `inventory` exists"),
        ("products", "module `products` exists"),
        ("outbox", "is reserved"),
        ("tokio", "already a dependency of the workspace"),
    ] {
        let output = new_module(&copy, &[name, "--no-openapi"]);
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}: {message}");
        assert!(message.contains(says), "{name}: {message}");
    }
    assert_eq!(files(&copy), before);
}
