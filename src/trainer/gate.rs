//! The static gate: a training file is refused before compiling when it reaches for things a
//! training file never needs. Rust can read any file at compile time (`include_str!`, `#[path]`),
//! read the environment (`env!`), and do anything at run time; the gate refuses the means by name.
//! It is a first line of defence and a clear message for the agent, not the confinement itself.

/// Macros that read files or the environment at compile time, or emit raw machine code.
const FORBIDDEN_MACROS: [(&str, &str); 7] = [
    ("include", "compile-time file access"),
    ("include_str", "compile-time file access"),
    ("include_bytes", "compile-time file access"),
    ("env", "compile-time environment access"),
    ("option_env", "compile-time environment access"),
    ("asm", "inline assembly"),
    ("global_asm", "inline assembly"),
];

/// Identifiers that name capabilities outside training: files, processes, sockets, the OS.
const FORBIDDEN_NAMES: [(&str, &str); 8] = [
    ("unsafe", "unsafe code"),
    ("extern", "foreign functions or crates"),
    ("fs", "file-system access (std::fs)"),
    ("process", "processes (std::process)"),
    ("net", "networking (std::net)"),
    ("env", "the environment (std::env)"),
    ("os", "OS-specific APIs (std::os)"),
    ("libc", "foreign functions (libc)"),
];

/// Harness modules that only the harness itself may use.
const HARNESS_INTERNALS: [&str; 8] = [
    "meta", "summary", "eval", "check", "loader", "device", "error", "ENV_",
];

/// The reasons `source` is refused; empty when it passes.
pub fn violations(source: &str) -> Vec<String> {
    let tokens = tokenize(&strip_comments_and_literals(source));
    let mut found = Vec::new();
    let mut note = |line: usize, what: String| {
        let entry = format!("line {line}: {what}");
        if !found.contains(&entry) {
            found.push(entry);
        }
    };
    for (i, tok) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1).map(|t| t.text.as_str());
        // By name, with or without `!`: a `macro_rules!` wrapper can take the macro's name as an
        // identifier (`m!(include_str)`) and call it where no `include_str!` is written.
        if let Some((_, why)) = FORBIDDEN_MACROS.iter().find(|(m, _)| *m == tok.text) {
            if next == Some("!") {
                note(tok.line, format!("`{}!` ({why})", tok.text));
                continue;
            }
            if FORBIDDEN_NAMES.iter().all(|(n, _)| *n != tok.text) {
                note(
                    tok.line,
                    format!("`{}` ({why}, named as an identifier)", tok.text),
                );
                continue;
            }
        }
        if let Some((_, why)) = FORBIDDEN_NAMES.iter().find(|(n, _)| *n == tok.text) {
            note(tok.line, format!("`{}` ({why})", tok.text));
        }
        if tok.text == "#"
            && next == Some("[")
            && tokens.get(i + 2).is_some_and(|t| t.text == "path")
        {
            note(tok.line, "`#[path]` (loads another source file)".into());
        }
        // `mod name;` makes the compiler read `name.rs` from disk.
        if tok.text == "mod" && tokens.get(i + 2).is_some_and(|t| t.text == ";") {
            note(
                tok.line,
                "`mod name;` (loads another source file; write the module inline)".into(),
            );
        }
        if tok.text == "harness" && next == Some("::") {
            // `harness::x` or `harness::{x, y}`: the first path segments after the crate name.
            let segments: Vec<&Token> = match tokens.get(i + 2) {
                Some(t) if t.text == "{" => tokens[i + 3..]
                    .iter()
                    .take_while(|t| t.text != "}")
                    .collect(),
                Some(t) => vec![t],
                None => vec![],
            };
            for inner in segments {
                if HARNESS_INTERNALS.iter().any(|h| inner.text.starts_with(h)) {
                    note(
                        inner.line,
                        format!("`harness::{}` (the harness's internals)", inner.text),
                    );
                }
            }
        }
    }
    found
}

struct Token {
    text: String,
    line: usize,
}

