//! A claim's files as the tar archive uploaded into a container (extracted at
//! `/`), and a file read back out of a downloaded archive. Pure: no engine call.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use warmpool_runtime::{file_path_parts, RuntimeError};

/// Where an archive is extracted, and whose its entries are.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Layout {
    /// Extracted in the files dir itself (a volume of its own, on a read-only
    /// root), paths relative to it; otherwise at `/`, paths under the files dir.
    pub inside: bool,
    /// The app's uid and gid, where known: its files and the directories the
    /// archive makes for them (inside the files dir only) are its own, so that
    /// a non-root app's bind hook can write beside them.
    pub owner: Option<(u32, u32)>,
}

/// The archive that puts each of `files` at `<files_dir>/<path>`: regular
/// files, mode 0644, owned by root or the app's user ([`Layout::owner`]), dated
/// now. Every path is checked again ([`file_path_parts`]); `files_dir` must be
/// absolute and hold no `..`. Directory entries only for the directories the
/// files are in below the files dir, and only with an owner: otherwise the
/// engine creates missing parents (0755, root), and an entry for a directory that
/// exists would reset its mode (a `/tmp` would lose its sticky bit).
pub(crate) fn archive(
    files_dir: &str,
    files: &[(String, Vec<u8>)],
    layout: Layout,
) -> Result<Vec<u8>, RuntimeError> {
    let dir = if layout.inside {
        dir_parts(files_dir)?;
        Vec::new()
    } else {
        dir_parts(files_dir)?
    };
    let (uid, gid) = layout.owner.unwrap_or((0, 0));
    let mtime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut tar = tar::Builder::new(Vec::new());
    let mut made = std::collections::BTreeSet::new();
    for (path, contents) in files {
        let parts = file_path_parts(path)?;
        let refused = |e: std::io::Error| RuntimeError::FileRefused {
            path: path.clone(),
            reason: format!("cannot archive it: {e}"),
        };
        if layout.owner.is_some() {
            for n in 1..parts.len() {
                let mut sub = dir.clone();
                sub.extend(&parts[..n]);
                let sub = sub.join("/");
                if made.insert(sub.clone()) {
                    let mut header = tar::Header::new_gnu();
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_uid(uid.into());
                    header.set_gid(gid.into());
                    header.set_mtime(mtime);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{sub}/"), &[][..])
                        .map_err(refused)?;
                }
            }
        }
        let mut full = dir.clone();
        full.extend(parts);
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(uid.into());
        header.set_gid(gid.into());
        header.set_mtime(mtime);
        header.set_size(contents.len() as u64);
        tar.append_data(&mut header, full.join("/"), contents.as_slice())
            .map_err(refused)?;
    }
    tar.into_inner().map_err(|source| RuntimeError::Io {
        what: "cannot build the files' archive".into(),
        source,
    })
}

/// The parts of an absolute files dir (`/warmpool/files`: `["warmpool", "files"]`).
fn dir_parts(files_dir: &str) -> Result<Vec<&str>, RuntimeError> {
    let refuse = |reason: &str| RuntimeError::FileRefused {
        path: files_dir.to_owned(),
        reason: format!("the files dir {reason}"),
    };
    if !files_dir.starts_with('/') {
        return Err(refuse("is not an absolute path"));
    }
    let parts: Vec<&str> = files_dir
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(refuse("holds `..`"));
    }
    if files_dir.contains('\0') {
        return Err(refuse("holds a NUL byte"));
    }
    Ok(parts)
}

