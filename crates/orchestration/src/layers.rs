//! The crate's layers, checked against its sources: every top-level module imports
//! only modules placed before it in [`LAYERS`], so the modules form no cycle and no
//! layer reaches up into one above it. A new module must be placed here to compile its
//! tests.

use std::collections::BTreeMap;
use std::path::Path;

/// The layers from the bottom up, each with its modules in the order they may import
/// each other: a module may use any module listed before it, and none after.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &["fault", "future", "clock", "backoff", "failure", "boundary"],
    ),
    (
        "databases",
        &[
            "topology",
            "error",
            "sql",
            "database",
            "migrate",
            "schema",
            "instance",
            "databases",
        ],
    ),
    ("worker host", &["host"]),
    (
        "units of work",
        &["outbox", "batch", "two_phase", "unit_of_work", "import"],
    ),
    ("delivering events", &["dispatch"]),
    ("sagas", &["saga"]),
    ("composition", &["fabric", "testing"]),
];

/// Every import that breaks the layering, as a sentence. `sources` maps each top-level
/// module to the text of its files.
fn violations(sources: &BTreeMap<String, String>) -> Vec<String> {
    let order: Vec<&str> = LAYERS.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    let position = |module: &str| order.iter().position(|m| *m == module);
    let layer_of = |module: &str| {
        LAYERS
            .iter()
            .find(|(_, modules)| modules.contains(&module))
            .map_or("?", |(layer, _)| layer)
    };
    let mut found = Vec::new();
    for (module, text) in sources {
        let Some(at) = position(module) else {
            found.push(format!(
                "module `{module}` is in no layer: place it in `LAYERS` (src/layers.rs)"
            ));
            continue;
        };
        for target in imports(text) {
            if target == *module {
                continue;
            }
            match position(&target) {
                Some(to) if to < at => {}
                Some(_) => found.push(format!(
                    "`{module}` ({}) imports `{target}` ({}), which is not below it",
                    layer_of(module),
                    layer_of(&target)
                )),
                None => found.push(format!(
                    "`{module}` imports `crate::{target}`, which is no module: import items \
                     from the module that defines them"
                )),
            }
        }
    }
    found
}

/// The first segment of every `crate::…` path in `text`, outside comments; for a
/// group (`crate::{a, b::c}`), each member's.
fn imports(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let members = group.split('}').next().unwrap_or_default();
                found.extend(
                    members
                        .split(',')
                        .map(|m| first_segment(m.trim()))
                        .filter(|m| !m.is_empty()),
                );
            } else {
                let segment = first_segment(rest);
                // `$crate::engine_tests!` names a macro, not a module.
                if !rest[segment.len()..].starts_with('!') {
                    found.push(segment);
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The text of every file of each top-level module declared in `src/lib.rs`, but this
/// one (whose tests plant imports in strings).
fn read_sources(src: &Path) -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    let mut sources = BTreeMap::new();
    for line in lib.lines() {
        let line = line.trim();
        let Some(declared) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
        else {
            continue;
        };
        let module = declared.trim_end_matches(';').to_owned();
        if module == "layers" {
            continue;
        }
        let mut text = String::new();
        let file = src.join(format!("{module}.rs"));
        if file.exists() {
            text.push_str(&std::fs::read_to_string(&file).expect("read a module"));
        }
        let dir = src.join(&module);
        if dir.is_dir() {
            let mut stack = vec![dir];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).expect("list a module") {
                    let path = entry.expect("a directory entry").path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if path.extension().is_some_and(|e| e == "rs") {
                        text.push_str(&std::fs::read_to_string(&path).expect("read a module"));
                    }
                }
            }
        }
        sources.insert(module, text);
    }
    sources
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let sources = read_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(
        sources.len() > 20,
        "found the modules: {:?}",
        sources.keys()
    );
    let found = violations(&sources);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn an_upward_import_is_found() {
    let planted = |module: &str, text: &str| {
        let mut sources = read_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
        sources.get_mut(module).expect("a module").push_str(text);
        violations(&sources)
    };
    assert_eq!(
        planted("clock", "\nuse crate::fabric::Fabric;\n"),
        ["`clock` (foundation) imports `fabric` (composition), which is not below it"]
    );
    assert_eq!(
        planted(
            "unit_of_work",
            "\nfn f() { crate::{dispatch::Dispatcher, saga::Saga}; }\n"
        ),
        [
            "`unit_of_work` (units of work) imports `dispatch` (delivering events), which is not below it",
            "`unit_of_work` (units of work) imports `saga` (sagas), which is not below it",
        ]
    );
    // Within a layer too: the order forbids a cycle.
    assert_eq!(
        planted("topology", "\nuse crate::database::Database;\n"),
        ["`topology` (databases) imports `database` (databases), which is not below it"]
    );
    // A root re-export hides the module it comes from.
    assert_eq!(
        planted("outbox", "\nuse crate::Fabric;\n"),
        [
            "`outbox` imports `crate::Fabric`, which is no module: import items from the module that defines them"
        ]
    );
    // Comments and other crates' paths do not count.
    assert!(planted("clock", "\n// see crate::fabric\nuse sea_orm::crate::x;\n").is_empty());
}
