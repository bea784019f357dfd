//! Proposals and how they apply. A proposal is a one-line idea plus either SEARCH/REPLACE blocks
//! against the training file, `SET NAME = VALUE` lines for its hyperparameter constants, or
//! `TUNE NAME` lines naming constants whose values the research loop's sampler chooses. Only the
//! training file's text is ever changed: an edit is a function from that text to new text.

#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    Replace {
        search: String,
        replace: String,
    },
    Set {
        name: String,
        value: String,
    },
    /// A constant to tune: its value comes from the sampler (`Proposal::tuned`).
    Tune {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub idea: String,
    pub edits: Vec<Edit>,
}

/// Why a proposal was not used; the text goes back into the next prompt.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("the reply is not in the required format: {0}")]
    Format(String),
    #[error("a SEARCH block was not found in the training file (copy the lines exactly): {0:?}")]
    NotFound(String),
    #[error("a SEARCH block matches {count} places in the training file; include more lines so it matches one: {search:?}")]
    Ambiguous { search: String, count: usize },
    #[error("no constant named {0} in the training file")]
    NoSuchConstant(String),
    #[error("the edit changes nothing")]
    NoOp,
    #[error("the edited file is identical to one already tried")]
    AlreadyTried,
    #[error("the edited file is the same as {of}'s but for values within 5% ({detail}): try something else")]
    NearDuplicate { of: String, detail: String },
    #[error("{changes} build the same model as the file they change ({model}): no run could tell them apart; choose values that change the model, or another change")]
    Inert { changes: String, model: String },
    #[error("{changes} build the same model as the file they change ({model}), and without them: {rest}")]
    InertRest {
        changes: String,
        model: String,
        rest: Box<Rejection>,
    },
    #[error("{0} cannot be tuned: the sampler tunes numbers with a value to scale (not a seed, a string, a bool or a None); SET it instead")]
    CannotTune(String),
}

const SEARCH: &str = "<<<<<<< SEARCH";
const DIVIDER: &str = "=======";
const REPLACE: &str = ">>>>>>> REPLACE";

/// Parses the model's reply.
pub fn parse(reply: &str) -> Result<Proposal, Rejection> {
    let mut lines = reply.lines().peekable();
    let idea = lines
        .next()
        .and_then(|l| l.trim().strip_prefix("IDEA:"))
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Rejection::Format("the first line must be `IDEA: <one line>`".into()))?;
    let mut edits = Vec::new();
    while let Some(line) = lines.next() {
        let line_trimmed = line.trim();
        if line_trimmed.is_empty() {
            continue;
        }
        if let Some(name) = line_trimmed.strip_prefix("TUNE ") {
            edits.push(Edit::Tune {
                name: name.trim().to_string(),
            });
        } else if let Some(rest) = line_trimmed.strip_prefix("SET ") {
            let (name, value) = rest.split_once('=').ok_or_else(|| {
                Rejection::Format(format!("`{line_trimmed}` is not `SET NAME = VALUE`"))
            })?;
            edits.push(Edit::Set {
                name: name.trim().to_string(),
                value: value.trim().trim_end_matches(';').to_string(),
            });
        } else if line_trimmed == SEARCH {
            let search = take_until(&mut lines, DIVIDER)?;
            let replace = take_until(&mut lines, REPLACE)?;
            edits.push(Edit::Replace { search, replace });
        } else {
            return Err(Rejection::Format(format!(
                "unexpected line `{line_trimmed}`: expected `{SEARCH}`, `SET NAME = VALUE` or `TUNE NAME`"
            )));
        }
    }
    if edits.is_empty() {
        return Err(Rejection::Format(
            "no SEARCH/REPLACE block, SET line or TUNE line".into(),
        ));
    }
    Ok(Proposal { idea, edits })
}

