//! Reading command text without running it: a small POSIX-shell lexer for the
//! `bash -c '<command>'` strings coding agents run, and scanners for
//! interpreter one-liners (`python3 -c`, `node -e`, `ruby -e`, `perl -e`).
//!
//! Shell builtins (`export -p`, `declare -x`, `set`, `compgen -v`, `echo $X`)
//! never exec, so the command string in argv is the only place they show.
//! This is a heuristic reader, not a shell: it errs towards splitting too much
//! (every `;`, `&`, `|`, `(`, `)`, newline, `$(...)` and backquote starts a new
//! simple command), which is what finding a builtin in a pipeline needs.

mod dump;
mod interp;
mod lex;

pub use dump::shell_dump;
pub use interp::{code_dump, interpreter_code};
pub use lex::{simple_commands, Expansion, Word};

#[cfg(test)]
mod tests;
