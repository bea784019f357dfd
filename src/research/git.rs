//! The run's git side: branch `autoresearch/<tag>` in its own worktree (the user's checkout is
//! never touched), one commit per candidate, and a ref per experiment under
//! `refs/autoresearch/<tag>/` so that discarded commits stay reachable after the branch goes back
//! to the best one.

use std::path::{Path, PathBuf};

use git2::{Repository, ResetType, Signature, WorktreeAddOptions, WorktreePruneOptions};

use super::record::CommitId;
use super::ResearchError;

/// The agent-editable file, relative to the repository root.
pub const TRAIN_FILE: &str = "train/src/train.rs";

pub struct Workspace {
    repo: Repository,
    path: PathBuf,
    tag: String,
}

fn git(what: impl Into<String>) -> impl FnOnce(git2::Error) -> ResearchError {
    let what = what.into();
    move |e| ResearchError::Git {
        what,
        reason: e.message().to_string(),
    }
}

impl Workspace {
    /// The worktree of branch `autoresearch/<tag>` at `path`, created from the checkout's HEAD
    /// the first time and reused when the tag is resumed.
    pub fn open(checkout: &Path, tag: &str, path: &Path) -> Result<Self, ResearchError> {
        let main = Repository::discover(checkout).map_err(|e| ResearchError::NotARepository {
            path: checkout.to_path_buf(),
            reason: e.message().to_string(),
        })?;
        let branch_name = format!("autoresearch/{tag}");
        let branch = match main.find_branch(&branch_name, git2::BranchType::Local) {
            Ok(b) => b,
            Err(_) => {
                let head = main
                    .head()
                    .and_then(|h| h.peel_to_commit())
                    .map_err(git("the checkout has no commit to start the run from"))?;
                main.branch(&branch_name, &head, false)
                    .map_err(git(format!("cannot create branch {branch_name}")))?
            }
        };
        let worktree_name = format!("autoresearch-{tag}");
        if !path.join(".git").exists() {
            // A worktree whose folder was deleted: forget it, then add it again.
            if let Ok(stale) = main.find_worktree(&worktree_name) {
                stale
                    .prune(Some(
                        WorktreePruneOptions::new().valid(true).working_tree(true),
                    ))
                    .map_err(git(format!(
                        "cannot prune the stale worktree {worktree_name}"
                    )))?;
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(super::io(format!("cannot create {}", parent.display())))?;
            }
            let reference = branch.into_reference();
            main.worktree(
                &worktree_name,
                path,
                Some(WorktreeAddOptions::new().reference(Some(&reference))),
            )
            .map_err(git(format!("cannot add a worktree at {}", path.display())))?;
        }
        let repo = Repository::open(path)
            .map_err(git(format!("cannot open the worktree {}", path.display())))?;
        let head_name = repo
            .head()
            .map_err(git("the worktree has no HEAD"))?
            .name()
            .map(str::to_string)
            .ok();
        if head_name.as_deref() != Some(format!("refs/heads/{branch_name}").as_str()) {
            return Err(ResearchError::Git {
                what: format!("the worktree {} is not on {branch_name}", path.display()),
                reason: "move or delete that folder and run again".into(),
            });
        }
        let workspace = Workspace {
            repo,
            path: path.to_path_buf(),
            tag: tag.to_string(),
        };
        if !workspace.train_file().is_file() {
            return Err(ResearchError::NoTrainFile(workspace.train_file()));
        }
        Ok(workspace)
    }

    pub fn train_file(&self) -> PathBuf {
        self.path.join(TRAIN_FILE)
    }

    pub fn head(&self) -> Result<CommitId, ResearchError> {
        self.repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map(|c| CommitId(c.id()))
            .map_err(git("the worktree has no HEAD"))
    }

    /// Writes `text` as the training file and commits it on the branch.
    pub fn commit(&self, text: &str, message: &str) -> Result<CommitId, ResearchError> {
        let file = self.train_file();
        std::fs::write(&file, text)
            .map_err(super::io(format!("cannot write {}", file.display())))?;
        let mut index = self.repo.index().map_err(git("cannot read the index"))?;
        index
            .add_path(Path::new(TRAIN_FILE))
            .and_then(|()| index.write())
            .map_err(git("cannot stage the training file"))?;
        let tree_id = index.write_tree().map_err(git("cannot write the tree"))?;
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(git("cannot find the tree"))?;
        let parent = self
            .repo
            .find_commit(self.head()?.0)
            .map_err(git("cannot find HEAD"))?;
        // A fixed identity: the machine may have no git configuration at all.
        let me = Signature::now("autoresearch", "autoresearch@localhost")
            .map_err(git("cannot make a signature"))?;
        self.repo
            .commit(Some("HEAD"), &me, &me, message, &tree, &[&parent])
            .map(CommitId)
            .map_err(git("cannot commit the candidate"))
    }

