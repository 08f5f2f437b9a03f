//! The templates notifications are rendered from: text files under `templates/`,
//! built into the binary, in the `minijinja` syntax. The first line is `Subject: …`,
//! then a blank line, then the body.

use minijinja::Environment;

use crate::{Error, Invalid, Result};

/// Every template, by name.
pub const TEMPLATES: [(&str, &str); 4] = [
    (
        "order_confirmed",
        include_str!("../templates/order_confirmed.txt"),
    ),
    (
        "order_refunded",
        include_str!("../templates/order_refunded.txt"),
    ),
    (
        "verify_email",
        include_str!("../templates/verify_email.txt"),
    ),
    ("welcome", include_str!("../templates/welcome.txt")),
];

/// A rendered notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Its subject line.
    pub subject: String,
    /// Its text.
    pub body: String,
}

/// Renders template `name` with `data`.
///
/// # Errors
/// [`Error::Invalid`] for an unknown template; [`Error::Template`] if it cannot be
/// rendered with this data, or does not start with a `Subject:` line.
pub fn render(name: &str, data: &serde_json::Value) -> Result<Rendered> {
    let source = TEMPLATES
        .iter()
        .find(|(template, _)| *template == name)
        .map(|(_, source)| *source)
        .ok_or(Error::Invalid(Invalid("no such template")))?;
    let mut environment = Environment::new();
    environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let text = environment
        .render_str(source, data)
        .map_err(|err| Error::Template(format!("{name}: {err}")))?;
    let (head, body) = text
        .split_once("\n\n")
        .ok_or_else(|| Error::Template(format!("{name}: no blank line after the subject")))?;
    let subject = head
        .strip_prefix("Subject: ")
        .filter(|subject| !subject.contains('\n'))
        .ok_or_else(|| Error::Template(format!("{name}: the first line is not `Subject: …`")))?;
    Ok(Rendered {
        subject: subject.trim().to_owned(),
        body: body.trim_end().to_owned() + "\n",
    })
}
