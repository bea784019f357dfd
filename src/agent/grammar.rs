//! GBNF grammars that constrain the model's reply to a proposal that parses: an idea line, then
//! SEARCH/REPLACE blocks, or `SET` lines naming only constants that exist, each with a value of
//! the constant's type. llama.cpp samples only tokens the grammar allows.

use super::edit::Constant;

/// An idea line, then one or two SEARCH/REPLACE blocks of up to 4 lines of up to 121 characters.
/// Body lines may not start with the block markers' first characters, so a block always parses;
/// the bounds keep a small model from running to the token limit inside a block. An idea holds
/// no `<` or `>`: the formats' examples are `<placeholders>`, which a small model would copy.
pub fn replace_grammar() -> String {
    r#"root ::= "IDEA: " idea "\n" block block?
idea ::= [^\n<>=] [^\n<>]{7,100}
block ::= "<<<<<<< SEARCH\n" body "=======\n" body ">>>>>>> REPLACE\n"
body ::= line{1,4}
line ::= ([^\n<>=] [^\n]{0,120})? "\n"
"#
    .to_string()
}

/// An idea line, then one to three `SET NAME = VALUE` lines over `constants`, or None when no
/// constant has a type this grammar can write.
pub fn set_grammar(constants: &[Constant]) -> Option<String> {
    let alternatives: Vec<String> = constants
        .iter()
        .filter_map(|c| value_rule(&c.ty).map(|rule| format!("\"SET {} = \" {rule}", c.name)))
        .collect();
    if alternatives.is_empty() {
        return None;
    }
    Some(format!(
        r#"root ::= "IDEA: " idea "\n" set set? set?
idea ::= [^\n<>=] [^\n<>]{{7,100}}
set ::= ({}) "\n"
float ::= [0-9] [0-9]? [0-9]? "." [0-9] [0-9]? [0-9]? [0-9]? ("e-" [1-9] [0-9]?)?
int ::= "0" | [1-9] [0-9]? [0-9]? [0-9]? [0-9]? [0-9]?
usize ::= int | "1 << " [0-9] [0-9]?
optusize ::= "None" | "Some(" int ")"
word ::= "\"" [A-Za-z0-9_]{{1,16}} "\""
bool ::= "true" | "false"
"#,
        alternatives.join(" | ")
    ))
}

/// An idea line, then one to three `TUNE NAME` lines over `constants` (those the sampler can
/// tune: the caller asks it), or None when there are none.
pub fn tune_grammar(constants: &[Constant]) -> Option<String> {
    let names: Vec<String> = constants
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect();
    if names.is_empty() {
        return None;
    }
    Some(format!(
        r#"root ::= "IDEA: " idea "\n" tune tune? tune?
idea ::= [^\n<>=] [^\n<>]{{7,100}}
tune ::= "TUNE " ({}) "\n"
"#,
        names.join(" | ")
    ))
}

/// The grammar rule for a value of Rust type `ty`, for the types hyperparameters use.
fn value_rule(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "f64" | "f32" => "float",
        "usize" | "u64" | "u32" => "usize",
        "i64" | "i32" => "int",
        "Option<usize>" => "optusize",
        "&str" | "&'static str" => "word",
        "bool" => "bool",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::edit::constants;

    #[test]
    fn the_set_grammar_names_every_typed_constant_of_the_baseline() {
        let consts = constants(include_str!("../../train/src/train.rs"));
        let g = set_grammar(&consts).unwrap();
        assert!(g.contains("\"SET MATRIX_LR = \" float"));
        assert!(g.contains("\"SET DEPTH_CPU = \" usize"));
        assert!(g.contains("\"SET WINDOW_PATTERN = \" word"));
        assert!(g.contains("\"SET TOKENS_PER_STEP_CPU = \" usize"));
        // A constant of another type is left out rather than given a value that cannot compile.
        let odd = [Constant {
            name: "X".into(),
            ty: "(f64, f64)".into(),
            value: "(1.0, 2.0)".into(),
        }];
        assert!(set_grammar(&odd).is_none());
    }

    #[test]
    fn the_tune_grammar_names_the_constants_it_is_given() {
        let consts = constants(include_str!("../../train/src/train.rs"));
        let lr: Vec<Constant> = consts
            .into_iter()
            .filter(|c| c.name.ends_with("_LR"))
            .collect();
        let g = tune_grammar(&lr).unwrap();
        assert!(g.contains("tune ::= \"TUNE \" (\"EMBEDDING_LR\" | \"UNEMBEDDING_LR\""));
        assert!(!g.contains("\"SEED\"") && !g.contains("\"DEPTH_CPU\""));
        assert!(tune_grammar(&[]).is_none());
        assert!(g.starts_with("root ::= \"IDEA: \" idea \"\\n\" tune tune? tune?"));
    }
}
