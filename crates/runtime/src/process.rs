//! The process runtime: each container is a local child process in its own process
//! group, with its own working directory, listening on a free loopback port.
//!
//! Children are tagged with [`INSTANCE_ENV`] in their environment, so that after a
//! `kill -9` of warmpool a restarted instance finds them in `/proc` and adopts or
//! destroys them.
//!
//! A claim's files are written into the container's work dir (which is also its
//! [`crate::FILES_DIR_ENV`]), each to a temporary file renamed into place; a path through
//! a symlink is refused, so an app cannot redirect warmpool's write out of its
//! dir. (The process runtime is no sandbox: the app runs as warmpool's user.)

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use warmpool_core::ContainerId;

use crate::{
    file_path_parts, ContainerSpec, HttpProbe, Inspection, OwnedContainer, Runtime, RuntimeError,
    RuntimeEvent, Started, Template, Workload, INSTANCE_ENV,
};

/// The file name of the sample app's own binary (the `warmpool-sample-app` crate's).
pub const SAMPLE_APP_BIN: &str = "warmpool-sample-app";

/// How the process runtime runs the sample app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleAppCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl SampleAppCommand {
    /// The sample app for the warmpool binary at `warmpool`: the lean
    /// [`SAMPLE_APP_BIN`] in the same directory when it is an executable file
    /// there (`cargo build --release` puts it there), else `warmpool sample-app`.
    ///
    /// Both serve the same app; the lean one starts with about 1 ms less CPU here
    /// (about 4,000 relocations and 140 page faults against warmpool's 51,000 and
    /// 470), which counts when a pool refills while claims are served.
    pub fn beside(warmpool: &Path) -> Self {
        let lean = warmpool.with_file_name(SAMPLE_APP_BIN);
        let executable = std::fs::metadata(&lean).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        });
        if executable {
            Self {
                program: lean,
                args: Vec::new(),
            }
        } else {
            Self::subcommand(warmpool)
        }
    }

    /// `warmpool sample-app`: the app served by warmpool's own binary.
    pub fn subcommand(warmpool: &Path) -> Self {
        Self {
            program: warmpool.to_owned(),
            args: vec!["sample-app".to_owned()],
        }
    }
}

#[derive(Clone, Debug)]
pub struct ProcessConfig {
    /// This warmpool's instance id (the tag).
    pub instance_id: String,
    /// Each container gets `work_root/<id>` as its working directory.
    pub work_root: PathBuf,
    /// Whether children inherit warmpool's stderr (their logs show in warmpool's).
    pub inherit_stderr: bool,
}

/// A flag per watched process that turns true when it is gone.
type Watched = watch::Receiver<bool>;

pub struct ProcessRuntime {
    cfg: ProcessConfig,
    /// The command that runs the sample app.
    sample_app: Option<SampleAppCommand>,
    probe: HttpProbe,
    events: broadcast::Sender<RuntimeEvent>,
    watched: Arc<Mutex<HashMap<ContainerId, Watched>>>,
}

/// How often adopted processes (not our children, so not waitable) are checked.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

