//! Creating a module: render the templates under `xtask/templates/` into new files, then
//! add the module's line to each list the workspace composes modules from. Each list
//! ends with a marker comment naming this task; the new line goes above it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::NaiveDate;

/// What `create` did, as workspace-relative paths.
#[derive(Debug)]
pub(crate) struct Created {
    pub(crate) files: Vec<String>,
    pub(crate) registered_in: Vec<String>,
}

/// A template and where it goes; `{{name}}` and `{{migration}}` are replaced.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "crates/{{name}}/Cargo.toml",
        include_str!("../templates/crate/Cargo.toml"),
    ),
    (
        "crates/{{name}}/src/lib.rs",
        include_str!("../templates/crate/src/lib.rs"),
    ),
    (
        "crates/{{name}}/src/error.rs",
        include_str!("../templates/crate/src/error.rs"),
    ),
    (
        "crates/{{name}}/src/events.rs",
        include_str!("../templates/crate/src/events.rs"),
    ),
    (
        "crates/{{name}}/src/items.rs",
        include_str!("../templates/crate/src/items.rs"),
    ),
    (
        "crates/{{name}}/src/entities/mod.rs",
        include_str!("../templates/crate/src/entities/mod.rs"),
    ),
    (
        "crates/{{name}}/src/entities/items.rs",
        include_str!("../templates/crate/src/entities/items.rs"),
    ),
    (
        "crates/{{name}}/tests/it/main.rs",
        include_str!("../templates/crate/tests/it/main.rs"),
    ),
    (
        "migrations/src/{{name}}/mod.rs",
        include_str!("../templates/migrations/mod.rs"),
    ),
    (
        "migrations/src/{{name}}/{{migration}}.rs",
        include_str!("../templates/migrations/migration.rs"),
    ),
    (
        "apps/switchyard/src/http/{{name}}.rs",
        include_str!("../templates/http.rs"),
    ),
];

/// A list the module joins: the file, the marker line's text, and the line to add above
/// it (`{{name}}` replaced).
const REGISTRATIONS: &[(&str, &str, &str)] = &[
    (
        "Cargo.toml",
        "# cargo xtask new-module: internal crates above this line.",
        "{{name}} = { path = \"crates/{{name}}\" }",
    ),
    (
        "migrations/src/lib.rs",
        "// cargo xtask new-module: boundaries above this line.",
        "{{name}},",
    ),
    (
        "apps/switchyard/Cargo.toml",
        "# cargo xtask new-module: modules above this line.",
        "{{name}}.workspace = true",
    ),
    (
        "apps/switchyard/src/http/mod.rs",
        "// cargo xtask new-module: routes above this line.",
        "{{name}}::routes,",
    ),
    (
        "apps/switchyard/src/http/mod.rs",
        "// cargo xtask new-module: route files above this line.",
        "mod {{name}};",
    ),
    (
        "crates/workflows/Cargo.toml",
        "# cargo xtask new-module: modules above this line.",
        "{{name}}.workspace = true",
    ),
];

/// Names a module cannot have: Rust keywords, the workspace's other crates, SQLite's own
/// schema names, and crates every module uses.
const RESERVED: &[&str] = &[
    "abstract",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "alloc",
    "core",
    "std",
    "proc_macro",
    "test",
    "main",
    "temp",
    "orchestration",
    "outbox",
    "workflows",
    "migrations",
    "switchyard",
    "tests",
    "benches",
    "xtask",
    "workspace_hack",
    "error",
    "page",
    "health",
    "metrics",
    "openapi",
    "ops",
    "server",
];

/// Checks that `name` can name a crate, a Rust module and a schema on every backend.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !starts_with_letter || !rest_ok || name.len() > 40 {
        return Err(format!(
            "`{name}` is not a module name: use 1 to 40 lowercase letters, digits and `_`, \
             starting with a letter (it names the crate, the Rust module and the schema)"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "`{name}` is reserved (a Rust keyword, a crate of the workspace, or a name \
             SQLite or the app already uses)"
        ));
    }
    Ok(())
}

fn render(template: &str, name: &str, migration: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{migration}}", migration)
}

