//! Environment dumps in shell command strings: builtins and expansions that
//! print the environment or a secret-looking variable.

use super::lex::{is_assignment, simple_commands, Word};

const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "!", "{", "}", "time", "fi", "done",
    "esac",
];
const PREFIXES: &[&str] = &[
    "command", "builtin", "exec", "nohup", "nice", "sudo", "doas", "stdbuf", "timeout", "xargs",
];
const TESTS: &[&str] = &[
    "[", "[[", "test", ":", "unset", "export", "readonly", "local", "declare", "typeset",
];

/// Scan a shell command string for environment dumps. `secret_var` says
/// whether a variable name looks like a secret. Returns the reason.
pub fn shell_dump(src: &str, secret_var: &dyn Fn(&str) -> bool) -> Option<String> {
    shell_dump_depth(src, secret_var, 0)
}

fn shell_dump_depth(src: &str, secret_var: &dyn Fn(&str) -> bool, depth: usize) -> Option<String> {
    for cmd in simple_commands(src) {
        // drop redirections and their targets
        let mut words: Vec<&Word> = Vec::new();
        let mut skip_next = false;
        for w in &cmd {
            if skip_next {
                skip_next = false;
                continue;
            }
            if w.redirect {
                // `>&2` names no file; `<<<` is followed by the content itself
                skip_next = (!w.text.ends_with('&') || w.text == "&>") && w.text != "<<<";
                continue;
            }
            words.push(w);
        }
        let mut k = 0;
        while k < words.len()
            && (is_assignment(words[k]) || KEYWORDS.contains(&words[k].text.as_str()))
        {
            k += 1;
        }
        while k < words.len() && PREFIXES.contains(&words[k].text.as_str()) {
            k += 1;
            while k < words.len() && words[k].text.starts_with('-') {
                k += 1;
            }
        }
        let Some(first) = words.get(k) else { continue };
        let name = first.text.as_str();
        let args: Vec<&str> = words[k + 1..].iter().map(|w| w.text.as_str()).collect();
        let opts: Vec<&str> = args
            .iter()
            .copied()
            .take_while(|a| a.starts_with('-') && *a != "--")
            .collect();
        let operands: Vec<&str> = args
            .iter()
            .copied()
            .skip_while(|a| a.starts_with('-'))
            .filter(|a| *a != "--")
            .collect();
        let flags: String = opts
            .iter()
            .flat_map(|o| o.trim_start_matches('-').chars())
            .collect();
        let shown = || {
            let mut s = name.to_string();
            for a in &args {
                s.push(' ');
                s.push_str(a);
            }
            s
        };
        match name {
            "export" if operands.is_empty() && flags.chars().all(|c| c == 'p') => {
                return Some(format!("`{}` prints the exported environment", shown()));
            }
            "declare" | "typeset"
                if operands.is_empty()
                    && !flags.is_empty()
                    && !flags.chars().all(|c| matches!(c, 'f' | 'F')) =>
            {
                return Some(format!("`{}` prints variables", shown()));
            }
            "declare" | "typeset" if flags.contains('p') => {
                if let Some(v) = operands.iter().find(|v| secret_var(v)) {
                    return Some(format!("`{}` prints secret-looking variable {v}", shown()));
                }
            }
            "set" if args.is_empty() => {
                return Some("bare `set` prints every variable".to_string())
            }
            "compgen" => {
                let a_arg = args
                    .windows(2)
                    .any(|w| w[0] == "-A" && matches!(w[1], "variable" | "export"));
                if flags.contains('v') || flags.contains('e') || a_arg {
                    return Some(format!("`{}` lists variables", shown()));
                }
            }
            "eval" if depth < 4 => {
                if let Some(r) = shell_dump_depth(&args.join(" "), secret_var, depth + 1) {
                    return Some(r);
                }
            }
            _ => {}
        }
        if TESTS.contains(&name) {
            continue;
        }
        for w in &words[k..] {
            if let Some(v) = w.vars.iter().find(|v| v.value && secret_var(&v.name)) {
                return Some(format!(
                    "`{}` expands secret-looking variable {}",
                    shown(),
                    v.name
                ));
            }
        }
    }
    None
}