/// The contents of the one regular file in `archive` (a download of `path`).
pub(crate) fn single_file(archive: &[u8], path: &str) -> Result<Vec<u8>, RuntimeError> {
    let io = |source| RuntimeError::Io {
        what: format!("cannot read {path:?} from the container's archive"),
        source,
    };
    let mut tar = tar::Archive::new(archive);
    let mut entries = tar.entries().map_err(io)?;
    let mut entry = match entries.next() {
        Some(entry) => entry.map_err(io)?,
        None => {
            return Err(RuntimeError::NotFound {
                message: format!("{path:?}: the container's archive is empty"),
            })
        }
    };
    if entry.header().entry_type() != tar::EntryType::Regular {
        return Err(io(std::io::Error::other(format!(
            "it is no regular file ({:?})",
            entry.header().entry_type()
        ))));
    }
    let mut contents = Vec::new();
    entry.read_to_end(&mut contents).map_err(io)?;
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(archive: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        tar::Archive::new(archive)
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().display().to_string();
                let mode = e.header().mode().unwrap();
                assert_eq!(e.header().entry_type(), tar::EntryType::Regular);
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, mode, data)
            })
            .collect()
    }

    #[test]
    fn files_land_under_the_files_dir_as_regular_files() {
        let long = format!("{}/f.txt", "d".repeat(150));
        let files = vec![
            ("a.txt".to_owned(), b"one".to_vec()),
            ("x/./y/z.json".to_owned(), b"{}".to_vec()),
            (long.clone(), vec![0, 255]),
        ];
        let archive = archive("/warmpool//files/", &files, Layout::default()).unwrap();
        assert_eq!(
            entries(&archive),
            [
                ("warmpool/files/a.txt".to_owned(), 0o644, b"one".to_vec()),
                (
                    "warmpool/files/x/y/z.json".to_owned(),
                    0o644,
                    b"{}".to_vec()
                ),
                (format!("warmpool/files/{long}"), 0o644, vec![0, 255]),
            ]
        );
        assert_eq!(single_file(&archive, "a").unwrap(), b"one");
    }

    #[test]
    fn inside_a_files_dir_volume_paths_are_relative_and_owned_by_the_app() {
        let files = vec![
            ("a.txt".to_owned(), b"one".to_vec()),
            ("x/y/z.json".to_owned(), b"{}".to_vec()),
            ("x/w.txt".to_owned(), b"w".to_vec()),
        ];
        let layout = Layout {
            inside: true,
            owner: Some((65532, 65533)),
        };
        let inside = archive("/warmpool/files", &files, layout).unwrap();
        let got: Vec<(String, tar::EntryType, u64, u64)> = tar::Archive::new(&inside[..])
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.entry_type(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                )
            })
            .collect();
        use tar::EntryType::{Directory, Regular};
        assert_eq!(
            got,
            [
                ("a.txt".to_owned(), Regular, 65532, 65533),
                ("x/".to_owned(), Directory, 65532, 65533),
                ("x/y/".to_owned(), Directory, 65532, 65533),
                ("x/y/z.json".to_owned(), Regular, 65532, 65533),
                ("x/w.txt".to_owned(), Regular, 65532, 65533),
            ]
        );
        // Outside (at `/`), the directories are still only those below the
        // files dir, never the files dir or its parents.
        let layout = Layout {
            inside: false,
            owner: Some((1, 1)),
        };
        let outside = archive("/warmpool/files", &files[1..2], layout).unwrap();
        let dirs: Vec<String> = tar::Archive::new(&outside[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            dirs,
            [
                "warmpool/files/x/",
                "warmpool/files/x/y/",
                "warmpool/files/x/y/z.json"
            ]
        );
    }

    #[test]
    fn bad_paths_and_files_dirs_are_refused() {
        for bad in ["../x", "/x", "a/../../x", ""] {
            let e = archive("/f", &[(bad.to_owned(), Vec::new())], Layout::default()).unwrap_err();
            assert!(
                matches!(e, RuntimeError::FileRefused { .. }),
                "{bad}: {e:?}"
            );
        }
        for dir in ["relative", "/a/../b", ""] {
            let e = archive(dir, &[("x".to_owned(), Vec::new())], Layout::default()).unwrap_err();
            assert!(
                matches!(e, RuntimeError::FileRefused { .. }),
                "{dir}: {e:?}"
            );
        }
    }

    #[test]
    fn an_empty_or_odd_archive_is_an_error() {
        let empty = tar::Builder::new(Vec::new()).into_inner().unwrap();
        assert!(matches!(
            single_file(&empty, "/x"),
            Err(RuntimeError::NotFound { .. })
        ));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, "dir", &[][..]).unwrap();
        let dir = b.into_inner().unwrap();
        assert!(matches!(
            single_file(&dir, "/dir"),
            Err(RuntimeError::Io { .. })
        ));
    }
}
