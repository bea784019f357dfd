//! Chat formatting. A GGUF usually carries its chat template, which llama.cpp applies; a base
//! model may carry none (the default Gemma 3 270M does not), and then the template of its
//! architecture's family is used instead.

/// Chat formats for models whose GGUF has no template, chosen by `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Family {
    Gemma,
    ChatMl,
    Llama3,
    Phi3,
}

impl Family {
    pub fn for_architecture(arch: &str) -> Self {
        match arch {
            a if a.starts_with("gemma") => Family::Gemma,
            "llama" => Family::Llama3,
            a if a.starts_with("phi3") => Family::Phi3,
            _ => Family::ChatMl,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Gemma => "gemma",
            Family::ChatMl => "chatml",
            Family::Llama3 => "llama3",
            Family::Phi3 => "phi3",
        }
    }

    /// The prompt for one system + user exchange, ending where the model's reply begins. BOS is
    /// left to the tokenizer.
    pub fn render(self, system: &str, user: &str) -> String {
        match self {
            // Gemma has no system role: the instructions open the user turn.
            Family::Gemma => format!(
                "<start_of_turn>user\n{system}\n\n{user}<end_of_turn>\n<start_of_turn>model\n"
            ),
            Family::ChatMl => format!(
                "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
            ),
            Family::Llama3 => format!(
                "<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
            ),
            Family::Phi3 => format!("<|system|>\n{system}<|end|>\n<|user|>\n{user}<|end|>\n<|assistant|>\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_by_architecture() {
        assert_eq!(Family::for_architecture("gemma3"), Family::Gemma);
        assert_eq!(Family::for_architecture("qwen2"), Family::ChatMl);
        assert_eq!(Family::for_architecture("llama"), Family::Llama3);
        let p = Family::Gemma.render("SYS", "USER");
        assert!(p.starts_with("<start_of_turn>user\nSYS\n\nUSER<end_of_turn>"));
        assert!(p.ends_with("<start_of_turn>model\n"));
    }
}