impl ProcessRuntime {
    pub fn new(cfg: ProcessConfig) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            probe: HttpProbe::new(),
            cfg,
            sample_app: None,
            events,
            watched: Arc::default(),
        }
    }

    /// Runs [`Workload::SampleApp`] with `command` (see
    /// [`SampleAppCommand::beside`]); without it, such a start fails with
    /// [`RuntimeError::Unsupported`].
    pub fn with_sample_app(mut self, command: SampleAppCommand) -> Self {
        self.sample_app = Some(command);
        self
    }

    /// The program and arguments of `workload`.
    fn command(&self, workload: &Workload) -> Result<(String, Vec<String>), RuntimeError> {
        match (workload, &self.sample_app) {
            (Workload::Command(c), _) if !c.is_empty() => Ok((c[0].clone(), c[1..].to_vec())),
            (Workload::SampleApp, Some(app)) => {
                Ok((app.program.to_string_lossy().into_owned(), app.args.clone()))
            }
            (w, _) => Err(w.unsupported(self.name())),
        }
    }

    fn work_dir(&self, id: ContainerId) -> PathBuf {
        self.cfg.work_root.join(id.to_string())
    }

    fn gone_flag(&self, id: ContainerId) -> Option<watch::Receiver<bool>> {
        self.watched.lock().unwrap().get(&id).cloned()
    }

    /// Records `id` as gone: forgets it and tells subscribers.
    fn exited(
        watched: &Mutex<HashMap<ContainerId, Watched>>,
        events: &broadcast::Sender<RuntimeEvent>,
        id: ContainerId,
        code: Option<i32>,
        detail: String,
    ) {
        watched.lock().unwrap().remove(&id);
        let _ = events.send(RuntimeEvent::Exited { id, code, detail });
    }

    fn watch_adopted(&self, id: ContainerId, pid: i32, start_time: u64) {
        let (tx, rx) = watch::channel(false);
        self.watched.lock().unwrap().insert(id, rx);
        let watched = self.watched.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ADOPTED_POLL).await;
                if !proc_alive(pid, start_time) {
                    let _ = tx.send(true);
                    Self::exited(
                        &watched,
                        &events,
                        id,
                        None,
                        "exited (adopted process, status unknown)".into(),
                    );
                    return;
                }
            }
        });
    }
}

/// Ports handed to children recently (in this process), never handed out twice.
static RECENT_PORTS: Mutex<std::collections::VecDeque<u16>> =
    Mutex::new(std::collections::VecDeque::new());
const RECENT_PORTS_KEPT: usize = 4096;

/// The kernel's ephemeral port range (`bind(0)` and outgoing connections draw from it).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// A free loopback port for a child to listen on.
///
/// Taken below the ephemeral range where there is room, so that no `bind(0)` or
/// outgoing connection of any process can take it between this check and the
/// child's own bind; and never one handed to another child recently. Falls back to
/// `bind(0)` when the range leaves no room below it.
fn free_port() -> std::io::Result<u16> {
    const LOW: u16 = 10_000;
    let (ephemeral_lo, _) = ephemeral_range();
    let mut recent = RECENT_PORTS.lock().unwrap();
    for _ in 0..64 {
        let port = if ephemeral_lo > LOW + 1000 {
            let span = u128::from(ephemeral_lo - LOW);
            LOW + (uuid::Uuid::new_v4().as_u128() % span) as u16
        } else {
            std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port()
        };
        if recent.contains(&port) || std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        if recent.len() >= RECENT_PORTS_KEPT {
            recent.pop_front();
        }
        recent.push_back(port);
        return Ok(port);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port found",
    ))
}

/// Fields of `/proc/<pid>/stat` after the command name: (state, pgrp, starttime).
fn proc_stat(pid: i32) -> Option<(char, i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let pgrp = fields.get(2)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some((state, pgrp, start_time))
}

/// The process `pid` that started at `start_time` still runs (a zombie does not).
fn proc_alive(pid: i32, start_time: u64) -> bool {
    matches!(proc_stat(pid), Some((state, _, st)) if st == start_time && state != 'Z' && state != 'X')
}

fn parse_handle(handle: &str) -> Result<(i32, u64), RuntimeError> {
    let bad = || RuntimeError::BadHandle(handle.to_owned());
    let rest = handle.strip_prefix("pid:").ok_or_else(bad)?;
    let (pid, st) = rest.split_once(':').ok_or_else(bad)?;
    let pid: i32 = pid.parse().map_err(|_| bad())?;
    if pid <= 1 {
        return Err(bad());
    }
    Ok((pid, st.parse().map_err(|_| bad())?))
}

fn describe(status: std::process::ExitStatus) -> (Option<i32>, String) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (Some(code), format!("exited with code {code}")),
        (None, Some(sig)) => (Some(128 + sig), format!("killed by signal {sig}")),
        _ => (None, "exited".to_owned()),
    }
}

