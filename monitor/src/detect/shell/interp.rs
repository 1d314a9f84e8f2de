//! Interpreter one-liners (`python3 -c`, `node -e`, `ruby -e`, `perl -e`):
//! finding the inline code and scanning it for environment dumps.

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The inline code of an interpreter invocation, and the language.
pub fn interpreter_code(argv: &[String], exe: Option<&str>) -> Option<(&'static str, String)> {
    let name = exe
        .map(basename)
        .or_else(|| argv.first().map(|a| basename(a)))?;
    let lang = if name.starts_with("python") || name.starts_with("pypy") {
        "python"
    } else if matches!(name, "node" | "nodejs" | "bun" | "deno") {
        "node"
    } else if name.starts_with("ruby") {
        "ruby"
    } else if name.starts_with("perl") {
        "perl"
    } else {
        return None;
    };
    let mut code = String::new();
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].as_str();
        let take_next = |i: usize| argv.get(i + 1).cloned().unwrap_or_default();
        match lang {
            "python" => {
                if a.starts_with("--") || !a.starts_with('-') {
                    break; // script or long option: no -c
                }
                if let Some(pos) = a.find('c') {
                    let rest = &a[pos + 1..];
                    code = if rest.is_empty() {
                        take_next(i)
                    } else {
                        rest.to_string()
                    };
                    break;
                }
                // options taking an argument
                if matches!(a, "-W" | "-X" | "-m") {
                    if a == "-m" {
                        break;
                    }
                    i += 1;
                }
            }
            "node" => {
                if matches!(a, "-e" | "--eval" | "-p" | "--print" | "-pe")
                    || (name == "deno" && a == "eval")
                {
                    code = take_next(i);
                    break;
                }
                if let Some(v) = a
                    .strip_prefix("--eval=")
                    .or_else(|| a.strip_prefix("--print="))
                {
                    code = v.to_string();
                    break;
                }
                if !a.starts_with('-') && (name != "deno" || i != 1) {
                    break;
                }
            }
            _ => {
                // ruby/perl: every -e / -E adds a line
                if matches!(a, "-e" | "-E") {
                    code.push_str(&take_next(i));
                    code.push('\n');
                    i += 1;
                } else if let Some(v) = a.strip_prefix("-e").or_else(|| a.strip_prefix("-E")) {
                    if !v.is_empty() && !a.starts_with("--") {
                        code.push_str(v);
                        code.push('\n');
                    }
                } else if !a.starts_with('-') {
                    break;
                }
            }
        }
        i += 1;
    }
    (!code.is_empty()).then_some((lang, code))
}

/// A quoted string literal at the start of `s` (after spaces).
fn literal(s: &str) -> Option<&str> {
    let s = s.trim_start();
    let q = s.chars().next().filter(|c| matches!(c, '\'' | '"'))?;
    let rest = &s[1..];
    rest.find(q).map(|e| &rest[..e])
}

fn ident_before(code: &str, at: usize) -> bool {
    code[..at]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether the text before `at` (ignoring spaces) ends with one of `marks`.
fn preceded_by(code: &str, at: usize, marks: &[&str]) -> bool {
    let before = code[..at].trim_end();
    marks.iter().any(|m| before.ends_with(m))
}

/// Scan interpreter one-liner code for environment dumps.
pub fn code_dump(lang: &str, code: &str, secret_var: &dyn Fn(&str) -> bool) -> Option<String> {
    // (token, accessors that read ONE variable, marks before the token that pass it on unread)
    let (tokens, single, pass_on): (&[&str], &[&str], &[&str]) = match lang {
        "python" => (
            &["environb", "environ"],
            &["[", ".get(", ".setdefault(", ".pop(", "=", "."],
            &["env=", "env ="],
        ),
        "node" => (
            &["process.env"],
            &["[", "."],
            &["env:", "env =", "env=", "..."],
        ),
        "ruby" => (&["ENV"], &["[", ".fetch(", "."], &[]),
        _ => (&["%ENV", "$ENV{"], &[], &[]),
    };
    if lang == "python" {
        for f in ["getenv(", "getenvb("] {
            for (at, _) in code.match_indices(f) {
                if let Some(name) = literal(&code[at + f.len()..]) {
                    if secret_var(name) {
                        return Some(format!("reads secret-looking variable {name}"));
                    }
                }
            }
        }
    }
    for tok in tokens {
        let mut from = 0;
        while let Some(rel) = code[from..].find(tok) {
            let at = from + rel;
            from = at + tok.len();
            if ident_before(code, at) && !tok.starts_with(['%', '$']) {
                continue;
            }
            let after = &code[from..];
            if !tok.ends_with('{')
                && after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            {
                continue; // a longer identifier (`ENVIRONMENT`; `environb` has its own token)
            }
            if let Some(key) = tok.strip_prefix("$ENV{").map(|_| after) {
                let name: String = key
                    .trim_start_matches(['\'', '"'])
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if secret_var(&name) {
                    return Some(format!("reads secret-looking variable {name}"));
                }
                continue;
            }
            let acc = single.iter().find(|s| after.starts_with(**s));
            match acc {
                Some(&".") | Some(&"=") if lang == "python" => {
                    // environ.items() / .copy() / .keys(): whole; environ = ...: assignment
                    if after.starts_with("= ") || after.starts_with("=") && !after.starts_with("==")
                    {
                        continue;
                    }
                    let method: String = after[1..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if matches!(method.as_str(), "get" | "setdefault" | "pop") {
                        if let Some(name) = after.get(method.len() + 2..).and_then(literal) {
                            if secret_var(name) {
                                return Some(format!("reads secret-looking variable {name}"));
                            }
                        }
                        continue;
                    }
                    return Some(format!("prints the environment (`{tok}.{method}`)"));
                }
                Some(&".") if lang == "node" || lang == "ruby" => {
                    let prop: String = after[1..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if lang == "ruby"
                        && matches!(
                            prop.as_str(),
                            "to_h"
                                | "to_a"
                                | "each"
                                | "map"
                                | "inspect"
                                | "keys"
                                | "values"
                                | "select"
                                | "filter"
                                | "sort"
                        )
                    {
                        return Some(format!("prints the environment (`ENV.{prop}`)"));
                    }
                    if lang == "ruby" && prop == "fetch" {
                        if let Some(name) = after.get(".fetch(".len()..).and_then(literal) {
                            if secret_var(name) {
                                return Some(format!("reads secret-looking variable {name}"));
                            }
                        }
                        continue;
                    }
                    if secret_var(&prop) {
                        return Some(format!("reads secret-looking variable {prop}"));
                    }
                }
                Some(_) => {
                    let open = after.find(['[', '(']).map(|p| p + 1).unwrap_or(0);
                    if let Some(name) = literal(&after[open..]) {
                        if secret_var(name) {
                            return Some(format!("reads secret-looking variable {name}"));
                        }
                    }
                }
                None => {
                    let start = if code[..at].ends_with("os.") {
                        at - 3
                    } else {
                        at
                    };
                    if preceded_by(code, start, pass_on) {
                        continue;
                    }
                    return Some(format!("prints the environment (`{tok}`)"));
                }
            }
        }
    }
    None
}
