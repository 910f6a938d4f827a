//! A claim's files written straight into a container's files-dir volume, through
//! the volume's path on this host, when warmpool shares the engine's file system:
//! no archive upload (the engine's costs tens of milliseconds a claim). Every step
//! is relative to a directory already open and refuses symlinks (`O_NOFOLLOW` on
//! each part, files renamed into place), so a container that plants a symlink in
//! its files dir cannot make warmpool write anywhere outside that directory.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{self as rfs, AtFlags, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;
use warmpool_runtime::{file_path_parts, RuntimeError};

/// Writes each of `files` at its path under `root` (the volume's directory on
/// this host): missing directories made (0755), each file written to a new
/// temporary name beside its place (0644) and renamed over it; all owned by
/// `owner` where given. A part that is a symlink, or not a directory, refuses
/// the file: nothing is written outside `root`.
pub(crate) fn write_beneath(
    root: &Path,
    files: &[(String, Vec<u8>)],
    owner: Option<(u32, u32)>,
) -> Result<(), RuntimeError> {
    for (path, _) in files {
        file_path_parts(path)?;
    }
    let io = |what: &str| {
        let what = what.to_owned();
        move |e: Errno| RuntimeError::Io {
            what,
            source: e.into(),
        }
    };
    let root = rfs::open(root, dir_flags(), Mode::empty())
        .map_err(io("cannot open the container's files dir on this host"))?;
    for (path, contents) in files {
        write_one(&root, path, contents, owner)?;
    }
    Ok(())
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn chown(owner: Option<(u32, u32)>) -> (Option<Uid>, Option<Gid>) {
    match owner {
        Some((u, g)) => (Some(Uid::from_raw(u)), Some(Gid::from_raw(g))),
        None => (None, None),
    }
}

fn write_one(
    root: &OwnedFd,
    path: &str,
    contents: &[u8],
    owner: Option<(u32, u32)>,
) -> Result<(), RuntimeError> {
    let refuse = |reason: String| RuntimeError::FileRefused {
        path: path.to_owned(),
        reason,
    };
    let io = |what: String| {
        move |e: Errno| RuntimeError::Io {
            what: format!("cannot write file {path:?}: {what}"),
            source: e.into(),
        }
    };
    let parts = file_path_parts(path)?;
    let (name, parents) = parts.split_last().expect("a file path has a part");
    let (uid, gid) = chown(owner);
    let mut dir: Option<OwnedFd> = None;
    for part in parents {
        let at = dir.as_ref().unwrap_or(root);
        match rfs::mkdirat(at, *part, Mode::from_raw_mode(0o755)) {
            Ok(()) if owner.is_some() => {
                rfs::chownat(at, *part, uid, gid, AtFlags::SYMLINK_NOFOLLOW).map_err(io(
                    format!("cannot give directory {part:?} to the app's user"),
                ))?
            }
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io(format!("cannot create directory {part:?}"))(e)),
        }
        let next = match rfs::openat(at, *part, dir_flags(), Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return Err(refuse(format!("{part:?} is a symlink or not a directory")))
            }
            Err(e) => return Err(io(format!("cannot open directory {part:?}"))(e)),
        };
        dir = Some(next);
    }
    let at = dir.as_ref().unwrap_or(root);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let temp = format!(
        ".{name}.warmpool-{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let fd = rfs::openat(
        at,
        temp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(io("cannot create its temporary file".into()))?;
    let written = (|| {
        if owner.is_some() {
            rfs::fchown(&fd, uid, gid)?;
        }
        let mut file = std::fs::File::from(fd);
        file.write_all(contents)
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
        rfs::renameat(at, temp.as_str(), at, *name)
    })();
    if let Err(e) = written {
        let _ = rfs::unlinkat(at, temp.as_str(), AtFlags::empty());
        return Err(match e {
            Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST => {
                refuse(format!("{name:?} is a directory"))
            }
            e => io("cannot write it".into())(e),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, MetadataExt};

    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn files_land_in_place_with_their_directories_and_replace_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let own = std::fs::metadata(dir.path()).unwrap();
        let me = (own.uid(), own.gid());
        write_beneath(
            dir.path(),
            &files(&[("a.txt", "one"), ("x/y/z.json", "{}"), ("x/w", "w")]),
            Some(me),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
            "one"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x/y/z.json")).unwrap(),
            "{}"
        );
        let m = std::fs::metadata(dir.path().join("x/y/z.json")).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (me.0, 0o644));
        assert_eq!(
            std::fs::metadata(dir.path().join("x/y")).unwrap().mode() & 0o777,
            0o755
        );
        write_beneath(dir.path(), &files(&[("a.txt", "two")]), None).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
            "two"
        );
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    /// A container that plants symlinks in its files dir (to a directory or a
    /// file outside it) gets its claim refused or the link replaced, never a
    /// write through the link.
    #[test]
    fn symlinks_planted_in_the_files_dir_are_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "root:x:0:0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        symlink(outside.path(), dir.path().join("etc")).unwrap();
        symlink(outside.path().join("passwd"), dir.path().join("passwd")).unwrap();

        let e = write_beneath(dir.path(), &files(&[("etc/passwd", "owned")]), None).unwrap_err();
        assert!(matches!(e, RuntimeError::FileRefused { .. }), "{e:?}");
        let e = write_beneath(dir.path(), &files(&[("etc/new/x", "owned")]), None).unwrap_err();
        assert!(matches!(e, RuntimeError::FileRefused { .. }), "{e:?}");
        // A symlink in the file's own place is replaced, not written through.
        write_beneath(dir.path(), &files(&[("passwd", "mine")]), None).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.path().join("passwd")).unwrap(),
            "root:x:0:0"
        );
        assert!(!std::fs::symlink_metadata(dir.path().join("passwd"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("passwd")).unwrap(),
            "mine"
        );
        assert!(!outside.path().join("new").exists());
        // A directory in a file's place refuses it.
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let e = write_beneath(dir.path(), &files(&[("d", "x")]), None).unwrap_err();
        assert!(matches!(e, RuntimeError::FileRefused { .. }), "{e:?}");
        // So does a root that is itself a symlink.
        let link = dir.path().join("root-link");
        symlink(outside.path(), &link).unwrap();
        assert!(write_beneath(&link, &files(&[("x", "y")]), None).is_err());
        assert!(!outside.path().join("x").exists());
    }
}
