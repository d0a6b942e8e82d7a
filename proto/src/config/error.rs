//! The one error of the config layer: the config file is wrong (or could not be read), and
//! here is where. Every error names the file, the 1-based line and the field path, the way
//! compilers do, so an operator can jump to it:
//!
//! ```text
//! deploy/hubs/demo.toml:42: segments[3].cabinet: unknown cabinet "cab-z" (known: cab-a, cab-b, cab-c)
//! ```

use std::fmt;
use std::ops::Range;

/// A hub config that cannot be used, and where it is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file the config came from, as given to the parser (for the message only).
    pub origin: String,
    /// The 1-based line of the fault; `None` only when the file could not be read.
    pub line: Option<usize>,
    /// The path of the faulty field (`segments[3].gun.dispenser`); empty for a TOML syntax
    /// error or an unreadable file, which belong to no field.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Where a config text came from: turns byte offsets into lines and builds errors.
#[derive(Debug, Clone, Copy)]
pub(super) struct Source<'a> {
    /// The file name, for messages.
    pub(super) origin: &'a str,
    /// The whole config text, to count lines in.
    pub(super) text: &'a str,
}

impl<'a> Source<'a> {
    /// The 1-based line holding byte `offset`.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// An error at the start of `span`.
    pub(super) fn error(
        &self,
        span: &Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            origin: self.origin.to_owned(),
            line: Some(self.line_of(span.start)),
            field: field.into(),
            message: message.into(),
        }
    }

    /// A TOML syntax error (the text is not TOML at all).
    pub(super) fn syntax_error(&self, error: &toml::de::Error) -> ConfigError {
        let span = error.span().unwrap_or(0..0);
        let mut message = format!("invalid TOML: {}", error.message().trim_end());
        let excerpt = self.text.get(span.clone()).unwrap_or("");
        if !excerpt.is_empty() && excerpt.len() <= 40 && !excerpt.contains('\n') {
            message.push_str(&format!(" (at `{excerpt}`)"));
        }
        self.error(&span, "", message)
    }

    /// A serde error: a missing or unknown field, a wrong type, a number out of range, an
    /// unknown variant. `path` is serde_path_to_error's path to the faulty value.
    pub(super) fn serde_error(&self, path: &str, error: &toml::de::Error) -> ConfigError {
        let message = error.message().trim_end();
        let mut field = clean_path(path);
        // serde names a missing field in the message and reports the table that lacks it.
        if let Some(name) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(name);
        }
        self.error(&error.span().unwrap_or(0..0), field, message)
    }
}

/// serde_path_to_error's path without the segments that `toml::Spanned` adds
/// (`$__serde_spanned_private_value`) and without the root marker `.`.
fn clean_path(path: &str) -> String {
    let mut out = String::new();
    for segment in path.split('.') {
        // A hidden segment keeps the index that may follow it (`$__…value[1]`).
        let segment = match segment.strip_prefix("$__") {
            Some(hidden) => hidden.find('[').map_or("", |at| &hidden[at..]),
            None => segment,
        };
        if segment.is_empty() {
            continue;
        }
        // An index (`[1]`) may be split from its key by a hidden Spanned segment.
        if !out.is_empty() && !segment.starts_with('[') {
            out.push('.');
        }
        out.push_str(segment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_origin_line_field_and_message() {
        let error = ConfigError {
            origin: "hub.toml".into(),
            line: Some(42),
            field: "segments[3].cabinet".into(),
            message: "unknown cabinet".into(),
        };
        assert_eq!(
            error.to_string(),
            "hub.toml:42: segments[3].cabinet: unknown cabinet"
        );
        let io = ConfigError {
            line: None,
            field: String::new(),
            ..error
        };
        assert_eq!(io.to_string(), "hub.toml: unknown cabinet");
    }

    #[test]
    fn lines_count_from_one() {
        let source = Source {
            origin: "x",
            text: "a\nb\nc",
        };
        assert_eq!(source.line_of(0), 1);
        assert_eq!(source.line_of(2), 2);
        assert_eq!(source.line_of(4), 3);
        assert_eq!(source.line_of(99), 3);
    }

    #[test]
    fn spanned_segments_leave_the_path() {
        assert_eq!(
            clean_path(
                "segments[0].$__serde_spanned_private_value.gun.$__serde_spanned_private_value.id"
            ),
            "segments[0].gun.id"
        );
        assert_eq!(clean_path("."), "");
        assert_eq!(
            clean_path(
                "cabinets[1].$__serde_spanned_private_value.zenoh_listen[1].$__serde_spanned_private_value"
            ),
            "cabinets[1].zenoh_listen[1]"
        );
    }
}
