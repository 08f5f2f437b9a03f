//! The README's Rust blocks are compiled: each one must appear, line for line, as the
//! visible lines of a doctest in `crates/workflows/src/readme.rs`, which `cargo test`
//! compiles against today's API.

use std::path::Path;

/// The fenced blocks of `markdown` whose info string is `lang`, as lines.
fn blocks(markdown: &str, lang: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) if info.split_whitespace().next() == Some(lang) => {
                current = Some(Vec::new());
            }
            (Some(_), Some(_)) => found.extend(current.take()),
            (Some(block), None) => block.push(line.to_owned()),
            (None, _) => {}
        }
    }
    found
}

/// The visible lines of every doctest in a Rust file's `//!` docs: rustdoc hides a
/// line whose first non-blank characters are `# ` (or that is `#` alone).
fn doctests(source: &str) -> Vec<Vec<String>> {
    let docs: String = source
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .map(|line| format!("{line}\n"))
        .collect();
    let mut found = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in docs.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(block) => found.push(block),
                None => current = Some(Vec::new()),
            }
            continue;
        }
        if let Some(block) = &mut current {
            let code = line.trim_start();
            if code != "#" && !code.starts_with("# ") {
                block.push(line.to_owned());
            }
        }
    }
    found
}

#[test]
fn every_rust_block_of_the_readme_is_a_doctest() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let compiled = std::fs::read_to_string(root.join("crates/workflows/src/readme.rs")).unwrap();
    let readme_blocks = blocks(&readme, "rust");
    let compiled_blocks = doctests(&compiled);
    assert!(readme_blocks.len() >= 3, "{readme_blocks:?}");
    for block in &readme_blocks {
        assert!(
            compiled_blocks.contains(block),
            "this README block is not compiled: add it to crates/workflows/src/readme.rs\n{}",
            block.join("\n")
        );
    }
}

#[test]
fn a_block_that_differs_from_its_doctest_is_found() {
    let readme = "intro\n```rust\nlet a = 1;\n```\n```sh\nls\n```\n";
    let compiled = "//! ```\n//! # let hidden = 0;\n//! let a = 1;\n//! ```\n";
    assert_eq!(blocks(readme, "rust"), doctests(compiled));
    let changed = "```rust\nlet a = 2;\n```\n";
    assert_ne!(blocks(changed, "rust"), doctests(compiled));
}
