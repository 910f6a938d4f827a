//! A claim's set-up fields (`env`, `secretEnv`, `files`, `labels`, `metadata`,
//! `text`) checked against their limits, each error naming its field.

use std::collections::BTreeMap;

use warmpool_client::ClaimRequest;
use warmpool_engine::Setup;

use crate::problem::ApiError;

/// Longest `text` a claim may set (the sample app's own limit).
pub(crate) const MAX_TEXT: usize = 1024 * 1024;
/// Entries of `env`, and of `secretEnv`, at most.
pub(crate) const MAX_ENV_ENTRIES: usize = 64;
/// Bytes of `env`'s names and values, and of `secretEnv`'s, at most.
pub(crate) const MAX_ENV_BYTES: usize = 32 * 1024;
/// Bytes of `files`' contents in all, at most.
pub(crate) const MAX_FILES_BYTES: usize = 1024 * 1024;
/// Files at most.
pub(crate) const MAX_FILES: usize = 1000;
/// Bytes of `metadata`, serialised, at most.
pub(crate) const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The set-up of `req`, or a 422 naming the first field that breaks a rule.
pub(crate) fn check(req: ClaimRequest) -> Result<Setup, ApiError> {
    if req.text.as_ref().is_some_and(|t| t.len() > MAX_TEXT) {
        return Err(ApiError::invalid(
            "text",
            format!("at most {MAX_TEXT} bytes"),
        ));
    }
    let env = req.env.unwrap_or_default();
    check_env("env", &env)?;
    let secret_env = req.secret_env.unwrap_or_default();
    check_env("secretEnv", &secret_env)?;
    if let Some(name) = secret_env.keys().find(|k| env.contains_key(*k)) {
        return Err(ApiError::invalid(
            "secretEnv",
            format!("{name} is also in env; give each name once"),
        ));
    }
    let files = req.files.unwrap_or_default();
    check_files(&files)?;
    let labels = req.labels.unwrap_or_default();
    warmpool_core::labels::validate_labels(&labels)
        .map_err(|e| ApiError::invalid("labels", e.to_string()))?;
    let metadata = match req.metadata {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => {
            let text = v.to_string();
            if text.len() > MAX_METADATA_BYTES {
                return Err(ApiError::invalid(
                    "metadata",
                    format!(
                        "at most {MAX_METADATA_BYTES} bytes serialised, got {}",
                        text.len()
                    ),
                ));
            }
            Some(text)
        }
    };
    Ok(Setup {
        env,
        secret_env,
        files: files
            .into_iter()
            .map(|(path, content)| (path, content.into_bytes()))
            .collect(),
        labels,
        metadata,
        text: req.text,
    })
}

/// Names a process environment takes and that warmpool does not set itself;
/// values without NUL; within the limits.
fn check_env(field: &str, env: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if env.len() > MAX_ENV_ENTRIES {
        return Err(ApiError::invalid(
            field,
            format!("at most {MAX_ENV_ENTRIES} entries, got {}", env.len()),
        ));
    }
    let bytes: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_ENV_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("at most {MAX_ENV_BYTES} bytes of names and values, got {bytes}"),
        ));
    }
    for (name, value) in env {
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ApiError::invalid(
                field,
                format!("{name:?} is not an env var name ([A-Za-z_][A-Za-z0-9_]*)"),
            ));
        }
        if name == "PORT" || name.starts_with("WARMPOOL_") {
            return Err(ApiError::invalid(
                field,
                format!("{name} is set by warmpool (PORT and WARMPOOL_* are reserved)"),
            ));
        }
        if value.contains('\0') {
            return Err(ApiError::invalid(
                field,
                format!("the value of {name} contains a NUL character"),
            ));
        }
    }
    Ok(())
}

/// Relative paths of plain segments (no `.`, `..`, empty segment, backslash or
/// NUL), within the limits.
fn check_files(files: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if files.len() > MAX_FILES {
        return Err(ApiError::invalid(
            "files",
            format!("at most {MAX_FILES} files, got {}", files.len()),
        ));
    }
    let bytes: usize = files.values().map(String::len).sum();
    if bytes > MAX_FILES_BYTES {
        return Err(ApiError::invalid(
            "files",
            format!("at most {MAX_FILES_BYTES} bytes of content in all, got {bytes}"),
        ));
    }
    for path in files.keys() {
        if let Err(why) = check_path(path) {
            return Err(ApiError::invalid("files", format!("{path:?}: {why}")));
        }
    }
    // A file cannot also be a directory of another.
    for path in files.keys() {
        if let Some(dir) = files.keys().find(|other| {
            other.len() > path.len()
                && other.starts_with(path.as_str())
                && other.as_bytes()[path.len()] == b'/'
        }) {
            return Err(ApiError::invalid(
                "files",
                format!("{path:?} is a file and also the directory of {dir:?}"),
            ));
        }
    }
    Ok(())
}

/// Why `path` is not a plain relative path.
pub(crate) fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("an empty path");
    }
    if path.len() > 1024 {
        return Err("longer than 1024 bytes");
    }
    if path.starts_with('/') {
        return Err("absolute paths are not allowed; give a path relative to the files dir");
    }
    if path.contains('\\') || path.contains('\0') {
        return Err("backslashes and NUL characters are not allowed");
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err("empty segments (// or a trailing /) are not allowed"),
            "." | ".." => return Err(". and .. segments are not allowed"),
            s if s.len() > 255 => return Err("a segment is longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_pass() {
        for good in ["a", "a/b.txt", "conf/app.json", "x..y", ".hidden"] {
            assert_eq!(check_path(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "..",
            ".",
            "a\\b",
            "a\0b",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn env_names_and_limits_are_checked() {
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(check_env("env", &one("GREETING", "hi")).is_ok());
        assert!(check_env("env", &one("_X1", "")).is_ok());
        for bad in ["1X", "A-B", "A B", "", "PORT", "WARMPOOL_POOL", "A=B"] {
            assert!(check_env("env", &one(bad, "v")).is_err(), "{bad:?} passed");
        }
        assert!(check_env("env", &one("A", "a\0b")).is_err());
        let many: BTreeMap<String, String> =
            (0..65).map(|i| (format!("K{i}"), String::new())).collect();
        assert!(check_env("env", &many).is_err());
        assert!(check_env("env", &one("BIG", &"x".repeat(MAX_ENV_BYTES))).is_err());
    }

    #[test]
    fn a_file_cannot_be_another_files_directory() {
        let files = BTreeMap::from([
            ("a".to_owned(), String::new()),
            ("a/b".to_owned(), String::new()),
        ]);
        assert!(check_files(&files).is_err());
        let files = BTreeMap::from([
            ("a".to_owned(), String::new()),
            ("ab/c".to_owned(), String::new()),
        ]);
        assert!(check_files(&files).is_ok());
    }
}