/// Writes `contents` at `path` (already split into its parts) under `root`: each
/// missing parent created, the file written to a temporary name beside it and
/// renamed into place. Refused when a part that exists is a symlink (or, for the
/// file, a directory), so nothing is written outside `root`.
fn write_under(
    root: &Path,
    path: &str,
    parts: &[&str],
    contents: &[u8],
) -> Result<(), RuntimeError> {
    let refuse = |reason: String| RuntimeError::FileRefused {
        path: path.to_owned(),
        reason,
    };
    let io = |what: String| {
        let path = path.to_owned();
        move |source| RuntimeError::Io {
            what: format!("cannot write file {path:?}: {what}"),
            source,
        }
    };
    std::fs::metadata(root).map_err(io("the container's work dir is gone".into()))?;
    let (name, parents) = parts.split_last().expect("a file path has a part");
    let mut dir = root.to_path_buf();
    for part in parents {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refuse(format!("{part:?} is a symlink")))
            }
            Ok(m) if m.is_dir() => continue,
            Ok(_) => return Err(refuse(format!("{part:?} is not a directory"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("cannot look at {part:?}"))(e)),
        }
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            // Made meanwhile: a directory is fine, anything else is refused.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let m = std::fs::symlink_metadata(&dir)
                    .map_err(io(format!("cannot look at {part:?}")))?;
                if !m.is_dir() {
                    return Err(refuse(format!("{part:?} is not a directory")));
                }
            }
            Err(e) => return Err(io(format!("cannot create directory {part:?}"))(e)),
        }
    }
    let target = dir.join(name);
    match std::fs::symlink_metadata(&target) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(refuse(format!("{name:?} is a symlink")))
        }
        Ok(m) if m.is_dir() => return Err(refuse(format!("{name:?} is a directory"))),
        _ => {}
    }
    let temp = dir.join(format!(
        ".{name}.warmpool-{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&temp)?;
        file.write_all(contents)?;
        drop(file);
        std::fs::rename(&temp, &target)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io("cannot write it".into())(e));
    }
    Ok(())
}

