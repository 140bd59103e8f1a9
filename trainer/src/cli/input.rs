//! Reading JSON input from a file or stdin, with errors that name the file and
//! the JSON path of the offending value.

use std::fmt;
use std::io::Read;
use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

/// Where an input came from, for error messages: the file path or `<stdin>`.
#[derive(Clone, Debug)]
pub struct Origin(String);

impl Origin {
    /// The origin of `path`, where `-` means stdin.
    pub fn of(path: &Path) -> Self {
        if is_stdin(path) {
            Origin("<stdin>".to_owned())
        } else {
            Origin(path.display().to_string())
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Reads all of `path` (`-` = stdin) as UTF-8 text; `what` names the input in errors.
pub fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    let origin = Origin::of(path);
    if is_stdin(path) {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .with_context(|| format!("reading {what} from {origin}"))?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {what} {origin}"))
    }
}

/// A JSON document that did not parse into the expected type.
#[derive(Debug, thiserror::Error)]
#[error("{path}{kind}{error}")]
pub struct JsonError {
    /// JSON path of the offending value followed by `": "`, or empty at the top level.
    path: String,
    /// `"invalid JSON: "` when the text is not JSON at all, else empty.
    kind: &'static str,
    /// What serde_json reported, with line and column.
    error: serde_json::Error,
}

/// Parses `text` as one JSON document of type `T`. Errors name the JSON path of the
/// offending value the way the instance spells it (`users[2].data_bits: invalid
/// type: ...`).
pub fn parse_json<T: DeserializeOwned>(text: &str) -> Result<T, JsonError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        JsonError::new(&path, e.into_inner())
    })?;
    de.end().map_err(|error| JsonError::new("", error))?;
    Ok(value)
}

impl JsonError {
    fn new(path: &str, error: serde_json::Error) -> Self {
        // serde_path_to_error writes the top level as ".".
        let path = if path == "." || path.is_empty() {
            String::new()
        } else {
            format!("{path}: ")
        };
        // serde_json files a number too large for f64 (`1e999`) under syntax errors,
        // but the text is valid JSON; its message says what is wrong.
        let not_json = matches!(error.classify(), Category::Syntax | Category::Eof)
            && !error.to_string().starts_with("number out of range");
        let kind = if not_json { "invalid JSON: " } else { "" };
        JsonError { path, kind, error }
    }
}