/// `text` with `line` added above the line holding `marker`, at its indentation.
fn insert_above(text: &str, marker: &str, line: &str) -> Option<String> {
    let at = text.find(marker)?;
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let indent = &text[line_start..at];
    let mut out = String::with_capacity(text.len() + line.len() + indent.len() + 1);
    out.push_str(&text[..line_start]);
    let _ = writeln!(out, "{indent}{line}");
    out.push_str(&text[line_start..]);
    Some(out)
}

/// Creates module `name` in the workspace at `root`: nothing is written unless every
/// check passes and every list is found.
pub(crate) fn create(root: &Path, name: &str, today: NaiveDate) -> Result<Created, String> {
    check_name(name)?;
    let migration = format!("m{}_000001_items", today.format("%Y%m%d"));
    let files: Vec<(String, String)> = TEMPLATES
        .iter()
        .map(|(path, template)| {
            (
                render(path, name, &migration),
                render(template, name, &migration),
            )
        })
        .collect();
    for existing in [format!("crates/{name}"), format!("migrations/src/{name}")]
        .into_iter()
        .chain(files.iter().map(|(path, _)| path.clone()))
    {
        if root.join(&existing).exists() {
            return Err(format!(
                "module `{name}` exists: {existing} is already there"
            ));
        }
    }
    let manifest = read(root, "Cargo.toml")?;
    if manifest.lines().any(|line| {
        line.trim_start().starts_with(&format!("{name} ="))
            || line.trim_start().starts_with(&format!("{name}."))
    }) {
        return Err(format!(
            "`{name}` is already a dependency of the workspace (Cargo.toml)"
        ));
    }
    // Every edit, computed before anything is written.
    let mut edited: Vec<(String, String)> = Vec::new();
    for (path, marker, line) in REGISTRATIONS {
        let current = match edited.iter().position(|(p, _)| p == path) {
            Some(i) => edited.remove(i).1,
            None => read(root, path)?,
        };
        let updated = insert_above(&current, marker, &render(line, name, &migration))
            .ok_or_else(|| format!("{path} has lost its marker line `{marker}`"))?;
        edited.push(((*path).to_owned(), updated));
    }
    for (path, text) in files.iter().chain(&edited) {
        let target = root.join(path);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        std::fs::write(&target, text).map_err(|e| format!("write {path}: {e}"))?;
    }
    let rust: Vec<PathBuf> = files
        .iter()
        .chain(&edited)
        .filter(|(path, _)| path.ends_with(".rs"))
        .map(|(path, _)| root.join(path))
        .collect();
    rustfmt(&rust)?;
    Ok(Created {
        files: files.into_iter().map(|(path, _)| path).collect(),
        registered_in: edited.into_iter().map(|(path, _)| path).collect(),
    })
}

fn read(root: &Path, path: &str) -> Result<String, String> {
    std::fs::read_to_string(root.join(path)).map_err(|e| format!("read {path}: {e}"))
}

/// Formats `files` (and, as rustfmt does, the modules they declare) as `cargo fmt` would.
fn rustfmt(files: &[PathBuf]) -> Result<(), String> {
    let status = Command::new("rustfmt")
        .args(["--edition", "2024"])
        .args(files)
        .status()
        .map_err(|e| format!("run rustfmt: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("rustfmt failed ({status})"))
    }
}

/// Rewrites the committed OpenAPI document from the app, which now serves the module's
/// routes.
pub(crate) fn write_openapi(root: &Path) -> Result<(), String> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["run", "--quiet", "-p", "switchyard", "--", "openapi"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo run -p switchyard -- openapi` failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    std::fs::write(root.join("apps/switchyard/openapi.json"), output.stdout)
        .map_err(|e| format!("write apps/switchyard/openapi.json: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_name_a_crate_module_and_schema_are_refused() {
        for bad in [
            "",
            "Loyalty",
            "1st",
            "_x",
            "loyalty-points",
            "lo yalty",
            "ünï",
            "fn",
            "main",
            "outbox",
            "health",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["loyalty", "loyalty_points", "v2"] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn a_line_goes_above_its_marker_at_its_indentation() {
        let text = "list![\n    a,\n    // marker\n];\n";
        assert_eq!(
            insert_above(text, "// marker", "b,").as_deref(),
            Some("list![\n    a,\n    b,\n    // marker\n];\n")
        );
        assert_eq!(insert_above(text, "// gone", "b,"), None);
    }
}
