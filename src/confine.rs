//! Confinement of agent-written code at run time. The appliance starts the training program
//! through its own hidden `confine` command, which, in that fresh single-threaded process, drops
//! what the program must not have and then execs it:
//! - files: Landlock lets it read the system libraries, the data and its own binary, and write
//!   only its run folder; everything else (home, /etc, other projects) is out of reach;
//! - network: Landlock denies TCP connect and bind, and the process gets its own empty network
//!   namespace where the kernel allows one (root, or an unprivileged user namespace);
//! - environment: scrubbed to a short allow-list;
//! - resources: limits on open files and core dumps (not on address space: CUDA reserves large
//!   virtual ranges).
//!
//! No root and no daemon are needed. Where the kernel lacks Landlock the command refuses, unless
//! the user explicitly allows running unconfined.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, ABI,
};

use crate::cli::ConfineArgs;

/// Read-only for every confined program: the dynamic loader's world and the kernel's views of
/// the CPU and memory that the harness and its libraries read.
const SYSTEM_READ: [&str; 12] = [
    "/usr",
    "/lib",
    "/lib64",
    "/bin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/sys",
    "/sys",
];
/// Character devices a program may open for reading and writing.
const DEVICES: [&str; 4] = ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"];
/// Environment variables that pass through; everything else is dropped.
const ENV_KEEP: [&str; 7] = [
    "PATH",
    "LANG",
    "RUST_BACKTRACE",
    "RUST_LOG",
    "CUDA_VISIBLE_DEVICES",
    "LD_LIBRARY_PATH",
    "NVIDIA_VISIBLE_DEVICES",
];

/// What happens where the kernel cannot confine a program: the user's choice (`--unconfined`),
/// made once at start-up and passed to every build and training run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Confinement {
    /// Refuse to run it (the default).
    #[default]
    Required,
    /// Run it with whatever confinement the kernel offers, possibly none.
    BestEffort,
}

/// The hidden `confine` command: restrict this process, then become the program.
pub fn run(args: &ConfineArgs) -> Result<()> {
    let Some((program, program_args)) = args.command.split_first() else {
        bail!("confine needs a program to run after --");
    };
    let program = PathBuf::from(program);
    // SAFETY: getppid(2) cannot fail.
    let parent = unsafe { libc::getppid() };
    limit_resources()?;
    if !args.cpu.is_empty() {
        pin_to_cpus(&args.cpu)?;
    }
    let own_network = isolate_network();
    let status = restrict_files_and_tcp(&program, &args.read, &args.write)?;
    if !args.allow_unconfined {
        if status == RulesetStatus::NotEnforced {
            bail!(
                "this kernel does not support Landlock, so agent-written code would run unconfined: \
                 use Linux 6.7 or later with Landlock enabled, or pass --unconfined to accept the risk"
            );
        }
        // Landlock before ABI 4 (Linux 6.7) has no TCP rules: then only the namespace keeps
        // the network away.
        if status == RulesetStatus::PartiallyEnforced && !own_network {
            bail!(
                "this kernel can neither deny TCP through Landlock (Linux 6.7 or later) nor give the \
                 program its own network namespace (unprivileged user namespaces are disabled), so \
                 agent-written code could reach the network: enable one of them, or pass \
                 --unconfined to accept the risk"
            );
        }
    }
    let mut cmd = std::process::Command::new(&program);
    cmd.args(program_args).env_clear();
    for (key, value) in std::env::vars_os() {
        let keep = key.to_str().is_some_and(|k| {
            ENV_KEEP.contains(&k)
                || k.starts_with("AUTORESEARCH_")
                || args.keep_env.iter().any(|e| e == k)
        });
        if keep {
            cmd.env(key, value);
        }
    }
    if let Some(dir) = args.write.first() {
        cmd.env("TMPDIR", dir).env("HOME", dir);
    }
    die_with_parent(parent)?;
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot start {}", program.display()))
}

/// The program dies with the appliance, even when the appliance is killed with SIGKILL: an
/// orphaned training program would hold the GPU while the resumed loop starts another. Set last,
/// because entering a user namespace clears it.
fn die_with_parent(parent: libc::pid_t) -> Result<()> {
    // SAFETY: prctl(2) with PR_SET_PDEATHSIG sets a signal number on this process only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error())
            .context("cannot tie the program to the appliance");
    }
    // SAFETY: getppid(2) cannot fail.
    if unsafe { libc::getppid() } != parent {
        bail!("the appliance exited before the training program started");
    }
    Ok(())
}

/// Keeps this process (and what it execs) on `cpus`: the harness sizes its thread pool from the
/// CPUs it may use, so runs side by side on one machine each get their own cores.
pub fn pin_to_cpus(cpus: &[usize]) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it; sched_setaffinity(2)
    // reads it and changes only this process's mask.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot keep the training program on CPUs {cpus:?}"));
        }
    }
    Ok(())
}

/// The CPUs this process may run on, which the loop's workers split between them.
pub fn own_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity(2) writes the mask into the zeroed set we own; CPU_ISSET reads
    // it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            return (0..n).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

