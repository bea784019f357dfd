//! The language model, in-process: one llama.cpp backend per process, a model loaded from a GGUF
//! file, and sessions that evaluate a prompt once and then sample several replies from it.
//! Model and contexts are freed by Drop, so memory returns when they go out of scope.
//!
//! The model's state after the last prompt it read is kept (llama.cpp saves a sequence's KV
//! cache as bytes): a new prompt that starts with the same tokens (the protocol and the training
//! file, which change only with a keep) restores it and reads only the rest.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::session::{LlamaStateSeqFlags, SeqState};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::template::Family;
use super::{gguf, llama, AgentError};

/// Tokens decoded per batch while reading a prompt.
const PROMPT_BATCH: usize = 512;
/// A shorter common start is read again rather than restored: restoring costs a copy of the
/// whole saved state.
const MIN_REUSE: usize = 64;

fn backend() -> Result<&'static LlamaBackend, AgentError> {
    // get_or_init makes concurrent first callers wait: llama.cpp allows one init per process.
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs ~3,000 lines per load: they go to tracing, shown with RUST_LOG=debug.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| AgentError::Llama(e.clone()))
}

enum Template {
    Native(LlamaChatTemplate),
    Fallback(Family),
}

pub struct Engine {
    model: LlamaModel,
    template: Template,
    pub load_seconds: f64,
    /// The last prompt read and the model's state after it, shared by every session (the loop's
    /// and a draft's).
    last_prompt: Mutex<Option<(Vec<LlamaToken>, SeqState)>>,
}

/// Threads for llama.cpp: every core this process may use. `bench agent` gives llama-bench the
/// same number, so the comparison is fair.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How many layers go to the GPU: all of them when this build has one, else none.
pub fn default_gpu_layers() -> u32 {
    if cfg!(feature = "cuda") {
        u32::MAX
    } else {
        0
    }
}

impl Engine {
    pub fn load(path: &Path, gpu_layers: u32) -> Result<Self, AgentError> {
        let info = gguf::check(path)?;
        let backend = backend()?;
        let start = Instant::now();
        let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
        let model =
            LlamaModel::load_from_file(backend, path, &params).map_err(|e| AgentError::Load {
                path: path.to_path_buf(),
                reason: format!(
                    "{e}; the file passed the GGUF checks ({} tensors, architecture {}), so this llama.cpp may not support the architecture",
                    info.tensors,
                    info.architecture.as_deref().unwrap_or("unknown")
                ),
            })?;
        let load_seconds = start.elapsed().as_secs_f64();
        let template = match model.chat_template(None) {
            Ok(t) => Template::Native(t),
            Err(_) => {
                let arch = info.architecture.as_deref().unwrap_or("unknown");
                let family = Family::for_architecture(arch);
                // Once per process: the scheduler may load the model many times.
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| eprintln!(
                    "note: {} has no chat template; using the {} format of its architecture ({arch})",
                    path.display(),
                    family.name()
                ));
                Template::Fallback(family)
            }
        };
        Ok(Self {
            model,
            template,
            load_seconds,
            last_prompt: Mutex::new(None),
        })
    }

    /// The longest context the model was trained for.
    pub fn n_ctx_train(&self) -> usize {
        self.model.n_ctx_train() as usize
    }

    pub fn model(&self) -> &LlamaModel {
        &self.model
    }

    /// The prompt text for a system + user exchange, in the model's chat format.
    pub fn render(&self, system: &str, user: &str) -> Result<String, AgentError> {
        match &self.template {
            Template::Native(t) => {
                let messages = [
                    LlamaChatMessage::new("system".into(), system.into()).map_err(llama)?,
                    LlamaChatMessage::new("user".into(), user.into()).map_err(llama)?,
                ];
                self.model
                    .apply_chat_template(t, &messages, true)
                    .map_err(llama)
            }
            Template::Fallback(family) => Ok(family.render(system, user)),
        }
    }

    pub fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(text.as_bytes(), true, true)
    }

    /// Reads already tokenized prompt into a fresh context of `n_ctx` tokens.
    pub fn session_tokens(
        &self,
        tokens: Vec<LlamaToken>,
        n_ctx: usize,
    ) -> Result<Session<'_>, AgentError> {
        if tokens.is_empty() || tokens.len() >= n_ctx {
            return Err(AgentError::PromptTooLong {
                needed: tokens.len(),
                context: n_ctx,
            });
        }
        let threads = threads() as i32;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx as u32))
            .with_n_batch(PROMPT_BATCH as u32)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let ctx = self.model.new_context(backend()?, params).map_err(llama)?;
        let mut session = Session {
            engine: self,
            ctx,
            prompt: tokens,
            prompt_seconds: 0.0,
            reused_tokens: 0,
            n_ctx,
        };
        let start = Instant::now();
        session.reused_tokens = session.restore_common_start();
        session.read_prompt(session.reused_tokens)?;
        session.prompt_seconds = start.elapsed().as_secs_f64();
        if let Ok(state) = session.ctx.state_seq_get(0, LlamaStateSeqFlags::empty()) {
            *self.last_prompt.lock().unwrap() = Some((session.prompt.clone(), state));
        }
        Ok(session)
    }
}