impl Proposal {
    /// The constants the proposal asks the sampler to tune.
    pub fn tunes(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for e in &self.edits {
            if let Edit::Tune { name } = e {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        names
    }

    /// The proposal with its TUNE edits replaced by SET edits of `values` (name, value); a name
    /// tuned twice is set once.
    pub fn tuned(&self, values: &[(String, String)]) -> Proposal {
        let mut set: Vec<&str> = Vec::new();
        let mut edits = Vec::new();
        for e in &self.edits {
            match e {
                Edit::Tune { name } if set.contains(&name.as_str()) => {}
                Edit::Tune { name } => {
                    set.push(name);
                    edits.extend(values.iter().filter(|(n, _)| n == name).map(|(n, v)| {
                        Edit::Set {
                            name: n.clone(),
                            value: v.clone(),
                        }
                    }));
                }
                other => edits.push(other.clone()),
            }
        }
        Proposal {
            idea: self.idea.clone(),
            edits,
        }
    }
}

fn take_until<'a>(
    lines: &mut impl Iterator<Item = &'a str>,
    marker: &str,
) -> Result<String, Rejection> {
    let mut body = String::new();
    for line in lines.by_ref() {
        if line.trim_end() == marker {
            return Ok(body);
        }
        body.push_str(line);
        body.push('\n');
    }
    Err(Rejection::Format(format!(
        "a block is missing its `{marker}` line"
    )))
}

/// Applies every edit in order; the result must differ from `source`.
pub fn apply(source: &str, proposal: &Proposal) -> Result<String, Rejection> {
    let mut text = source.to_string();
    for edit in &proposal.edits {
        text = match edit {
            Edit::Replace { search, replace } => replace_once(&text, search, replace)?,
            Edit::Set { name, value } => set_constant(&text, name, value)?,
            // Checked, not applied: the sampler gives the value (`Proposal::tuned`).
            Edit::Tune { name } => {
                if !constants(&text).iter().any(|c| &c.name == name) {
                    return Err(Rejection::NoSuchConstant(name.clone()));
                }
                text
            }
        };
    }
    if text == source {
        return Err(Rejection::NoOp);
    }
    Ok(text)
}

/// Exact match first, then a match that ignores each line's leading and trailing whitespace
/// (small models often get indentation wrong). The match must be unique.
fn replace_once(text: &str, search: &str, replace: &str) -> Result<String, Rejection> {
    if search.trim().is_empty() {
        return Err(Rejection::Format("a SEARCH block is empty".into()));
    }
    match text.matches(search).count() {
        1 => return Ok(text.replacen(search, replace, 1)),
        n if n > 1 => {
            return Err(Rejection::Ambiguous {
                search: search.to_string(),
                count: n,
            })
        }
        _ => {}
    }
    let file_lines: Vec<&str> = text.lines().collect();
    let wanted: Vec<&str> = trim_blank_ends(search.lines().collect());
    let starts: Vec<usize> = (0..file_lines.len().saturating_sub(wanted.len() - 1))
        .filter(|&i| {
            wanted
                .iter()
                .enumerate()
                .all(|(k, w)| file_lines[i + k].trim() == w.trim())
        })
        .collect();
    match starts.as_slice() {
        [] => Err(Rejection::NotFound(search.to_string())),
        [start] => {
            // Each replacement line takes the indentation correction of the search line at the
            // same position (the last one past the end): models often drop or add indentation.
            let indent = |s: &str| (s.len() - s.trim_start().len()) as isize;
            let replacement: Vec<String> = replace
                .lines()
                .enumerate()
                .map(|(i, l)| {
                    let k = i.min(wanted.len() - 1);
                    reindent(l, indent(file_lines[start + k]) - indent(wanted[k]))
                })
                .collect();
            let mut out: Vec<String> = file_lines[..*start].iter().map(|s| s.to_string()).collect();
            out.extend(replacement);
            out.extend(
                file_lines[start + wanted.len()..]
                    .iter()
                    .map(|s| s.to_string()),
            );
            let mut joined = out.join("\n");
            if text.ends_with('\n') {
                joined.push('\n');
            }
            Ok(joined)
        }
        many => Err(Rejection::Ambiguous {
            search: search.to_string(),
            count: many.len(),
        }),
    }
}

fn trim_blank_ends(mut lines: Vec<&str>) -> Vec<&str> {
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    while lines.first().is_some_and(|l| l.trim().is_empty()) {
        lines.remove(0);
    }
    lines
}

fn reindent(line: &str, shift: isize) -> String {
    if line.trim().is_empty() {
        return String::new();
    }
    if shift >= 0 {
        format!("{}{line}", " ".repeat(shift as usize))
    } else {
        let strip = (-shift) as usize;
        let leading = line.len() - line.trim_start().len();
        line[strip.min(leading)..].to_string()
    }
}

/// A `const NAME: TYPE = VALUE;` line of the training file.
#[derive(Debug, Clone, PartialEq)]
pub struct Constant {
    pub name: String,
    pub ty: String,
    pub value: String,
}

/// A top-level constant's line in parts: `const NAME: TYPE = VALUE;` and whatever follows the
/// `;` (a trailing comment), which a SET edit keeps.
struct ConstLine<'a> {
    name: &'a str,
    ty: &'a str,
    value: &'a str,
    after: &'a str,
}

