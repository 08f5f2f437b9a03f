//! Architecture verification, the equivalent of Spring Modulith's `verify()`: from
//! `cargo metadata`, which internal crate may depend on which; and from the sources,
//! that every SeaORM entity of crate X lives in schema X.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Infrastructure crates; every other crate under `crates/` is a domain crate.
const ORCHESTRATION: &str = "orchestration";
const WORKFLOWS: &str = "workflows";
const MIGRATIONS: &str = "migrations";

/// Internal crates and their internal normal/build dependencies (dev-dependencies are
/// for tests and excepted), keyed by name, with each crate's directory.
#[derive(Debug, Default)]
struct Graph {
    dirs: BTreeMap<String, PathBuf>,
    edges: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    fn from_metadata(metadata: &Value) -> Self {
        let packages = metadata["packages"].as_array().expect("packages");
        let members: BTreeSet<&str> = packages
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let mut graph = Self::default();
        for package in packages {
            let name = package["name"].as_str().unwrap().to_owned();
            let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap());
            graph
                .dirs
                .insert(name.clone(), manifest.parent().unwrap().to_owned());
            let deps = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().unwrap())
                .filter(|d| members.contains(d))
                .map(str::to_owned)
                .collect();
            graph.edges.insert(name, deps);
        }
        graph
    }

    /// Domain crates: under `crates/`, other than orchestration and workflows.
    fn domain_crates(&self) -> Vec<&str> {
        self.dirs
            .iter()
            .filter(|(name, dir)| {
                dir.parent()
                    .and_then(Path::file_name)
                    .is_some_and(|d| d == "crates")
                    && ![ORCHESTRATION, WORKFLOWS].contains(&name.as_str())
            })
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Every edge that breaks a rule, as a sentence.
    fn violations(&self) -> Vec<String> {
        let domains = self.domain_crates();
        let mut found = Vec::new();
        for (from, deps) in &self.edges {
            for to in deps {
                let allowed = match from.as_str() {
                    f if domains.contains(&f) => false,
                    ORCHESTRATION => false,
                    MIGRATIONS => to == ORCHESTRATION,
                    WORKFLOWS => to == ORCHESTRATION || domains.contains(&to.as_str()),
                    // The app and the tests compose everything.
                    _ => true,
                };
                if !allowed {
                    found.push(format!("`{from}` must not depend on `{to}`"));
                }
            }
        }
        found
    }
}

fn metadata() -> Value {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn crates_depend_only_as_the_architecture_allows() {
    let graph = Graph::from_metadata(&metadata());
    let domains = graph.domain_crates();
    assert!(
        domains.contains(&"inventory") && domains.contains(&"orders"),
        "{domains:?}"
    );
    assert_eq!(graph.violations(), Vec::<String>::new());
}

#[test]
fn a_forbidden_edge_is_caught() {
    let mut metadata = metadata();
    // Make `orders` depend on `inventory`, and `orchestration` on `workflows`.
    for package in metadata["packages"].as_array_mut().unwrap() {
        let extra = match package["name"].as_str().unwrap() {
            "orders" => "inventory",
            ORCHESTRATION => WORKFLOWS,
            _ => continue,
        };
        let edge = serde_json::json!({"name": extra, "kind": null});
        package["dependencies"].as_array_mut().unwrap().push(edge);
    }
    let violations = Graph::from_metadata(&metadata).violations();
    assert_eq!(
        violations,
        vec![
            "`orchestration` must not depend on `workflows`".to_owned(),
            "`orders` must not depend on `inventory`".to_owned(),
        ]
    );
}

/// The schema each `DeriveEntityModel` in `source` declares (`None` where it declares
/// none), with the entity's line number.
fn entity_schemas(source: &str) -> Vec<(usize, Option<String>)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.contains("DeriveEntityModel") {
            continue;
        }
        // The `#[sea_orm(...)]` attribute follows the derive, before the struct.
        let attribute: String = lines[i..]
            .iter()
            .take_while(|l| !l.contains("struct "))
            .copied()
            .collect();
        let schema = attribute
            .split("schema_name")
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1))
            .map(str::to_owned);
        found.push((i + 1, schema));
    }
    found
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

