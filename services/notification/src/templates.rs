//! Message templates: files in the service's `templates/` directory (compiled into
//! the binary, or read from `--template-dir` to change the wording without a
//! rebuild), rendered with minijinja. `.html` parts are HTML-escaped, the others
//! are plain text.

use std::path::Path;

use minijinja::Environment;
use serde::Serialize;

/// The templates weft sends: `(name, parts)`. An email has a subject, a text and an
/// HTML part; a text message has an `sms` part.
const FILES: &[(&str, &str)] = &[
    (
        "welcome.subject",
        include_str!("../templates/welcome.subject"),
    ),
    ("welcome.txt", include_str!("../templates/welcome.txt")),
    ("welcome.html", include_str!("../templates/welcome.html")),
    (
        "order_confirmation.subject",
        include_str!("../templates/order_confirmation.subject"),
    ),
    (
        "order_confirmation.txt",
        include_str!("../templates/order_confirmation.txt"),
    ),
    (
        "order_confirmation.html",
        include_str!("../templates/order_confirmation.html"),
    ),
    (
        "order_shipped.subject",
        include_str!("../templates/order_shipped.subject"),
    ),
    (
        "order_shipped.txt",
        include_str!("../templates/order_shipped.txt"),
    ),
    (
        "order_shipped.html",
        include_str!("../templates/order_shipped.html"),
    ),
    (
        "order_shipped.sms",
        include_str!("../templates/order_shipped.sms"),
    ),
    (
        "verify_email.subject",
        include_str!("../templates/verify_email.subject"),
    ),
    (
        "verify_email.txt",
        include_str!("../templates/verify_email.txt"),
    ),
    (
        "verify_email.html",
        include_str!("../templates/verify_email.html"),
    ),
    (
        "verify_phone.sms",
        include_str!("../templates/verify_phone.sms"),
    ),
];

/// Template of the welcome email.
pub const WELCOME: &str = "welcome";
/// Template of the order confirmation email.
pub const ORDER_CONFIRMATION: &str = "order_confirmation";
/// Template of the shipping notification (email and text message).
pub const ORDER_SHIPPED: &str = "order_shipped";
/// Template of the email that verifies an address.
pub const VERIFY_EMAIL: &str = "verify_email";
/// Template of the text message that verifies a phone number.
pub const VERIFY_PHONE: &str = "verify_phone";

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// One line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
}

/// Why a template did not render.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A file of `--template-dir` is missing or unreadable.
    #[error("template file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Syntax or rendering error.
    #[error("template {name}: {source}")]
    Render {
        /// The template part.
        name: String,
        /// minijinja's message.
        source: minijinja::Error,
    },
}

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The templates built into the service.
    pub fn builtin() -> Result<Self, TemplateError> {
        Self::from_sources(
            FILES
                .iter()
                .map(|(n, s)| ((*n).to_owned(), (*s).to_owned())),
        )
    }

    /// The same files read from `dir` (every one must be there).
    pub fn from_dir(dir: &Path) -> Result<Self, TemplateError> {
        let mut sources = Vec::new();
        for (name, _) in FILES {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
                path: path.display().to_string(),
                source,
            })?;
            sources.push(((*name).to_owned(), text));
        }
        Self::from_sources(sources.into_iter())
    }

    fn from_sources(
        sources: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, text) in sources {
            env.add_template_owned(name.clone(), text)
                .map_err(|source| TemplateError::Render { name, source })?;
        }
        Ok(Self { env })
    }

    fn render(&self, name: &str, context: &impl Serialize) -> Result<String, TemplateError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(context))
            .map_err(|source| TemplateError::Render {
                name: name.to_owned(),
                source,
            })
    }

    /// Renders the email `template` with `context`.
    pub fn email(
        &self,
        template: &str,
        context: &impl Serialize,
    ) -> Result<RenderedEmail, TemplateError> {
        let subject = self.render(&format!("{template}.subject"), context)?;
        Ok(RenderedEmail {
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text: self.render(&format!("{template}.txt"), context)?,
            html: self.render(&format!("{template}.html"), context)?,
        })
    }

    /// Renders the text message `template` with `context`.
    pub fn sms(&self, template: &str, context: &impl Serialize) -> Result<String, TemplateError> {
        Ok(self
            .render(&format!("{template}.sms"), context)?
            .trim()
            .to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn html_parts_are_escaped_and_text_parts_are_not() {
        let t = Templates::builtin().unwrap();
        let mail = t
            .email(
                WELCOME,
                &json!({"name": "Ada <script>", "email": "ada@example.com"}),
            )
            .unwrap();
        assert_eq!(mail.subject, "Welcome to weft, Ada <script>");
        assert!(mail.text.contains("Hello Ada <script>,"));
        assert!(
            mail.html.contains("Hello Ada &lt;script&gt;,"),
            "{}",
            mail.html
        );
    }

    #[test]
    fn a_missing_value_is_an_error_not_an_empty_string() {
        let t = Templates::builtin().unwrap();
        let err = t.email(WELCOME, &json!({"name": "Ada"})).unwrap_err();
        assert!(err.to_string().contains("welcome"), "{err}");
    }

    #[test]
    fn a_template_dir_must_hold_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Templates::from_dir(dir.path()).err().unwrap();
        assert!(err.to_string().contains("welcome.subject"), "{err}");
    }
}
