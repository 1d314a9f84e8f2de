//! The lexer: a command string split into simple commands of unquoted words,
//! with the variable expansions each word makes.

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
                        '`' => i = backquote(&chars, i, out, depth),
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
                in_word = true;
                i = backquote(&chars, i, out, depth);
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

/// A backquoted command substitution at `chars[i] == '`'`: lex its body as
/// commands of their own; return the index after the closing backquote.
fn backquote(chars: &[char], i: usize, out: &mut Vec<Vec<Word>>, depth: usize) -> usize {
    let j = (i + 1..chars.len())
        .find(|&j| chars[j] == '`')
        .unwrap_or(chars.len());
    let inner: String = chars[i + 1..j].iter().collect();
    if depth < 8 {
        lex(&inner, out, depth + 1);
    }
    j + 1
}

pub(super) fn is_assignment(w: &Word) -> bool {
    match w.text.split_once('=') {
        Some((n, _)) => {
            !n.is_empty()
                && n.starts_with(is_name_start)
                && n.chars().all(|c| is_name_char(c) || c == '+')
        }
        None => false,
    }
}