#[test]
fn every_entity_of_crate_x_lives_in_schema_x() {
    let graph = Graph::from_metadata(&metadata());
    let mut entities = 0;
    let mut wrong = Vec::new();
    for (name, dir) in &graph.dirs {
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            for (line, schema) in entity_schemas(&source) {
                entities += 1;
                if schema.as_deref() != Some(name.as_str()) {
                    wrong.push(format!(
                        "{}:{line} declares schema {schema:?}, expected \"{name}\"",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(
        entities >= 5,
        "found only {entities} entities; is the scan looking in the right place?"
    );
    assert_eq!(wrong, Vec::<String>::new());
}

#[test]
fn an_entity_in_the_wrong_schema_is_caught() {
    let source = r#"
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "inventory", table_name = "stock")]
pub struct Model {}

#[derive(Clone, Debug, DeriveEntityModel)]
#[sea_orm(table_name = "loose")]
pub struct Model {}
"#;
    assert_eq!(
        entity_schemas(source),
        vec![(2, Some("inventory".to_owned())), (6, None)]
    );
}

/// Every package `cargo tree <selection>` builds, by `name vX.Y.Z`, with each feature
/// set it is built with (a package built for the host and the target may have two).
fn features(selection: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let output = Command::new(env!("CARGO"))
        .arg("tree")
        .args(selection)
        .args([
            "-e",
            "normal,dev,build",
            "--prefix",
            "none",
            "-f",
            "{p}|{f}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some((package, features)) = line.trim_end_matches(" (*)").split_once('|') else {
            continue;
        };
        let package = package.split(" (").next().unwrap_or(package).to_owned();
        found
            .entry(package)
            .or_default()
            .insert(features.to_owned());
    }
    found
}

/// `cargo test -p <module>` after `cargo test --workspace` must reuse the workspace's
/// build: a shared dependency built with other features is rebuilt, with everything
/// above it (tokio without `test-util` meant sqlx and sea-orm again, two minutes).
/// `crates/workspace-hack` turns the workspace's features on for every module's tests.
#[test]
fn a_module_tested_alone_reuses_the_workspace_build() {
    let graph = Graph::from_metadata(&metadata());
    let workspace = features(&["--workspace"]);
    let mut modules: Vec<&str> = graph
        .domain_crates()
        .into_iter()
        .filter(|name| *name != "workspace-hack")
        .collect();
    modules.extend([ORCHESTRATION, WORKFLOWS]);
    let mut found = Vec::new();
    for module in modules {
        for (package, sets) in features(&["-p", module]) {
            let everywhere = workspace.get(&package).cloned().unwrap_or_default();
            for features in sets.difference(&everywhere) {
                found.push(format!(
                    "`cargo test -p {module}` builds {package} with [{features}], which the \
                     workspace build does not: add it to crates/workspace-hack/Cargo.toml"
                ));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// A module's name is written once, as its crate's: its `SCHEMA` is the crate's name
/// (`env!("CARGO_PKG_NAME")`), and `migrations` registers exactly one boundary per domain
/// crate, under the crate's name.
#[test]
fn every_domain_crate_has_the_boundary_of_its_name_and_no_boundary_lacks_one() {
    let graph = Graph::from_metadata(&metadata());
    let crates: BTreeSet<String> = graph
        .domain_crates()
        .into_iter()
        .filter(|name| *name != "workspace-hack")
        .map(str::to_owned)
        .collect();
    let boundaries: BTreeSet<String> = migrations::all()
        .iter()
        .map(|b| b.name().to_owned())
        .filter(|name| name != ORCHESTRATION)
        .collect();
    assert_eq!(crates, boundaries);
}