fn limit_resources() -> Result<()> {
    let set = |resource, soft: u64, hard: u64| {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit(2) reads the struct we pass; it only lowers this process's limits.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    set(libc::RLIMIT_NOFILE, 4096, 4096).context("cannot limit open files")?;
    set(libc::RLIMIT_CORE, 0, 0).context("cannot disable core dumps")?;
    Ok(())
}

/// A new, empty network namespace (only loopback, and down): directly as root, else inside a
/// user namespace that maps us to ourselves. Best effort: Landlock denies TCP either way.
fn isolate_network() -> bool {
    // SAFETY: unshare(2) affects only this process, which is single-threaded here.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
        return true;
    }
    // SAFETY: as above; getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
        return false;
    }
    let _ = std::fs::write("/proc/self/setgroups", "deny");
    let _ = std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"));
    let _ = std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"));
    true
}

fn restrict_files_and_tcp(
    program: &Path,
    read: &[PathBuf],
    write: &[PathBuf],
) -> Result<RulesetStatus> {
    let abi = ABI::V5;
    // /proc/self names the pid this process keeps after exec. Its own entries are writable: the
    // CUDA driver names its threads through /proc/self/task/<tid>/comm in cuInit and fails with
    // CUDA_ERROR_OPERATING_SYSTEM when it cannot. They are this process's alone.
    let own_proc = PathBuf::from(format!("/proc/{}", std::process::id()));
    let mut readable: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    readable.push(program.to_path_buf());
    readable.extend(read.iter().cloned());
    let mut devices: Vec<PathBuf> = DEVICES.iter().map(PathBuf::from).collect();
    // CUDA needs its device nodes, nvidia-uvm-tools included, read-write.
    if let Ok(entries) = std::fs::read_dir("/dev") {
        devices.extend(entries.flatten().map(|e| e.path()).filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("nvidia"))
        }));
    }
    readable.push(PathBuf::from("/proc/driver/nvidia"));

    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .handle_access(AccessNet::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules(&readable, AccessFs::from_read(abi)))?
        .add_rules(path_beneath_rules(
            &devices,
            AccessFs::from_read(abi) | AccessFs::from_write(abi),
        ))?
        .add_rules(path_beneath_rules(write, AccessFs::from_all(abi)))?
        .add_rules(path_beneath_rules(
            [own_proc],
            AccessFs::from_read(abi) | AccessFs::WriteFile | AccessFs::Truncate,
        ))?
        .restrict_self()
        .context("cannot apply the Landlock ruleset")?;
    Ok(status.ruleset)
}

/// What a confined program may touch besides the system's libraries.
pub struct Allowed<'a> {
    pub read: &'a [&'a Path],
    /// The first is also its TMPDIR and HOME.
    pub write: &'a [&'a Path],
    /// Environment variables kept besides the fixed allow-list.
    pub keep_env: &'a [&'a str],
    /// The CPUs it may run on, where a machine is split between runs (empty: all of them).
    pub cpus: &'a [usize],
}

/// The command line that runs `program` confined to `access`.
pub fn wrap(
    program: &Path,
    access: &Allowed,
    confinement: Confinement,
) -> std::io::Result<std::process::Command> {
    let mut cmd = std::process::Command::new(appliance()?);
    cmd.arg("confine");
    for r in access.read {
        cmd.arg("--read").arg(r);
    }
    for w in access.write {
        cmd.arg("--write").arg(w);
    }
    for e in access.keep_env {
        cmd.arg("--keep-env").arg(e);
    }
    for cpu in access.cpus {
        cmd.arg("--cpu").arg(cpu.to_string());
    }
    if confinement == Confinement::BestEffort {
        cmd.arg("--allow-unconfined");
    }
    cmd.arg("--").arg(program);
    Ok(cmd)
}

/// The appliance binary, whose hidden `confine` command does the confining.
fn appliance() -> std::io::Result<PathBuf> {
    let me = std::env::current_exe()?;
    // Rebuilt while running (`cargo build` during a night's run): the kernel names the old file
    // "... (deleted)"; the new one at the same path has the same `confine` command.
    let me = match me.to_str().and_then(|p| p.strip_suffix(" (deleted)")) {
        Some(path) => PathBuf::from(path),
        None => me,
    };
    // Tests (unit and integration) run from target/<profile>/deps/<name>-<hash>, a binary
    // without the `confine` command; cargo builds the appliance beside that folder.
    if me.parent().and_then(Path::file_name) == Some(std::ffi::OsStr::new("deps")) {
        return me
            .parent()
            .and_then(Path::parent)
            .map(|dir| dir.join("autoresearch"))
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the appliance binary beside the tests (cargo test builds it with the integration tests)",
                )
            });
    }
    Ok(me)
}

/// Whether confinement works here (with the user's `--unconfined` choice): the same rules tried
/// on `/bin/true`. Err says why not and what to do.
pub fn probe(confinement: Confinement) -> Result<(), String> {
    let scratch = tempfile::tempdir().map_err(|e| format!("cannot make a scratch folder: {e}"))?;
    let allowed = Allowed {
        read: &[],
        write: &[scratch.path()],
        keep_env: &[],
        cpus: &[],
    };
    let out = wrap(Path::new("/bin/true"), &allowed, confinement)
        .and_then(|mut cmd| cmd.output())
        .map_err(|e| format!("cannot start the confinement: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
