//! Identity over HTTP on every engine: an administrator opens an account; it logs in
//! with its password, enrols TOTP and then logs in with a code; its sessions are listed
//! and ended; a suspension ends its sessions at once and refuses its logins; a new
//! password ends them too; failures are throttled.

use orchestration::testing::TestDatabase;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};
use tests::{TestApp, client_with};

orchestration::engine_tests! {
    boundaries: (migrations::all());
    an_account_logs_in_with_its_password_then_with_totp,
    suspension_and_a_new_password_end_sessions_at_once,
    failed_logins_are_throttled_per_email,
    logins_racing_suspensions_never_leave_a_working_session,
    a_customer_registers_verifies_from_the_mail_and_orders,
}

const PASSWORD: &str = "correct horse battery staple";

/// The administrator opens an active customer account with [`PASSWORD`]; its id.
async fn open(app: &TestApp, email: &str) -> String {
    let opened = app
        .http
        .post(app.url("/api/accounts"))
        .json(&json!({
            "email": email, "display_name": "Carol", "password": PASSWORD,
            "kind": "customer", "roles": ["customer"]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::CREATED);
    let account: Value = opened.json().await.unwrap();
    assert_eq!(account["status"], "active");
    assert_eq!(account["abilities"], json!(["orders.place"]));
    account["id"].as_str().unwrap().to_owned()
}

/// `POST /api/sessions` with `body`: the status and the body.
async fn log_in(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(app.url("/api/sessions"))
        .header("user-agent", "identity-test/1")
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn password_login(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    log_in(app, &json!({"email": email, "password": password})).await
}

/// Every value of `columns` in the `identity` schema's `table`, as one string.
async fn table_text(conn: &DatabaseConnection, table: &str, columns: &[&str]) -> String {
    let sql = format!("SELECT {} FROM identity.{table}", columns.join(", "));
    let rows = conn
        .query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .unwrap();
    let mut text = String::new();
    for row in rows {
        for column in columns {
            text.push_str(&row.try_get::<String>("", column).unwrap());
            text.push('\n');
        }
    }
    text
}

/// The status of `GET path` with `client`.
async fn status_of(app: &TestApp, client: &reqwest::Client, path: &str) -> StatusCode {
    client.get(app.url(path)).send().await.unwrap().status()
}

async fn an_account_logs_in_with_its_password_then_with_totp(db: TestDatabase) {
    let app = TestApp::spawn(&db).await;
    let id = open(&app, "Carol@Example.com").await;

    // The same answer for an unknown email and a wrong password.
    let (status, unknown) = password_login(&app, "nobody@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, wrong) = password_login(&app, "carol@example.com", "wrong password!").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for problem in [&unknown, &wrong] {
        assert_eq!(
            problem["type"],
            "urn:switchyard:problem:invalid-credentials"
        );
    }
    assert_eq!(unknown["detail"], wrong["detail"]);

    let (status, started) = password_login(&app, "carol@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let token = started["token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    assert_eq!(started["session"]["user_agent"], "identity-test/1");
    let carol = client_with(token);
    let me: Value = carol
        .get(app.url("/api/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["id"].as_str(), me["email"].as_str()),
        (Some(id.as_str()), Some("carol@example.com"))
    );
    assert_eq!(me["roles"], json!(["customer"]));
    // A customer is not an administrator.
    assert_eq!(
        status_of(&app, &carol, "/api/accounts").await,
        StatusCode::FORBIDDEN
    );

    // TOTP: enrolled, confirmed by a first code, then asked for at login.
    let enrolled = carol.post(app.url("/api/me/totp")).send().await.unwrap();
    assert_eq!(enrolled.status(), StatusCode::CREATED);
    let enrolment: Value = enrolled.json().await.unwrap();
    let secret = enrolment["secret_base32"].as_str().unwrap();
    assert!(
        enrolment["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let wrong_code = carol
        .post(app.url("/api/me/totp/confirm"))
        .json(&json!({"code": "000000x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_code.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let code = identity::totp_code(secret, chrono::Utc::now()).unwrap();
    let confirmed = carol
        .post(app.url("/api/me/totp/confirm"))
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), StatusCode::OK);
    let recovery: Value = confirmed.json().await.unwrap();
    let recovery_codes = recovery["recovery_codes"].as_array().unwrap();
    assert_eq!(recovery_codes.len(), identity::RECOVERY_CODES);

    let (status, challenged) = password_login(&app, "carol@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{challenged}");
    assert_eq!(challenged["status"], "totp_required");
    let challenge = challenged["challenge"].as_str().unwrap();
    // The code that confirmed the enrolment is spent: it cannot be replayed.
    let (status, replayed) = log_in(&app, &json!({"challenge": challenge, "code": code})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(replayed["type"], "urn:switchyard:problem:invalid-code");
    let (_, challenged) = password_login(&app, "carol@example.com", PASSWORD).await;
    let challenge = challenged["challenge"].as_str().unwrap();
    let recovery_code = recovery_codes[0].as_str().unwrap();
    let (status, second) = log_in(
        &app,
        &json!({"challenge": challenge, "code": recovery_code}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    // The challenge ended with its use.
    let (status, _) = log_in(
        &app,
        &json!({"challenge": challenge, "code": recovery_code}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Two sessions; the current one is marked; logging out ends only it.
    let second = client_with(second["token"].as_str().unwrap());
    let sessions: Value = second
        .get(app.url("/api/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let ended = second
        .delete(app.url("/api/sessions/current"))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        status_of(&app, &second, "/api/me").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status_of(&app, &carol, "/api/me").await, StatusCode::OK);
    let all = carol.delete(app.url("/api/sessions")).send().await.unwrap();
    assert_eq!(all.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        status_of(&app, &carol, "/api/me").await,
        StatusCode::UNAUTHORIZED
    );

    // Tokens and recovery codes are stored only as hashes.
    let conn = db.connection(identity::SCHEMA);
    let stored = table_text(
        conn,
        "sessions",
        &["id", "account_id", "token_hash", "user_agent"],
    )
    .await
        + &table_text(conn, "recovery_codes", &["code_hash", "account_id"]).await;
    assert!(!stored.contains(token), "a raw session token is stored");
    for code in recovery_codes {
        assert!(
            !stored.contains(code.as_str().unwrap()),
            "a raw recovery code is stored"
        );
    }
    app.stop().await;
}

async fn suspension_and_a_new_password_end_sessions_at_once(db: TestDatabase) {
    let app = TestApp::spawn(&db).await;
    let id = open(&app, "dave@example.com").await;
    let (_, started) = password_login(&app, "dave@example.com", PASSWORD).await;
    let dave = client_with(started["token"].as_str().unwrap());
    assert_eq!(status_of(&app, &dave, "/api/orders").await, StatusCode::OK);

    let set_status = |status: &str| {
        app.http
            .put(app.url(&format!("/api/accounts/{id}/status")))
            .json(&json!({"status": status}))
            .send()
    };
    let suspended = set_status("suspended").await.unwrap();
    assert_eq!(suspended.status(), StatusCode::OK);
    assert_eq!(
        status_of(&app, &dave, "/api/orders").await,
        StatusCode::UNAUTHORIZED
    );
    let (status, refused) = password_login(&app, "dave@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refused["type"], "urn:switchyard:problem:account-not-active");
    assert_eq!(refused["status"], 403);

    assert_eq!(set_status("active").await.unwrap().status(), StatusCode::OK);
    let (status, started) = password_login(&app, "dave@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED);
    let dave = client_with(started["token"].as_str().unwrap());

    // A new password: every session ends; the old password no longer works.
    let wrong = dave
        .put(app.url("/api/me/password"))
        .json(&json!({"current_password": "not the password", "new_password": "a much better passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let changed = dave
        .put(app.url("/api/me/password"))
        .json(&json!({"current_password": PASSWORD, "new_password": "a much better passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        status_of(&app, &dave, "/api/me").await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = password_login(&app, "dave@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = password_login(&app, "dave@example.com", "a much better passphrase").await;
    assert_eq!(status, StatusCode::CREATED);

    // Disabled for good: it cannot come back.
    assert_eq!(
        set_status("disabled").await.unwrap().status(),
        StatusCode::OK
    );
    let back = set_status("active").await.unwrap();
    assert_eq!(back.status(), StatusCode::CONFLICT);
    // An administrator cannot suspend themselves (and lock everyone out).
    let me: Value = app.get("/api/me").await;
    let own = app
        .http
        .put(app.url(&format!(
            "/api/accounts/{}/status",
            me["id"].as_str().unwrap()
        )))
        .json(&json!({"status": "suspended"}))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

async fn failed_logins_are_throttled_per_email(db: TestDatabase) {
    let app = TestApp::spawn(&db).await;
    open(&app, "erin@example.com").await;
    let limit = workflows::LoginSettings::default().per_email.max_failures;
    for _ in 0..limit {
        let (status, _) = password_login(&app, "erin@example.com", "not her password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Throttled now, even with the right password; an email without an account alike.
    let response = reqwest::Client::new()
        .post(app.url("/api/sessions"))
        .json(&json!({"email": "erin@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:switchyard:problem:throttled");
    for _ in 0..limit {
        password_login(&app, "ghost@example.com", "whatever it is").await;
    }
    let (status, _) = password_login(&app, "ghost@example.com", "whatever it is").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Another account from the same client is not held back.
    open(&app, "frank@example.com").await;
    let (status, _) = password_login(&app, "frank@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await;
}

/// Logins and status changes of one account at once (the status change locks the
/// account's row and ends its sessions; a login that read the account before may
/// still start one): no request fails, and once the account ends suspended, no token
/// any login returned works.
async fn logins_racing_suspensions_never_leave_a_working_session(db: TestDatabase) {
    let app = TestApp::spawn(&db).await;
    let id = open(&app, "gina@example.com").await;
    let mut racing = tokio::task::JoinSet::new();
    for i in 0..16 {
        let (admin, url) = (app.http.clone(), app.url(""));
        let id = id.clone();
        racing.spawn(async move {
            if i % 2 == 0 {
                let status = if i % 4 == 0 { "suspended" } else { "active" };
                let response = admin
                    .put(format!("{url}/api/accounts/{id}/status"))
                    .json(&json!({"status": status}))
                    .send()
                    .await
                    .unwrap();
                (response.status(), None)
            } else {
                let response = reqwest::Client::new()
                    .post(format!("{url}/api/sessions"))
                    .json(&json!({"email": "gina@example.com", "password": PASSWORD}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap();
                (status, body["token"].as_str().map(str::to_owned))
            }
        });
    }
    let mut tokens = Vec::new();
    while let Some(answer) = racing.join_next().await {
        let (status, token) = answer.unwrap();
        assert!(
            [StatusCode::OK, StatusCode::CREATED, StatusCode::FORBIDDEN].contains(&status),
            "{status}"
        );
        tokens.extend(token);
    }
    let suspended = app
        .http
        .put(app.url(&format!("/api/accounts/{id}/status")))
        .json(&json!({"status": "suspended"}))
        .send()
        .await
        .unwrap();
    assert_eq!(suspended.status(), StatusCode::OK);
    for token in &tokens {
        assert_eq!(
            status_of(&app, &client_with(token), "/api/me").await,
            StatusCode::UNAUTHORIZED
        );
    }
    app.stop().await;
}

/// The files under the app's `notifications.dir` whose text contains `needle`, once
/// there are `count`.
async fn mails_with(app: &TestApp, db: &TestDatabase, needle: &str, count: usize) -> Vec<String> {
    orchestration::testing::Scenario::new(db.fabric())
        .within(std::time::Duration::from_secs(30))
        .wait_for_state(
            &format!("{count} mails with {needle:?}"),
            async |_| {
                std::fs::read_dir(app.mail_dir())
                    .map(|entries| {
                        entries
                            .filter_map(|e| {
                                // Whole mails only: `<id>.eml.partial` is being written.
                                let path = e.ok()?.path();
                                let whole = path.extension().is_some_and(|x| x == "eml");
                                whole.then(|| std::fs::read_to_string(path).ok()).flatten()
                            })
                            .filter(|text| text.contains(needle))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            },
            |mails| mails.len() >= count,
        )
        .await
}

async fn a_customer_registers_verifies_from_the_mail_and_orders(db: TestDatabase) {
    let app = TestApp::spawn(&db).await;
    app.create_product("REG-1", 10).await;
    let register = |email: &str| {
        reqwest::Client::new()
            .post(app.url("/api/registrations"))
            .json(&json!({"email": email, "display_name": "Hana", "password": PASSWORD}))
            .send()
    };
    let registered = register("hana@example.com").await.unwrap();
    assert_eq!(registered.status(), StatusCode::ACCEPTED);
    let answer: Value = registered.json().await.unwrap();
    // An email with an active account gets the same answer.
    let taken = register("admin@tests.example").await.unwrap();
    assert_eq!(taken.status(), StatusCode::ACCEPTED);
    assert_eq!(taken.json::<Value>().await.unwrap(), answer);
    // Pending: it cannot log in yet.
    let (status, refused) = password_login(&app, "hana@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refused["status"], 403);

    let mail = mails_with(&app, &db, "To: hana@example.com", 1).await;
    let token = mail[0]
        .lines()
        .find_map(|line| line.strip_prefix("Your verification token: "))
        .expect("a token in the mail")
        .trim()
        .to_owned();
    let verify = |token: &str| {
        reqwest::Client::new()
            .post(app.url("/api/registrations/verify"))
            .json(&json!({"token": token}))
            .send()
    };
    let wrong = verify(&"0".repeat(64)).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = wrong.json().await.unwrap();
    assert_eq!(problem["type"], "urn:switchyard:problem:invalid-token");
    let verified = verify(&token).await.unwrap();
    assert_eq!(verified.status(), StatusCode::OK);
    let account: Value = verified.json().await.unwrap();
    assert_eq!(account["status"], "active");
    assert_eq!(account["kind"], "customer");
    mails_with(&app, &db, "Subject: Welcome to Switchyard", 1).await;

    let (status, started) = password_login(&app, "hana@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED);
    let hana = client_with(started["token"].as_str().unwrap());
    let placed = hana
        .post(app.url("/api/orders"))
        .json(&json!({"lines": [{"sku": "REG-1", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), StatusCode::CREATED);
    mails_with(&app, &db, "is confirmed", 1).await;
    app.stop().await;
}