/// The `KEY=value` pairs of a process's initial environment.
fn proc_environ(pid: i32) -> Option<HashMap<String, String>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = std::str::from_utf8(kv).ok()?;
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect(),
    )
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn start(&self, spec: &ContainerSpec) -> Result<Started, RuntimeError> {
        let (program, args) = self.command(&spec.template.workload)?;
        let spawn_err = |what: String| move |source| RuntimeError::Spawn { what, source };
        let port = free_port().map_err(spawn_err("no free port".into()))?;
        let dir = self.work_dir(spec.id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(spawn_err(format!("cannot create {}", dir.display())))?;

        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&args)
            .current_dir(&dir)
            // Only what the app needs: warmpool's own secrets stay out of children.
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env("HOST", "127.0.0.1")
            .envs(spec.app_env_with_files_dir(&self.cfg.instance_id, port, &dir.to_string_lossy()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if self.cfg.inherit_stderr {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(spawn_err(format!("cannot run {program:?}")))?;
        let pid = child.id().ok_or_else(|| RuntimeError::ExitedEarly {
            code: None,
            detail: "it exited at once".into(),
        })? as i32;
        let start_time = proc_stat(pid).map(|(_, _, st)| st).unwrap_or(0);

        let (tx, rx) = watch::channel(false);
        self.watched.lock().unwrap().insert(spec.id, rx);
        let watched = self.watched.clone();
        let events = self.events.clone();
        let id = spec.id;
        tokio::spawn(async move {
            let (code, detail) = match child.wait().await {
                Ok(status) => describe(status),
                Err(e) => (None, format!("wait failed: {e}")),
            };
            let _ = tx.send(true);
            Self::exited(&watched, &events, id, code, detail);
        });
        Ok(Started {
            handle: format!("pid:{pid}:{start_time}"),
            address: format!("127.0.0.1:{port}"),
        })
    }

    async fn wait_ready(
        &self,
        spec: &ContainerSpec,
        started: &Started,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let gone = self.gone_flag(spec.id);
        self.probe
            .wait_ready(
                &started.address,
                &spec.template.health_path,
                timeout,
                || gone.as_ref().is_none_or(|g| *g.borrow()),
            )
            .await
    }

    async fn stop(
        &self,
        id: ContainerId,
        handle: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let (pid, start_time) = parse_handle(handle)?;
        if !proc_alive(pid, start_time) {
            return Ok(());
        }
        let gone = self.gone_flag(id);
        let wait_gone = |limit: Duration| {
            let mut gone = gone.clone();
            async move {
                let deadline = Instant::now() + limit;
                match gone.as_mut() {
                    Some(g) => {
                        let _ = tokio::time::timeout_at(deadline, g.wait_for(|v| *v)).await;
                    }
                    None => {
                        while proc_alive(pid, start_time) && Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                !proc_alive(pid, start_time)
            }
        };
        let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
        if wait_gone(grace).await {
            return Ok(());
        }
        if !grace.is_zero() {
            tracing::warn!(container_id = %id, pid, "container did not stop within its grace period; killing it");
        }
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        let after = Duration::from_secs(5);
        if wait_gone(after).await {
            Ok(())
        } else {
            Err(RuntimeError::Timeout {
                what: format!("process {pid} did not end after SIGKILL"),
                after,
            })
        }
    }

    /// Into the container's work dir (`<work dir>/<path>`); see the module doc.
    async fn write_files(
        &self,
        id: ContainerId,
        _handle: &str,
        _template: &Template,
        files: &[(String, Vec<u8>)],
    ) -> Result<(), RuntimeError> {
        // Every path checked before anything is written.
        for (path, _) in files {
            file_path_parts(path)?;
        }
        let root = self.work_dir(id);
        let files = files.to_vec();
        tokio::task::spawn_blocking(move || {
            for (path, contents) in &files {
                let parts = file_path_parts(path)?;
                write_under(&root, path, &parts, contents)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| RuntimeError::Io {
            what: "cannot write files".into(),
            source: std::io::Error::other(e),
        })?
    }

    async fn remove(&self, id: ContainerId, _handle: &str) -> Result<(), RuntimeError> {
        match tokio::fs::remove_dir_all(self.work_dir(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RuntimeError::Io {
                what: "cannot remove work dir".into(),
                source,
            }),
        }
    }

    async fn inspect(&self, _id: ContainerId, handle: &str) -> Result<Inspection, RuntimeError> {
        let (pid, start_time) = parse_handle(handle)?;
        Ok(if proc_alive(pid, start_time) {
            Inspection::Running
        } else {
            Inspection::Gone
        })
    }

    async fn list_owned(&self) -> Result<Vec<OwnedContainer>, RuntimeError> {
        let instance = self.cfg.instance_id.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let dir = std::fs::read_dir("/proc").map_err(|source| RuntimeError::Io {
                what: "cannot read /proc".into(),
                source,
            })?;
            for entry in dir.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<i32>().ok())
                else {
                    continue;
                };
                // Only process-group leaders: what the app itself forks inherits the
                // tag too, and is stopped with its group.
                let Some((state, pgrp, start_time)) = proc_stat(pid) else {
                    continue;
                };
                if pgrp != pid || state == 'Z' {
                    continue;
                }
                let Some(env) = proc_environ(pid) else {
                    continue;
                };
                if env.get(INSTANCE_ENV) != Some(&instance) {
                    continue;
                }
                let Some(id) = env
                    .get("WARMPOOL_CONTAINER_ID")
                    .and_then(|s| s.parse::<ContainerId>().ok())
                else {
                    continue;
                };
                out.push(OwnedContainer {
                    id,
                    handle: format!("pid:{pid}:{start_time}"),
                    address: env.get("PORT").map(|p| format!("127.0.0.1:{p}")),
                    running: true,
                });
            }
            Ok(out)
        })
        .await
        .map_err(|e| RuntimeError::Io {
            what: "cannot list processes".into(),
            source: std::io::Error::other(e),
        })?
    }

    async fn adopt(&self, owned: &OwnedContainer) -> Result<(), RuntimeError> {
        let (pid, start_time) = parse_handle(&owned.handle)?;
        if self.watched.lock().unwrap().contains_key(&owned.id) {
            return Ok(());
        }
        self.watch_adopted(owned.id, pid, start_time);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
        let (lo, _) = ephemeral_range();
        let ports: std::collections::HashSet<u16> =
            (0..500).map(|_| free_port().unwrap()).collect();
        assert_eq!(ports.len(), 500, "a port was handed out twice");
        if lo > 11_000 {
            assert!(ports.iter().all(|p| (10_000..lo).contains(p)));
        }
    }

    #[test]
    fn the_lean_sample_app_beside_warmpool_is_preferred_only_when_executable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let warmpool = dir.path().join("warmpool");
        let lean = dir.path().join(SAMPLE_APP_BIN);
        let own = SampleAppCommand {
            program: warmpool.clone(),
            args: vec!["sample-app".into()],
        };
        // Absent: warmpool's own subcommand.
        assert_eq!(SampleAppCommand::beside(&warmpool), own);
        // Present but not executable, or a directory: still the subcommand.
        std::fs::write(&lean, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&lean, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(SampleAppCommand::beside(&warmpool), own);
        let elsewhere = dir.path().join("d").join("warmpool");
        std::fs::create_dir_all(elsewhere.with_file_name(SAMPLE_APP_BIN)).unwrap();
        assert_eq!(
            SampleAppCommand::beside(&elsewhere),
            SampleAppCommand::subcommand(&elsewhere)
        );
        // An executable file: the lean binary, with no arguments.
        std::fs::set_permissions(&lean, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            SampleAppCommand::beside(&warmpool),
            SampleAppCommand {
                program: lean,
                args: vec![],
            }
        );
    }

    #[test]
    fn workloads_resolve_to_a_command_or_fail_typed() {
        let cfg = ProcessConfig {
            instance_id: "i".into(),
            work_root: "/nonexistent".into(),
            inherit_stderr: false,
        };
        let bare = ProcessRuntime::new(cfg.clone());
        let sample = ProcessRuntime::new(cfg)
            .with_sample_app(SampleAppCommand::subcommand(Path::new("/opt/warmpool")));
        let cmd = Workload::Command(vec!["python3".into(), "-m".into(), "http.server".into()]);
        assert_eq!(
            bare.command(&cmd).unwrap(),
            (
                "python3".to_owned(),
                vec!["-m".to_owned(), "http.server".to_owned()]
            )
        );
        assert_eq!(
            sample.command(&Workload::SampleApp).unwrap(),
            ("/opt/warmpool".to_owned(), vec!["sample-app".to_owned()])
        );
        let image = Workload::Image {
            image: "app:1".into(),
            pids_limit: None,
        };
        for (rt, w, says) in [
            (&bare, Workload::SampleApp, "the sample app"),
            (&sample, image, "an image"),
            (&sample, Workload::Command(vec![]), "an empty command"),
        ] {
            let e = rt.command(&w).unwrap_err();
            assert!(
                matches!(e, RuntimeError::Unsupported { runtime: "process", workload } if workload == says),
                "{e:?}"
            );
            assert_eq!(
                e.to_string(),
                format!("runtime error: the process runtime cannot run {says}")
            );
        }
    }

    /// A process runtime over `root`, and the work dir of a container `id` in it.
    fn files_runtime(root: &Path) -> (ProcessRuntime, ContainerId, PathBuf) {
        let rt = ProcessRuntime::new(ProcessConfig {
            instance_id: "i".into(),
            work_root: root.to_owned(),
            inherit_stderr: false,
        });
        let id = ContainerId::random();
        let dir = rt.work_dir(id);
        std::fs::create_dir_all(&dir).unwrap();
        (rt, id, dir)
    }

    fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec()))
            .collect()
    }

    /// Names in `dir` (recursively), relative to it, sorted.
    fn tree(dir: &Path) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(base).unwrap().display().to_string());
                if p.symlink_metadata().unwrap().is_dir() {
                    walk(base, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    #[tokio::test]
    async fn files_are_written_into_the_work_dir_with_their_parents_and_replaced_whole() {
        let root = tempfile::tempdir().unwrap();
        let (rt, id, dir) = files_runtime(root.path());
        let t = Template::default();
        rt.write_files(
            id,
            "pid:2:0",
            &t,
            &files(&[("a.txt", "one"), ("x/y/./z.json", "{}"), ("x/b", "")]),
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "one");
        assert_eq!(
            std::fs::read_to_string(dir.join("x/y/z.json")).unwrap(),
            "{}"
        );
        assert_eq!(std::fs::read(dir.join("x/b")).unwrap(), b"");
        rt.write_files(id, "pid:2:0", &t, &files(&[("a.txt", "two")]))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "two");
        // No temporary file left behind.
        assert_eq!(tree(&dir), ["a.txt", "x", "x/b", "x/y", "x/y/z.json"]);
    }

    #[tokio::test]
    async fn a_path_through_a_symlink_is_refused_and_nothing_is_written_outside() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "kept").unwrap();
        let (rt, id, dir) = files_runtime(root.path());
        std::os::unix::fs::symlink(outside.path(), dir.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.join("file")).unwrap();
        std::fs::create_dir(dir.join("real")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.join("real/deeper")).unwrap();
        let t = Template::default();
        for path in ["link/new", "link/secret", "file", "real/deeper/x/y", "link"] {
            let e = rt
                .write_files(id, "pid:2:0", &t, &files(&[(path, "evil")]))
                .await
                .unwrap_err();
            assert!(
                matches!(&e, RuntimeError::FileRefused { reason, .. } if reason.contains("symlink")),
                "{path}: {e:?}"
            );
        }
        assert_eq!(tree(outside.path()), ["secret"]);
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret")).unwrap(),
            "kept"
        );
        // A file where a directory is needed, and a directory where the file goes.
        std::fs::write(dir.join("plain"), "").unwrap();
        for path in ["plain/x", "real"] {
            let e = rt
                .write_files(id, "pid:2:0", &t, &files(&[(path, "x")]))
                .await
                .unwrap_err();
            assert!(
                matches!(e, RuntimeError::FileRefused { .. }),
                "{path}: {e:?}"
            );
        }
    }

    #[tokio::test]
    async fn paths_leaving_the_work_dir_are_refused_before_anything_is_written() {
        let root = tempfile::tempdir().unwrap();
        let (rt, id, dir) = files_runtime(root.path());
        let t = Template::default();
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "",
            ".",
            "a/",
            "a\0b",
        ] {
            let e = rt
                .write_files(id, "pid:2:0", &t, &files(&[("good", "g"), (bad, "x")]))
                .await
                .unwrap_err();
            assert!(
                matches!(e, RuntimeError::FileRefused { .. }),
                "{bad:?}: {e:?}"
            );
        }
        assert!(tree(&dir).is_empty(), "{:?}", tree(&dir));
        assert!(tree(root.path()).iter().all(|p| p == &id.to_string()));
        // A container whose work dir is gone.
        let gone = ContainerId::random();
        let e = rt
            .write_files(gone, "pid:2:0", &t, &files(&[("a", "x")]))
            .await
            .unwrap_err();
        assert!(matches!(e, RuntimeError::Io { .. }), "{e:?}");
        assert!(!rt.work_dir(gone).exists());
    }

    #[test]
    fn handles_parse_strictly() {
        assert_eq!(parse_handle("pid:42:1234").unwrap(), (42, 1234));
        for bad in [
            "", "pid:", "pid:42", "42:1", "pid:x:1", "pid:1:5", "pid:0:5", "pid:-3:5",
        ] {
            assert!(parse_handle(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i32;
        let (_, _, st) = proc_stat(me).unwrap();
        assert!(proc_alive(me, st));
        assert!(!proc_alive(me, st + 1));
    }
}
