//! Policy errors: every one names the file, line and column, and says what was
//! expected, so the user can fix the file without reading the source.

use std::path::PathBuf;

/// A policy that cannot be used. The CLI exits with [`PolicyError::EXIT_CODE`].
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the policy's shape, or a
    /// value is out of range.
    #[error("{file}:{line}:{column}: {message}{}", expected.as_ref().map(|e| format!(" (expected {e})")).unwrap_or_default())]
    Invalid {
        /// The file name as given (or `<default>` for the embedded policy).
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong.
        message: String,
        /// What would have been accepted, where that can be said.
        expected: Option<String>,
    },
}

impl PolicyError {
    /// The process exit code for a bad policy (`agentwatch` and
    /// `agentwatch policy check`).
    pub const EXIT_CODE: u8 = 2;

    /// Build an [`PolicyError::Invalid`] from a byte offset into `text`.
    pub(crate) fn at(
        file: &str,
        text: &str,
        offset: usize,
        message: impl Into<String>,
        expected: Option<String>,
    ) -> Self {
        let (line, column) = line_column(text, offset);
        PolicyError::Invalid {
            file: file.to_string(),
            line,
            column,
            message: message.into(),
            expected,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut cut = offset;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let before = &text[..cut];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        // 'é' is two bytes: the column counts characters.
        assert_eq!(line_column(text, 9), (2, 3));
        assert_eq!(line_column(text, 999), (3, 1));
    }
}
