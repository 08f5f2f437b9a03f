//! The `Sender` port: how a rendered notification leaves the system. `FileSender`
//! (the default) writes each message as a file a person can read; a mail server's
//! sender plugs in behind the same trait.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The notification's id: sending the same message twice delivers it once where
    /// the sender can tell (the file sender writes the same file).
    pub id: Uuid,
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The text.
    pub body: String,
    /// When the notification was queued.
    pub created_at: DateTime<Utc>,
}

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// What went wrong.
    pub message: String,
    /// Whether a retry cannot help (a refused address, say).
    pub permanent: bool,
}

impl SendError {
    /// A failure a later attempt may not meet.
    #[must_use]
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure every attempt would meet.
    #[must_use]
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }
}

/// What [`Sender::send`] returns: boxed, so that senders can be `Arc<dyn Sender>`.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// Sends rendered notifications.
pub trait Sender: Send + Sync + fmt::Debug + 'static {
    /// Sends `message`.
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a>;
}

/// Writes each message to `<dir>/<id>.eml`, headers then text, as a mail client would
/// show it; written to a temporary name and renamed, so a reader never sees half a
/// message, and written again under the same name if sent twice.
#[derive(Debug, Clone)]
pub struct FileSender {
    dir: PathBuf,
}

impl FileSender {
    /// A sender writing under `dir` (created when the first message is written).
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory it writes to.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file message `id` is written to.
    #[must_use]
    pub fn path_of(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }
}

impl Sender for FileSender {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            let text = format!(
                "Message-ID: <{id}@switchyard>\nDate: {date}\nTo: {to}\nSubject: {subject}\nContent-Type: text/plain; charset=utf-8\n\n{body}",
                id = message.id,
                date = message.created_at.to_rfc2822(),
                to = message.to,
                subject = message.subject,
                body = message.body,
            );
            let path = self.path_of(message.id);
            let dir = self.dir.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dir)?;
                let partial = path.with_extension("eml.partial");
                std::fs::write(&partial, text)?;
                std::fs::rename(&partial, &path)
            })
            .await
            .map_err(|err| SendError::transient(format!("the write did not finish: {err}")))?
            .map_err(|err| {
                SendError::transient(format!("cannot write to {}: {err}", self.dir.display()))
            })
        })
    }
}

/// Sends each message by SMTP to a relay (`host:port`, plain SMTP without TLS or
/// authentication: a local relay or a sidecar that forwards), from `from`. A 5xx
/// answer (a refused address) is permanent; anything else (the relay unreachable, a
/// 4xx, a timeout) transient.
#[derive(Clone)]
pub struct SmtpSender {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
    relay: String,
}

impl fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSender")
            .field("relay", &self.relay)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// A sender through the relay at `host:port`, from `from`, giving up on one
    /// message after `timeout`.
    ///
    /// # Errors
    /// `from` is not a mailbox (`Name <address>` or `address`).
    pub fn new(
        host: &str,
        port: u16,
        from: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, crate::Invalid> {
        let from = from.parse().map_err(|_| {
            crate::Invalid("the sender must be a mailbox: `Name <address>` or `address`")
        })?;
        let transport =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(host)
                .port(port)
                .timeout(Some(timeout))
                .build();
        Ok(Self {
            transport,
            from,
            relay: format!("{host}:{port}"),
        })
    }
}

impl Sender for SmtpSender {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        use lettre::AsyncTransport as _;
        Box::pin(async move {
            let to = message.to.parse().map_err(|err| {
                SendError::permanent(format!("cannot send to {}: {err}", message.to))
            })?;
            let email = lettre::Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(message.subject.clone())
                .message_id(Some(format!("<{}@switchyard>", message.id)))
                .date(message.created_at.into())
                .header(lettre::message::header::ContentType::TEXT_PLAIN)
                .body(message.body.clone())
                .map_err(|err| SendError::permanent(format!("cannot build the mail: {err}")))?;
            match self.transport.send(email).await {
                Ok(_) => Ok(()),
                Err(err) if err.is_permanent() => Err(SendError::permanent(format!(
                    "{} refused the mail: {err}",
                    self.relay
                ))),
                Err(err) => Err(SendError::transient(format!(
                    "cannot send through {}: {err}",
                    self.relay
                ))),
            }
        })
    }
}