fn const_line(line: &str) -> Option<ConstLine<'_>> {
    let rest = line.strip_prefix("const ")?;
    let (name, rest) = rest.split_once(':')?;
    let (ty, rest) = rest.split_once('=')?;
    let end = statement_end(rest)?;
    Some(ConstLine {
        name: name.trim(),
        ty: ty.trim(),
        value: rest[..end].trim(),
        after: &rest[end + 1..],
    })
}

/// The byte index of the `;` that ends a value, skipping any inside a string literal.
fn statement_end(value: &str) -> Option<usize> {
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            ';' if !in_string => return Some(i),
            _ => {}
        }
    }
    None
}

/// The hyperparameter constants declared at the top level of `source`.
pub fn constants(source: &str) -> Vec<Constant> {
    source
        .lines()
        .filter_map(const_line)
        .map(|c| Constant {
            name: c.name.to_string(),
            ty: c.ty.to_string(),
            value: c.value.to_string(),
        })
        .collect()
}

fn set_constant(text: &str, name: &str, value: &str) -> Result<String, Rejection> {
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match const_line(line) {
            Some(c) if c.name == name && !found => {
                found = true;
                format!("const {name}: {} = {value};{}", c.ty, c.after)
            }
            _ => line.to_string(),
        })
        .collect();
    if !found {
        return Err(Rejection::NoSuchConstant(name.to_string()));
    }
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// A unified diff of the change, for people and the journal.
pub fn diff(before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(2)
        .header("train.rs", "train.rs (proposed)")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "const LR: f64 = 0.04;\nconst DEPTH: Option<usize> = None;\n\nfn f() {\n    let a = 1;\n    let b = 2;\n}\n\nfn g() {\n    let b = 2;\n}\n";

    fn replace(search: &str, replace: &str) -> Proposal {
        Proposal {
            idea: "x".into(),
            edits: vec![Edit::Replace {
                search: search.into(),
                replace: replace.into(),
            }],
        }
    }

    #[test]
    fn parses_both_formats() {
        let p = parse("IDEA: faster\n<<<<<<< SEARCH\n    let a = 1;\n=======\n    let a = 3;\n>>>>>>> REPLACE\n").unwrap();
        assert_eq!(p.idea, "faster");
        assert_eq!(
            p.edits,
            vec![Edit::Replace {
                search: "    let a = 1;\n".into(),
                replace: "    let a = 3;\n".into()
            }]
        );
        let p = parse("IDEA: lr\nSET LR = 0.05\nSET DEPTH = Some(6)\n").unwrap();
        assert_eq!(
            p.edits[1],
            Edit::Set {
                name: "DEPTH".into(),
                value: "Some(6)".into()
            }
        );
        assert!(matches!(parse("hello"), Err(Rejection::Format(_))));
        assert!(matches!(
            parse("IDEA: x\n<<<<<<< SEARCH\na\n"),
            Err(Rejection::Format(_))
        ));
        assert!(matches!(parse("IDEA: x\n"), Err(Rejection::Format(_))));
    }

    #[test]
    fn tune_names_constants_for_the_sampler() {
        let p = parse("IDEA: tune the rate\nTUNE LR\nSET DEPTH = Some(3)\n").unwrap();
        assert_eq!(p.tunes(), ["LR"]);
        // Unresolved, a TUNE changes nothing; resolved, it is a SET.
        assert_eq!(
            apply(
                FILE,
                &Proposal {
                    idea: "x".into(),
                    edits: vec![Edit::Tune { name: "LR".into() }]
                }
            ),
            Err(Rejection::NoOp)
        );
        let tuned = p.tuned(&[("LR".into(), "0.07".into())]);
        let out = apply(FILE, &tuned).unwrap();
        assert!(
            out.starts_with("const LR: f64 = 0.07;\nconst DEPTH: Option<usize> = Some(3);"),
            "{out}"
        );
        // A name tuned twice is one value, set once.
        let twice = parse("IDEA: tune the rate twice\nTUNE LR\nTUNE LR\n").unwrap();
        assert_eq!(twice.tunes(), ["LR"]);
        assert_eq!(twice.tuned(&[("LR".into(), "0.07".into())]).edits.len(), 1);
        let missing = Proposal {
            idea: "x".into(),
            edits: vec![Edit::Tune {
                name: "NOPE".into(),
            }],
        };
        assert_eq!(
            apply(FILE, &missing),
            Err(Rejection::NoSuchConstant("NOPE".into()))
        );
    }

    #[test]
    fn exact_match_applies() {
        let out = apply(FILE, &replace("    let a = 1;\n", "    let a = 7;\n")).unwrap();
        assert!(out.contains("let a = 7;") && !out.contains("let a = 1;"));
    }

    #[test]
    fn whitespace_tolerant_match_applies_and_keeps_the_file_indentation() {
        let out = apply(
            FILE,
            &replace("let a = 1;\nlet b = 2;\n}", "let a = 5;\nlet b = 6;\n}"),
        )
        .unwrap();
        assert!(
            out.contains("fn f() {\n    let a = 5;\n    let b = 6;\n}\n"),
            "{out}"
        );
        assert!(out.contains("fn g() {\n    let b = 2;\n}"));
    }

    #[test]
    fn ambiguous_missing_and_noop_edits_are_rejected() {
        assert!(matches!(
            apply(FILE, &replace("    let b = 2;\n", "    let b = 3;\n")),
            Err(Rejection::Ambiguous { count: 2, .. })
        ));
        assert!(matches!(
            apply(FILE, &replace("let z = 9;", "let z = 1;")),
            Err(Rejection::NotFound(_))
        ));
        assert_eq!(
            apply(FILE, &replace("    let a = 1;\n", "    let a = 1;\n")),
            Err(Rejection::NoOp)
        );
    }

    #[test]
    fn set_changes_one_constant() {
        let p = Proposal {
            idea: "x".into(),
            edits: vec![Edit::Set {
                name: "LR".into(),
                value: "0.05".into(),
            }],
        };
        let out = apply(FILE, &p).unwrap();
        assert!(out.starts_with("const LR: f64 = 0.05;\n"));
        let p = Proposal {
            idea: "x".into(),
            edits: vec![Edit::Set {
                name: "NOPE".into(),
                value: "1".into(),
            }],
        };
        assert_eq!(
            apply(FILE, &p),
            Err(Rejection::NoSuchConstant("NOPE".into()))
        );
        let consts = constants(FILE);
        assert_eq!(consts.len(), 2);
        assert_eq!(
            consts[1],
            Constant {
                name: "DEPTH".into(),
                ty: "Option<usize>".into(),
                value: "None".into()
            }
        );
    }

    /// A comment after a constant is read past and kept by a SET edit; a `;` inside a string
    /// value is part of the value.
    #[test]
    fn trailing_comments_survive_a_set_edit() {
        let file = "const LR: f64 = 0.04; // Muon's rate\nconst P: &str = \"S;L\"; // odd\n";
        let consts = constants(file);
        assert_eq!(consts[0].value, "0.04");
        assert_eq!(consts[1].value, "\"S;L\"");
        let p = Proposal {
            idea: "x".into(),
            edits: vec![
                Edit::Set {
                    name: "LR".into(),
                    value: "0.05".into(),
                },
                Edit::Set {
                    name: "P".into(),
                    value: "\"SL\"".into(),
                },
            ],
        };
        assert_eq!(
            apply(file, &p).unwrap(),
            "const LR: f64 = 0.05; // Muon's rate\nconst P: &str = \"SL\"; // odd\n"
        );
    }

    /// The edit contract: the agent may see only the hyperparameter section, so every constant
    /// there says what it is in a doc comment right above it.
    #[test]
    fn every_constant_of_the_baseline_has_a_doc_comment() {
        let source = include_str!("../../train/src/train.rs");
        let lines: Vec<&str> = source.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if const_line(line).is_some() {
                assert!(
                    i > 0 && lines[i - 1].starts_with("/// "),
                    "line {}: `{line}` has no doc comment above it",
                    i + 1
                );
            }
        }
        assert!(constants(source).len() >= 25);
    }

    #[test]
    fn the_baseline_exposes_its_hyperparameters() {
        let consts = constants(include_str!("../../train/src/train.rs"));
        let names: Vec<&str> = consts.iter().map(|c| c.name.as_str()).collect();
        for expected in [
            "DEPTH_CPU",
            "DEPTH_GPU",
            "MATRIX_LR",
            "EMBEDDING_LR",
            "WARMDOWN_RATIO",
            "WINDOW_PATTERN",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
    }
}