/// Identifiers, `::`, and single punctuation characters, with their line numbers.
fn tokenize(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            // Raw identifiers (`r#fs`) name the same thing.
            let mut text: String = chars[start..i].iter().collect();
            if text == "r" && chars.get(i) == Some(&'#') {
                i += 1;
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                text = chars[start..i].iter().collect();
            }
            tokens.push(Token { text, line });
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push(Token {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            tokens.push(Token {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    tokens
}

/// Replaces comments and the contents of string and character literals with spaces (keeping
/// newlines), so words inside them are not mistaken for code.
fn strip_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&chars, i)
        {
            // Raw string r"..." or r#"..."#: ends at a quote followed by as many hashes.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push('"');
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                out.push(blank(chars[j]));
                j += 1;
            }
            out.push('"');
            i = j;
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}'); otherwise a lifetime, kept as is.
            let end = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&ch| ch == '\'')
                    .map(|p| i + 2 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    out.push_str("' '");
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: &str) -> Vec<String> {
        let v = violations(code);
        assert!(!v.is_empty(), "expected a refusal for:\n{code}");
        v
    }

    #[test]
    fn the_baseline_passes() {
        let baseline = include_str!("../../train/src/train.rs");
        assert_eq!(violations(baseline), Vec::<String>::new());
    }

    #[test]
    fn compile_time_file_and_environment_access_is_refused() {
        assert!(
            refused(r#"const P: &str = include_str!("/etc/passwd");"#)[0]
                .contains("compile-time file access")
        );
        assert!(
            refused(r#"const B: &[u8] = include_bytes!("../../secret");"#)[0]
                .contains("include_bytes!")
        );
        assert!(refused(r#"const H: &str = env!("HOME");"#)[0]
            .contains("compile-time environment access"));
        assert!(refused("#[path = \"/etc/x.rs\"] mod x;")
            .iter()
            .any(|v| v.contains("#[path]")));
        assert!(refused("mod helpers;")[0].contains("loads another source file"));
        let wrapped = "macro_rules! m { ($x:ident) => { $x!(\"/etc/passwd\") }; }\nconst P: &str = m!(include_str);";
        assert!(refused(wrapped)[0].contains("line 2: `include_str` (compile-time file access"));
    }

    #[test]
    fn processes_sockets_files_and_unsafe_are_refused() {
        assert!(
            refused("fn f() { std::process::Command::new(\"sh\"); }")[0].contains("std::process")
        );
        assert!(refused("use std::net::TcpStream;")[0].contains("std::net"));
        assert!(refused("use std::{fs, io};")[0].contains("std::fs"));
        assert!(refused("fn f() { let _ = std::env::var(\"X\"); }")[0].contains("std::env"));
        assert!(refused("fn f() { unsafe { } }")[0].contains("unsafe code"));
        assert!(refused("extern \"C\" { fn system(c: *const u8) -> i32; }")[0].contains("foreign"));
        assert!(refused("use std::r#fs;")[0].contains("std::fs"));
    }

    #[test]
    fn harness_internals_are_refused_but_its_api_is_not() {
        assert!(refused("use harness::summary::Summary;")[0].contains("internals"));
        assert!(refused("fn f() { harness::meta::write_atomic(); }")[0].contains("harness::meta"));
        assert!(refused("const K: &str = harness::ENV_RUN_DIR;")[0].contains("ENV_RUN_DIR"));
        assert!(
            refused("use harness::{Harness, loader::TrainLoader};")[0].contains("harness::loader")
        );
        assert_eq!(
            violations("use harness::{Harness, LanguageModel}; fn main() { harness::run(train) }"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn words_in_comments_strings_and_lifetimes_are_not_code() {
        let code = r##"
            // unsafe std::process in a comment
            /* include_str!("x") /* nested */ env!("Y") */
            fn f<'a>(x: &'a str) -> char {
                let _ = "std::fs::read and unsafe";
                let _ = r#"include_bytes!("z")"#;
                let _ = '\'';
                'x'
            }
        "##;
        assert_eq!(violations(code), Vec::<String>::new());
    }

    #[test]
    fn refusals_name_the_line() {
        let v = refused("fn main() {}\n\nuse std::net::UdpSocket;\n");
        assert_eq!(v, vec!["line 3: `net` (networking (std::net))".to_string()]);
    }
}
