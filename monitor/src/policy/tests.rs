//! Policy parsing, validation, merging and error positions.

use super::*;

#[test]
fn the_default_policy_is_valid_and_complete() {
    let p = Policy::default_policy();
    for r in RuleId::ALL {
        assert!(p.rule(r).enabled, "{r}");
    }
    assert_eq!(p.exfil_window_ns, 60_000_000_000);
    let names: Vec<&str> = p.secrets.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "ssh-private-key",
        "aws",
        "gcloud",
        "azure",
        "kubeconfig",
        "docker-config",
        "netrc",
        "git-credentials",
        "github-cli",
        "npmrc",
        "pypirc",
        "cargo-credentials",
        "dotenv",
        "secrets-dir",
        "gnupg",
        "password-store",
        "private-key-file",
        "shadow",
        "claude-code",
        "codex",
        "gemini-cli",
        "aider",
    ] {
        assert!(names.contains(&want), "default catalog lacks {want}");
    }
    assert!(p.egress.allow_loopback && p.egress.allow_resolvers);
    assert!(p
        .egress
        .allow
        .iter()
        .any(|d| d.host_matches("api.anthropic.com")));
    assert!(p
        .egress
        .allow
        .iter()
        .any(|d| d.host_matches("objects.githubusercontent.com")));
    assert!(!p
        .egress
        .allow
        .iter()
        .any(|d| d.host_matches("evil.example")));
}

#[test]
fn show_round_trips() {
    let p = Policy::from_user_str(
        "u.toml",
        "[[secret]]\nname = \"mine\"\npaths = [\"/srv/key\"]\n",
    )
    .unwrap();
    let text = show(&p);
    let back = Policy::from_user_str("shown.toml", &text).unwrap();
    assert_eq!(back.secrets, p.secrets);
    assert_eq!(back.egress, p.egress);
    assert_eq!(back.env, p.env);
    assert_eq!(back.allow, p.allow);
    assert_eq!(back.exfil_window_ns, p.exfil_window_ns);
}

#[test]
fn an_effective_policy_is_taken_as_it_is_not_merged_again() {
    let p = Policy::from_user_str(
        "u.toml",
        "[[secret]]\nname = \"mine\"\npaths = [\"/srv/key\"]\n\n[rules.env-dump]\nenabled = false\n",
    )
    .unwrap();
    let back = Policy::from_effective_str("recorded", &show(&p)).unwrap();
    assert_eq!(back.secrets, p.secrets);
    assert_eq!(back.egress, p.egress);
    assert_eq!(back.env, p.env);
    assert_eq!(back.allow, p.allow);
    assert_eq!(back.env_dump, p.env_dump);

    // A recorded policy with a single catalog entry stays that way: the
    // current default's catalog is not added to it.
    let only = "[[secret]]\nname = \"only\"\npaths = [\"/srv/only\"]\n";
    let p = Policy::from_effective_str("recorded", only).unwrap();
    let names: Vec<&str> = p.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["only"]);
    assert!(Policy::default_policy().secrets.len() > 1);
}

#[test]
fn a_user_file_extends_and_overrides() {
    let user = r#"
[rules.env-dump]
enabled = false

[rules.exfiltration]
window-secs = 120

[alerts]
dedup-window-secs = 3

[[secret]]
name = "ssh-private-key"
allow-exe = ["/usr/bin/ssh"]

[[secret]]
name = "dotenv"
enabled = false

[[secret]]
name = "vault"
paths = ["/srv/vault/*.json"]

[egress]
allow = ["internal.example.com:8443", "10.0.0.0/8", "[fd00::/8]:443"]

[[allow]]
rule = "secret-read"
exe = "/usr/local/bin/deploy"
secret = "vault"
"#;
    let p = Policy::from_user_str("user.toml", user).unwrap();
    assert!(!p.env_dump.enabled);
    assert!(p.secret_read.enabled);
    assert_eq!(p.exfil_window_ns, 120_000_000_000);
    assert_eq!(p.dedup_window_ns, 3_000_000_000);
    let ssh = p
        .secrets
        .iter()
        .find(|s| s.name == "ssh-private-key")
        .unwrap();
    assert_eq!(ssh.allow_exe, vec!["/usr/bin/ssh"]);
    assert!(ssh.paths.contains(&"~/.ssh/id_*".to_string()), "paths kept");
    assert!(!p.secrets.iter().any(|s| s.name == "dotenv"));
    assert!(p.secrets.iter().any(|s| s.name == "vault"));
    assert!(
        p.egress
            .allow
            .iter()
            .any(|d| d.host_matches("api.anthropic.com")),
        "defaults kept"
    );
    assert!(p
        .egress
        .allow
        .iter()
        .any(|d| d.host_matches("internal.example.com") && d.port == Some(8443)));
    assert_eq!(p.allow.len(), 1);
    assert_eq!(p.allow[0].rule, RuleId::SecretRead);

    let p = Policy::from_user_str(
        "u",
        "[egress]\ninherit = false\nallow = [\"example.org\"]\n",
    )
    .unwrap();
    assert_eq!(p.egress.allow.len(), 1, "inherit = false replaces");
}

