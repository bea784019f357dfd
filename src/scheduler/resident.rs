//! The agent's model as something the scheduler can take off the device and put back: loaded at
//! start, dropped before a training run that needs the room (llama.cpp frees its buffers when the
//! model is dropped), loaded again afterwards, with each step timed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::agent::engine::Engine;
use crate::agent::AgentError;
use crate::units::Bytes;

pub struct ResidentAgent {
    path: PathBuf,
    /// Layers on the device when fully loaded (`--gpu-layers`).
    full_layers: u32,
    /// Shared with a draft written during a training run, which ends before the model moves.
    engine: Option<Arc<Engine>>,
    layers_loaded: u32,
    /// The KV cache the agent's sessions need (its context size at the model's shape).
    context_bytes: Bytes,
    weights_bytes: Bytes,
    context: usize,
    n_layers: u32,
    pub last_load_seconds: f64,
}

impl ResidentAgent {
    /// Loads the model; `context` is the agent's context size (default: the model's, at most
    /// 8192).
    pub fn load(path: &Path, gpu_layers: u32, context: Option<usize>) -> Result<Self, AgentError> {
        let engine = Engine::load(path, gpu_layers)?;
        let context = context.unwrap_or_else(|| engine.n_ctx_train().min(8192));
        let model = engine.model();
        let n_layers = model.n_layer();
        // K and V per layer, f16, with grouped-query heads sharing their keys and values.
        let kv_width =
            model.n_embd().max(0) as u64 * model.n_head_kv() as u64 / model.n_head().max(1) as u64;
        let context_bytes = Bytes(context as u64 * n_layers as u64 * 2 * kv_width * 2);
        Ok(ResidentAgent {
            path: path.to_path_buf(),
            full_layers: gpu_layers,
            weights_bytes: Bytes(model.size()),
            layers_loaded: gpu_layers,
            last_load_seconds: engine.load_seconds,
            engine: Some(Arc::new(engine)),
            context_bytes,
            context,
            n_layers,
        })
    }

    pub fn context(&self) -> usize {
        self.context
    }

    pub fn weights_bytes(&self) -> Bytes {
        self.weights_bytes
    }

    pub fn context_bytes(&self) -> Bytes {
        self.context_bytes
    }

    pub fn n_layers(&self) -> u32 {
        self.n_layers
    }

    pub fn is_loaded(&self) -> bool {
        self.engine.is_some()
    }

    /// The engine, loaded fully again if it was evicted or partly offloaded.
    pub fn engine(&mut self) -> Result<&Engine, AgentError> {
        if self.engine.is_none() || self.layers_loaded != self.full_layers {
            self.reload(self.full_layers)?;
        }
        Ok(self.engine.as_deref().expect("loaded above"))
    }

    /// The engine as it is (None when evicted), for a thread that writes beside a training run.
    pub fn shared(&self) -> Option<Arc<Engine>> {
        self.engine.clone()
    }

    pub fn layers_loaded(&self) -> u32 {
        if self.engine.is_some() {
            self.layers_loaded
        } else {
            0
        }
    }

    /// Loads the model with every requested layer on the device; returns the seconds it took.
    pub fn reload_full(&mut self) -> Result<f64, AgentError> {
        self.reload(self.full_layers)
    }

    /// Drops the model; returns the seconds it took.
    pub fn evict(&mut self) -> f64 {
        let start = Instant::now();
        self.engine = None;
        // llama.cpp's host buffers go back to the C heap; hand them back to the system, so the
        // trainer can have them.
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only releases free heap pages; it touches no live allocation.
        unsafe {
            libc::malloc_trim(0);
        }
        start.elapsed().as_secs_f64()
    }

    /// Loads the model with `gpu_layers` on the device; returns the seconds it took.
    pub fn reload(&mut self, gpu_layers: u32) -> Result<f64, AgentError> {
        let start = Instant::now();
        self.engine = None;
        self.engine = Some(Arc::new(Engine::load(&self.path, gpu_layers)?));
        self.layers_loaded = gpu_layers;
        self.last_load_seconds = start.elapsed().as_secs_f64();
        Ok(self.last_load_seconds)
    }
}
