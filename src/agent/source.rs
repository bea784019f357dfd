//! Where the model file comes from: a local path, or `hf:OWNER/REPO/FILE.gguf`, downloaded
//! through hf-hub into the standard Hugging Face cache (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`) and reused from there. With `HF_HUB_OFFLINE` set, only the cache
//! is consulted and nothing touches the network.

use std::path::PathBuf;

use super::AgentError;

#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    Local(PathBuf),
    Hub {
        owner: String,
        repo: String,
        file: String,
    },
}

impl ModelSource {
    pub fn parse(spec: &str) -> Result<Self, AgentError> {
        let Some(rest) = spec.strip_prefix("hf:") else {
            return Ok(Self::Local(PathBuf::from(spec)));
        };
        let mut parts = rest.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(owner), Some(repo), Some(file))
                if !owner.is_empty() && !repo.is_empty() && file.ends_with(".gguf") =>
            {
                Ok(Self::Hub {
                    owner: owner.into(),
                    repo: repo.into(),
                    file: file.into(),
                })
            }
            _ => Err(AgentError::BadSpec(spec.to_string())),
        }
    }

    /// The local file: the path itself, or the cached (or freshly downloaded) hub file.
    pub fn resolve(&self) -> Result<PathBuf, AgentError> {
        let (owner, repo, file) = match self {
            Self::Local(path) => return Ok(path.clone()),
            Self::Hub { owner, repo, file } => (owner, repo, file),
        };
        let offline = offline();
        let spec = format!("hf:{owner}/{repo}/{file}");
        let hub_error = |reason: String| AgentError::Hub {
            spec: spec.clone(),
            reason,
            offline,
        };
        let client = hf_hub::HFClient::builder()
            .build_sync()
            .map_err(|e| hub_error(e.to_string()))?;
        if !offline {
            eprintln!("fetching {spec} (set HF_HUB_OFFLINE=1 to use only the local cache)");
        }
        client
            .model(owner.as_str(), repo.as_str())
            .download_file()
            .filename(file.as_str())
            .local_files_only(offline)
            .send()
            .map_err(|e| hub_error(e.to_string()))
    }
}

/// `HF_HUB_OFFLINE` as huggingface_hub reads it: 1/true/yes/on.
fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            ModelSource::parse("hf:unsloth/gemma-3-270m-it-GGUF/sub/model-Q4_K_M.gguf").unwrap(),
            ModelSource::Hub {
                owner: "unsloth".into(),
                repo: "gemma-3-270m-it-GGUF".into(),
                file: "sub/model-Q4_K_M.gguf".into()
            }
        );
        assert_eq!(
            ModelSource::parse("models/x.gguf").unwrap(),
            ModelSource::Local("models/x.gguf".into())
        );
        assert!(matches!(
            ModelSource::parse("hf:only-owner"),
            Err(AgentError::BadSpec(_))
        ));
        assert!(matches!(
            ModelSource::parse("hf:a/b/readme.md"),
            Err(AgentError::BadSpec(_))
        ));
    }
}
