//! `cargo xtask new-module NAME`: creates a domain crate with its migrations, HTTP routes
//! and tests, and registers it everywhere the workspace lists modules.

mod new_module;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask new-module NAME [--root DIR] [--no-openapi]

  NAME          the module: its crate, boundary and schema (lowercase letters, digits
                and `_`, starting with a letter)
  --root DIR    the workspace to change (default: the one `cargo xtask` runs in)
  --no-openapi  do not rewrite apps/switchyard/openapi.json (which builds the app)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace `cargo xtask` runs in: `cargo run` sets `CARGO_MANIFEST_DIR` to
/// `<workspace>/xtask` at run time. Not the directory the binary was compiled in
/// (`env!`): one build may serve several checkouts that share a target directory.
fn invoking_workspace() -> Result<PathBuf, String> {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .and_then(|xtask| xtask.parent().map(PathBuf::from))
        .ok_or_else(|| {
            format!("run it as `cargo xtask …`, or name the workspace with --root\n\n{USAGE}")
        })
}

fn run(args: &[String]) -> Result<(), String> {
    let mut args = args.iter();
    match args.next().map(String::as_str) {
        Some("new-module") => {}
        Some("-h" | "--help") | None => return Err(USAGE.to_owned()),
        Some(other) => return Err(format!("unknown task `{other}`\n\n{USAGE}")),
    }
    let mut name = None;
    let mut root = None;
    let mut openapi = true;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--root" => {
                let dir = args
                    .next()
                    .ok_or_else(|| format!("--root needs a directory\n\n{USAGE}"))?;
                root = Some(PathBuf::from(dir));
            }
            "--no-openapi" => openapi = false,
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option `{flag}`\n\n{USAGE}"));
            }
            value if name.is_none() => name = Some(value.to_owned()),
            value => return Err(format!("unexpected argument `{value}`\n\n{USAGE}")),
        }
    }
    let name = name.ok_or_else(|| format!("the module needs a NAME\n\n{USAGE}"))?;
    let root = match root {
        Some(root) => root,
        None => invoking_workspace()?,
    };
    let created = new_module::create(&root, &name, chrono::Utc::now().date_naive())?;
    let mut out = format!("created module `{name}`:\n");
    for path in &created.files {
        out.push_str(&format!("  new     {path}\n"));
    }
    for path in &created.registered_in {
        out.push_str(&format!("  edited  {path}\n"));
    }
    eprint!("{out}");
    if openapi {
        new_module::write_openapi(&root)?;
        eprintln!("  rewrote apps/switchyard/openapi.json");
    }
    eprintln!(
        "\nnext: `cargo test -p {name}`; the table is in migrations/src/{name}/ and \
         crates/{name}/src/entities/, the routes in apps/switchyard/src/http/{name}.rs"
    );
    Ok(())
}
