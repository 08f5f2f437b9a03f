//! No secret in any log line at any level: the binary logging everything (`trace`)
//! while an administrator is opened from the command line, logs in, enrols TOTP, and
//! logs in again with a wrong password, a replayed code and a recovery code.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{
    ADMIN, admin_client, drain, exit_drained, open_admin, read_until, served_at, signal, start,
    switchyard,
};

/// `POST /api/sessions` with `body`.
async fn log_in(base: &str, body: &Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/sessions"))
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_login_with_totp_logs_no_secret_at_any_level() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().display());
    let mut secrets: Vec<String> = vec![ADMIN.1.to_owned()];
    let mut bootstrap = switchyard(&url);
    bootstrap.env("SWITCHYARD_LOG__FILTER", "trace");
    let mut log = open_admin(bootstrap).await;

    let mut command = switchyard(&url);
    command.env("SWITCHYARD_LOG__FILTER", "trace");
    let (child, mut lines) = start(command);
    let mut seen = Vec::new();
    read_until(&mut lines, "serving", &mut seen).await;
    let base = format!("http://{}", served_at(&seen));
    let server_log = drain(lines, seen);

    let (status, _) = log_in(
        &base,
        &json!({"email": ADMIN.0, "password": "a wrong password"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    secrets.push("a wrong password".to_owned());
    let admin = admin_client(&base).await;
    let enrolment: Value = admin
        .post(format!("{base}/api/me/totp"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = enrolment["secret_base32"].as_str().unwrap().to_owned();
    let code = identity::totp_code(&secret, chrono::Utc::now()).unwrap();
    let confirmed: Value = admin
        .post(format!("{base}/api/me/totp/confirm"))
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recovery: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("{confirmed}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();

    let (status, challenged) = log_in(&base, &json!({"email": ADMIN.0, "password": ADMIN.1})).await;
    assert_eq!(status, StatusCode::OK, "{challenged}");
    let challenge = challenged["challenge"].as_str().unwrap().to_owned();
    let (status, _) = log_in(&base, &json!({"challenge": challenge, "code": code})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a replayed code");
    let (_, challenged) = log_in(&base, &json!({"email": ADMIN.0, "password": ADMIN.1})).await;
    let second_challenge = challenged["challenge"].as_str().unwrap().to_owned();
    let (status, started) = log_in(
        &base,
        &json!({"challenge": second_challenge, "code": recovery[0]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let token = started["token"].as_str().unwrap().to_owned();
    let me = reqwest::Client::new()
        .get(format!("{base}/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    signal(&child, "TERM");
    let (status, seen) = exit_drained(child, server_log).await;
    assert!(status.success());
    log.push_str(&seen.join("\n"));
    assert!(
        log.contains("\"level\":\"DEBUG\"") && log.contains("/api/sessions"),
        "the log is at trace level and covers the logins:\n{}",
        log.lines().take(5).collect::<Vec<_>>().join("\n")
    );
    secrets.extend([secret, code, challenge, second_challenge, token]);
    secrets.extend(recovery);
    for secret in &secrets {
        let line = log.lines().find(|line| line.contains(secret.as_str()));
        assert!(line.is_none(), "a secret in the log: {line:?}");
    }
}