/// One generated reply.
pub struct Generation {
    pub text: String,
    pub tokens: usize,
    pub seconds: f64,
    /// Ended by the model (end of generation), not by the token limit.
    pub complete: bool,
}

/// A prompt read once; each `generate` samples a new reply after it.
pub struct Session<'a> {
    engine: &'a Engine,
    ctx: LlamaContext<'a>,
    prompt: Vec<LlamaToken>,
    pub prompt_seconds: f64,
    /// Prompt tokens whose state came from the last prompt instead of being read.
    pub reused_tokens: usize,
    n_ctx: usize,
}

impl Session<'_> {
    pub fn prompt_tokens(&self) -> usize {
        self.prompt.len()
    }

    /// Restores the state of the last prompt for the tokens this one starts with, and forgets
    /// the rest of it; returns how many tokens need no reading (0 when nothing was restored).
    fn restore_common_start(&mut self) -> usize {
        let last = self.engine.last_prompt.lock().unwrap();
        let Some((tokens, state)) = last.as_ref() else {
            return 0;
        };
        let common = tokens
            .iter()
            .zip(&self.prompt)
            .take_while(|(a, b)| a == b)
            .count()
            // The last token is always read again: its logits start the reply.
            .min(self.prompt.len() - 1);
        if common < MIN_REUSE || self.ctx.state_seq_set(state, 0).is_err() {
            return 0;
        }
        match self
            .ctx
            .clear_kv_cache_seq(Some(0), Some(common as u32), None)
        {
            Ok(true) => common,
            _ => {
                self.ctx.clear_kv_cache();
                0
            }
        }
    }

    /// Reads the prompt from token `from` on (the ones before are in the cache already).
    fn read_prompt(&mut self, from: usize) -> Result<(), AgentError> {
        let mut batch = LlamaBatch::new(PROMPT_BATCH, 1);
        let last = self.prompt.len() - 1;
        for (chunk_index, chunk) in self.prompt[from..].chunks(PROMPT_BATCH).enumerate() {
            batch.clear();
            for (i, &token) in chunk.iter().enumerate() {
                let pos = from + chunk_index * PROMPT_BATCH + i;
                batch
                    .add(token, pos as i32, &[0], pos == last)
                    .map_err(llama)?;
            }
            self.ctx.decode(&mut batch).map_err(llama)?;
        }
        Ok(())
    }

    /// Samples a reply of at most `max_tokens`, constrained by `grammar` (GBNF, root rule `root`)
    /// when given. The prompt's cache is kept, so the next call starts from the prompt again.
    pub fn generate(
        &mut self,
        grammar: Option<&str>,
        max_tokens: usize,
        temperature: f32,
        seed: u32,
    ) -> Result<Generation, AgentError> {
        self.generate_observed(grammar, max_tokens, temperature, seed, &mut |_, _| true)
    }

    /// `generate`, calling `on_token(tokens so far, seconds so far)` after each token; it stops
    /// the reply (as incomplete) by returning false.
    pub fn generate_observed(
        &mut self,
        grammar: Option<&str>,
        max_tokens: usize,
        temperature: f32,
        seed: u32,
        on_token: &mut dyn FnMut(usize, f64) -> bool,
    ) -> Result<Generation, AgentError> {
        let start = Instant::now();
        let model = self.engine.model();
        let mut samplers = Vec::new();
        if let Some(g) = grammar {
            samplers.push(LlamaSampler::grammar(model, g, "root").map_err(llama)?);
        }
        samplers.extend([
            LlamaSampler::top_k(40),
            LlamaSampler::top_p(0.95, 1),
            LlamaSampler::temp(temperature),
            LlamaSampler::dist(seed),
        ]);
        let mut sampler = LlamaSampler::chain_simple(samplers);

        // Forget any earlier reply, then recompute the last prompt token's logits.
        let n_prompt = self.prompt.len();
        self.ctx
            .clear_kv_cache_seq(Some(0), Some(n_prompt as u32 - 1), None)
            .map_err(llama)?;
        let mut batch = LlamaBatch::new(1, 1);
        batch
            .add(self.prompt[n_prompt - 1], (n_prompt - 1) as i32, &[0], true)
            .map_err(llama)?;
        self.ctx.decode(&mut batch).map_err(llama)?;

        let vocab = model.vocab();
        let mut bytes = Vec::new();
        let mut tokens = 0;
        let mut complete = false;
        let room = self.n_ctx.saturating_sub(n_prompt + 1);
        while tokens < max_tokens.min(room) {
            let token = sampler.sample(&self.ctx, 0);
            if vocab.is_eog(token) {
                complete = true;
                break;
            }
            bytes.extend(vocab.token_to_piece(token, false, None));
            tokens += 1;
            if !on_token(tokens, start.elapsed().as_secs_f64()) {
                break;
            }
            batch.clear();
            batch
                .add(token, (n_prompt + tokens - 1) as i32, &[0], true)
                .map_err(llama)?;
            self.ctx.decode(&mut batch).map_err(llama)?;
        }
        Ok(Generation {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            tokens,
            seconds: start.elapsed().as_secs_f64(),
            complete,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{edit, grammar, prompt};

    #[test]
    fn grammar_constrained_replies_always_parse() {
        let model = crate::cli::default_model();
        let engine =
            Engine::load(&model, 0).expect("the default model (scripts/fetch-default-model.sh)");
        let source = include_str!("../../train/src/train.rs");
        let constants = edit::constants(source);
        let text = engine
            .render(
                "You tune the hyperparameters of a small GPT's training file.",
                &format!(
                    "{}\nPropose one change, as IDEA: then SET lines.",
                    prompt::hyperparameter_section(source)
                ),
            )
            .unwrap();
        let mut session = engine.session_tokens(engine.tokenize(&text), 2048).unwrap();
        let set = grammar::set_grammar(&constants).unwrap();
        for seed in 0..4 {
            // An idea of at most 101 characters and three SET lines: at most ~200 tokens even
            // at a token per character.
            let reply = session.generate(Some(&set), 256, 1.0, seed).unwrap();
            assert!(
                reply.complete,
                "a SET reply is short and always ends: {:?}",
                reply.text
            );
            let proposal =
                edit::parse(&reply.text).unwrap_or_else(|r| panic!("{r}: {:?}", reply.text));
            for e in &proposal.edits {
                let edit::Edit::Set { name, .. } = e else {
                    panic!("{e:?}")
                };
                assert!(constants.iter().any(|c| &c.name == name), "{name}");
            }
        }
        let replace = grammar::replace_grammar();
        for seed in 0..2 {
            let reply = session.generate(Some(&replace), 200, 1.0, seed).unwrap();
            if reply.complete {
                edit::parse(&reply.text).unwrap_or_else(|r| panic!("{r}: {:?}", reply.text));
            }
        }
    }
}