#[test]
fn errors_carry_file_line_column_and_expectation() {
    struct Case {
        text: &'static str,
        line: usize,
        column: usize,
        contains: &'static str,
    }
    let cases = [
        Case {
            text: "[rules.secret-read]\nenabled = maybe\n",
            line: 2,
            column: 11,
            contains: "",
        },
        Case {
            text: "[rules.secret-read]\nseverity = \"hgh\"\n",
            line: 2,
            column: 12,
            contains: "critical",
        },
        Case {
            text: "\n[rules.nope]\nenabled = true\n",
            line: 2,
            column: 8,
            contains: "secret-read",
        },
        Case {
            text: "[egress]\nallow = [\"ok.example\",\n  \"10.0.0.0/33\"]\n",
            line: 3,
            column: 3,
            contains: "prefix length 33 is over 32",
        },
        Case {
            text: "[egress]\nallow = [\"bad*.example\"]\n",
            line: 2,
            column: 10,
            contains: "not a host name",
        },
        Case {
            text: "[egress]\nallow = [\"example.com:99999\"]\n",
            line: 2,
            column: 10,
            contains: "not a port",
        },
        Case {
            text: "[[secret]]\nname = \"x\"\npaths = [\"~/a/[b\"]\n",
            line: 3,
            column: 10,
            contains: "invalid glob",
        },
        Case {
            text: "[[secret]]\nname = \"new-one\"\n",
            line: 2,
            column: 8,
            contains: "needs `paths`",
        },
        Case {
            text: "[[secret]]\nname = \"x\"\npaths = [\"/a\"]\nallow-exe = [\"git\"]\n",
            line: 4,
            column: 14,
            contains: "not an absolute path",
        },
        Case {
            text: "[[allow]]\nrule = \"secret-reed\"\nexe = \"/x\"\n",
            line: 2,
            column: 8,
            contains: "unknown rule",
        },
        Case {
            text: "[[allow]]\nrule = \"env-dump\"\n",
            line: 2,
            column: 8,
            contains: "without a condition",
        },
        Case {
            text: "[[allow]]\nrule = \"env-dump\"\nexe = \"/x\"\npath = \"/y\"\n",
            line: 4,
            column: 8,
            contains: "does not apply",
        },
        Case {
            text: "[[allow]]\nrule = \"secret-read\"\nsecret = \"nope\"\n",
            line: 3,
            column: 10,
            contains: "no secret named",
        },
        Case {
            text: "[rules.env-dump]\nwindow-secs = 5\n",
            line: 2,
            column: 15,
            contains: "exfiltration",
        },
        Case {
            text: "[rules.exfiltration]\nwindow-secs = 0\n",
            line: 2,
            column: 15,
            contains: "out of range",
        },
        Case {
            text: "version = 2\n",
            line: 1,
            column: 11,
            contains: "version",
        },
        Case {
            text: "[secret]\nname = 1\n",
            line: 1,
            column: 1,
            contains: "",
        },
        Case {
            text: "a = \"unterminated\n",
            line: 1,
            column: 18,
            contains: "",
        },
    ];
    for c in cases {
        let err = Policy::from_user_str("my.toml", c.text).expect_err(c.text);
        let PolicyError::Invalid {
            file, line, column, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        let shown = err.to_string();
        assert_eq!(file, "my.toml");
        assert_eq!(
            (*line, *column),
            (c.line, c.column),
            "{:?} -> {shown}",
            c.text
        );
        assert!(
            shown.starts_with(&format!("my.toml:{}:{}: ", c.line, c.column)),
            "{shown}"
        );
        assert!(shown.contains(c.contains), "{:?} -> {shown}", c.text);
    }
}

#[test]
fn a_missing_file_is_a_read_error() {
    let err = Policy::load(Some(Path::new("/nonexistent/policy.toml"))).unwrap_err();
    assert!(matches!(err, PolicyError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/policy.toml"));
}

#[test]
fn destinations_parse() {
    let ok = [
        ("api.example.com", "api.example.com"),
        ("API.Example.com.", "api.example.com"),
        ("*.example.com:443", "*.example.com:443"),
        ("10.1.2.3", "10.1.2.3/32"),
        ("10.1.2.3:22", "10.1.2.3/32:22"),
        ("10.1.2.0/24", "10.1.2.0/24"),
        ("10.1.2.9/24:5432", "10.1.2.0/24:5432"),
        ("::1", "::1/128"),
        ("fd00::/8", "fd00::/8"),
        ("[2001:db8::1]:443", "[2001:db8::1/128]:443"),
        ("[fd00::/8]", "fd00::/8"),
    ];
    for (s, want) in ok {
        assert_eq!(DestPattern::from_str(s).unwrap().to_string(), want, "{s}");
    }
    for bad in [
        "",
        "ex ample.com",
        "*",
        "a.*.com",
        "10.0.0.0/40",
        "host:0",
        "[::1",
        "x..y",
        "1.2.3.4:http",
    ] {
        assert!(DestPattern::from_str(bad).is_err(), "{bad}");
    }
}

#[test]
fn host_wildcards() {
    let cases = [
        (
            "*.githubusercontent.com",
            "objects.githubusercontent.com",
            true,
        ),
        ("*.githubusercontent.com", "a.b.githubusercontent.com", true),
        ("*.githubusercontent.com", "githubusercontent.com", false),
        (
            "*.githubusercontent.com",
            "evilgithubusercontent.com",
            false,
        ),
        (
            "*.githubusercontent.com",
            "x.githubusercontent.com.evil.net",
            false,
        ),
        ("github.com", "GitHub.com.", true),
        ("github.com", "api.github.com", false),
    ];
    for (pat, name, want) in cases {
        assert_eq!(host_matches(pat, name), want, "{pat} vs {name}");
    }
}

#[test]
fn cidrs_contain() {
    let n = IpNet::parse("10.0.0.0/8").unwrap();
    assert!(n.contains("10.200.1.1".parse().unwrap()));
    assert!(
        n.contains("::ffff:10.1.1.1".parse().unwrap()),
        "v4-mapped counts as v4"
    );
    assert!(!n.contains("11.0.0.1".parse().unwrap()));
    assert!(!n.contains("::1".parse().unwrap()));
    let all = IpNet::parse("0.0.0.0/0").unwrap();
    assert!(all.contains("8.8.8.8".parse().unwrap()));
    let v6 = IpNet::parse("fd00::/8").unwrap();
    assert!(v6.contains("fd12::1".parse().unwrap()));
}

#[test]
fn an_ipv4_mapped_entry_matches_like_its_ipv4_address() {
    let one = IpNet::parse("::ffff:1.2.3.4").unwrap();
    assert!(one.contains("1.2.3.4".parse().unwrap()));
    assert!(one.contains("::ffff:1.2.3.4".parse().unwrap()));
    assert!(!one.contains("1.2.3.5".parse().unwrap()));
    let net = IpNet::parse("::ffff:10.0.0.0/104").unwrap();
    assert_eq!(net, IpNet::parse("10.0.0.0/8").unwrap());
    assert!(net.contains("10.9.9.9".parse().unwrap()));
    let err = IpNet::parse("::ffff:10.0.0.0/80").unwrap_err();
    assert!(err.contains("IPv4-mapped"), "{err}");
}

#[test]
fn path_patterns() {
    assert_eq!(
        PathPattern::parse("~/.aws/credentials").unwrap(),
        PathPattern::Home(".aws/credentials".into())
    );
    assert_eq!(
        PathPattern::parse("**/.env").unwrap(),
        PathPattern::Anywhere(".env".into())
    );
    assert!(PathPattern::parse("~alice/.ssh").is_err());
    assert!(PathPattern::parse("~/").is_err());
    assert_eq!(
        PathPattern::parse("~/.ssh/id_*")
            .unwrap()
            .globs(&["/root".into(), "/home/a/".into()]),
        vec!["/root/.ssh/id_*", "/home/a/.ssh/id_*"]
    );
}
