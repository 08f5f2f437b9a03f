//! Cross-module tests: the HTTP API end to end, the kill tests (SQLite, two-phase
//! commit, the outbox, the placement saga) and the architecture rules.

mod architecture;
mod e2e;
mod feeds;
mod identity;
mod kill;
mod load;
mod outbox_kill;
mod placement;
mod readme;
mod refunds;
mod saga_kill;
mod two_phase_kill;

/// Runs `order-loop` with `args` until it freezes at pause point `point` for the
/// `nth` time, then SIGKILLs it.
async fn kill_order_loop_at(args: &[String], point: &str, nth: usize) {
    kill_order_loop_at_with(args, point, nth, &[]).await;
}

/// [`kill_order_loop_at`], with `env` set for `order-loop`.
async fn kill_order_loop_at_with(args: &[String], point: &str, nth: usize, env: &[(&str, &str)]) {
    use orchestration::testing::{PAUSE_AT_VAR, PAUSED};
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-loop"))
        .args(args)
        .envs(env.iter().copied())
        .env(PAUSE_AT_VAR, format!("{point}@{nth}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start order-loop");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line == format!("{PAUSED}{point}") {
                return;
            }
            eprintln!("order-loop: {line}");
        }
        panic!("order-loop ended without reaching {point}");
    })
    .await
    .expect("order-loop reached the pause point in time");
    child.kill().await.unwrap(); // SIGKILL
}