    /// Keeps experiment `n`'s commit reachable whatever happens to the branch.
    pub fn mark(&self, n: usize, commit: CommitId) -> Result<(), ResearchError> {
        let name = experiment_ref(&self.tag, n);
        self.repo
            .reference(&name, commit.0, true, "autoresearch experiment")
            .map(|_| ())
            .map_err(git(format!("cannot create {name}")))
    }

    /// Moves the branch (and the worktree's files) to `commit`.
    pub fn reset_to(&self, commit: CommitId) -> Result<(), ResearchError> {
        let object = self
            .repo
            .find_object(commit.0, None)
            .map_err(git(format!("commit {commit} is missing")))?;
        self.repo
            .reset(&object, ResetType::Hard, None)
            .map_err(git(format!("cannot reset the branch to {commit}")))
    }

    /// The training file as committed in `commit`.
    pub fn file_at(&self, commit: CommitId) -> Result<String, ResearchError> {
        let blob = self
            .repo
            .find_commit(commit.0)
            .and_then(|c| c.tree())
            .and_then(|t| t.get_path(Path::new(TRAIN_FILE)))
            .and_then(|e| e.to_object(&self.repo))
            .and_then(|o| o.peel_to_blob())
            .map_err(git(format!("cannot read {TRAIN_FILE} at {commit}")))?;
        Ok(String::from_utf8_lossy(blob.content()).into_owned())
    }
}

/// The top folder of the checkout that holds `path`.
pub fn checkout_root(path: &Path) -> Result<PathBuf, ResearchError> {
    let repo = Repository::discover(path).map_err(|e| ResearchError::NotARepository {
        path: path.to_path_buf(),
        reason: e.message().to_string(),
    })?;
    repo.workdir()
        .map(Path::to_path_buf)
        .ok_or_else(|| ResearchError::NotARepository {
            path: path.to_path_buf(),
            reason: "a bare repository has no files to train".into(),
        })
}

pub fn experiment_ref(tag: &str, n: usize) -> String {
    format!("refs/autoresearch/{tag}/{n:04}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A repository with one commit holding a training file and a protocol.
    pub fn scratch_repo(dir: &Path) {
        let repo = Repository::init(dir).unwrap();
        std::fs::create_dir_all(dir.join("train/src")).unwrap();
        std::fs::write(dir.join(TRAIN_FILE), "const A: f64 = 1.0;\n").unwrap();
        std::fs::write(dir.join("program.md"), "tune it\n").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new(TRAIN_FILE)).unwrap();
        index.add_path(Path::new("program.md")).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let me = Signature::now("t", "t@t").unwrap();
        repo.commit(Some("HEAD"), &me, &me, "start", &tree, &[])
            .unwrap();
    }

    #[test]
    fn discarded_commits_stay_reachable_and_the_checkout_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path().join("repo");
        scratch_repo(&checkout);
        let wt = dir.path().join("runs/t1/worktree");
        let ws = Workspace::open(&checkout, "t1", &wt).unwrap();
        let base = ws.head().unwrap();
        let kept = ws.commit("const A: f64 = 2.0;\n", "keep me").unwrap();
        ws.mark(1, kept).unwrap();
        let dropped = ws.commit("const A: f64 = 3.0;\n", "drop me").unwrap();
        ws.mark(2, dropped).unwrap();
        ws.reset_to(kept).unwrap();
        assert_eq!(ws.head().unwrap(), kept);
        assert_eq!(
            std::fs::read_to_string(ws.train_file()).unwrap(),
            "const A: f64 = 2.0;\n"
        );
        let main = Repository::open(&checkout).unwrap();
        let marked = main
            .find_reference(&experiment_ref("t1", 2))
            .unwrap()
            .target();
        assert_eq!(marked, Some(dropped.0));
        assert_eq!(ws.file_at(dropped).unwrap(), "const A: f64 = 3.0;\n");
        // The user's checkout: same HEAD, same file.
        assert_eq!(main.head().unwrap().peel_to_commit().unwrap().id(), base.0);
        assert_eq!(
            std::fs::read_to_string(checkout.join(TRAIN_FILE)).unwrap(),
            "const A: f64 = 1.0;\n"
        );
        drop(ws);
        // Resuming continues the branch; a deleted worktree folder is recreated.
        let ws = Workspace::open(&checkout, "t1", &wt).unwrap();
        assert_eq!(ws.head().unwrap(), kept);
        std::fs::remove_dir_all(&wt).unwrap();
        let ws = Workspace::open(&checkout, "t1", &wt).unwrap();
        assert_eq!(ws.head().unwrap(), kept);
    }

    #[test]
    fn a_folder_that_is_not_a_repository_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Workspace::open(dir.path(), "t", &dir.path().join("wt"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--repo"), "{err}");
    }
}
