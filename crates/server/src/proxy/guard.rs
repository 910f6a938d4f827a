//! The path guard: a proxied path that any common reading takes to the app's
//! `/admin` surface is refused (the admin pass-through is the only way there).

use std::collections::HashSet;

use percent_encoding::percent_decode_str;

/// Whether `path` (the part after `/container/{id}`) may reach the app's `/admin`
/// surface under any common reading: any interleaving of percent-decoding and
/// dot-segment resolution (`%2e` counts as a dot; empty segments kept, as URL
/// rules do, or merged first), backslashes read as slashes, in any letter case.
/// Refusing too much is safe; refusing too little is not.
pub fn is_admin_path(path: &str) -> bool {
    // Nothing to decode or resolve (the common case): one reading, no allocation.
    if !path.contains(['%', '\\']) && !path.split('/').any(|s| s == "." || s == "..") {
        return first_segment_is_admin(path.split('/'));
    }
    const MAX_READINGS: usize = 256;
    let mut seen = HashSet::new();
    let mut frontier = vec![path.to_owned()];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for p in frontier {
            if first_segment_is_admin(p.split(['/', '\\'])) {
                return true;
            }
            let decoded = percent_decode_str(&p).decode_utf8_lossy().into_owned();
            for reading in [decoded, resolve_dots(&p, true), resolve_dots(&p, false)] {
                if reading != p && seen.insert(reading.clone()) {
                    next.push(reading);
                }
            }
            if seen.len() > MAX_READINGS {
                // Deliberately convoluted: no legitimate client sends this.
                return true;
            }
        }
        frontier = next;
    }
    false
}

fn first_segment_is_admin<'a>(mut segments: impl Iterator<Item = &'a str>) -> bool {
    segments
        .find(|s| !s.is_empty())
        .is_some_and(|s| s.len() >= 5 && s.as_bytes()[..5].eq_ignore_ascii_case(b"admin"))
}

/// `p` with dot segments resolved, keeping empty segments (URL rules: `a//..` is
/// `a/`) or merging them first (`a//..` is `/`).
fn resolve_dots(p: &str, keep_empty: bool) -> String {
    let mut resolved: Vec<&str> = Vec::new();
    for seg in p.split(['/', '\\']).filter(|s| keep_empty || !s.is_empty()) {
        match seg.to_ascii_lowercase().as_str() {
            "." | "%2e" => {}
            ".." | "%2e%2e" | ".%2e" | "%2e." => {
                resolved.pop();
            }
            _ => resolved.push(seg),
        }
    }
    // The leading empty segment (if kept) is the leading slash.
    resolved.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths_are_recognised_in_every_spelling() {
        for p in [
            "/admin",
            "/admin/",
            "/admin/update-text",
            "/ADMIN/update-text",
            "/%61dmin/update-text",
            "/%2561dmin/update-text",
            "/x/../admin/update-text",
            "/x/%2e%2e/admin",
            "/x/%2E%2E/admin",
            "//admin/update-text",
            "/./admin",
            "/admin%2fupdate-text",
            "\\admin\\update-text",
            "/x/..\\admin",
            "/../../admin",
            "/admin;x=1",
            // Found by the property tests below: an unresolved reading, a
            // resolution that keeps empty segments, resolution between decodings.
            "/admin/%2e%2e",
            "/..%2fadmin//%2e%2e",
            "/../%2561dmin%252f%2e%2e",
        ] {
            assert!(is_admin_path(p), "{p} not refused");
        }
        for p in [
            "",
            "/",
            "/x",
            "/x/admin",
            "/adm",
            "/ws",
            "/x/../y",
            "/static/app.js",
            "/%C3%A4dmin",
            "/\u{e4}dmin\u{e4}",
        ] {
            assert!(!is_admin_path(p), "{p} refused");
        }
    }

    /// Pieces of hostile paths: spellings of `admin`, dot segments (plain and
    /// encoded), separators (plain, doubled, encoded, backslashes), and noise.
    pub(crate) fn hostile_path() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let segment = prop_oneof![
            Just("admin".to_owned()),
            Just("ADMIN".to_owned()),
            Just("Admin".to_owned()),
            Just("%61dmin".to_owned()),
            Just("adm%69n".to_owned()),
            Just("%2561dmin".to_owned()),
            Just("..".to_owned()),
            Just(".".to_owned()),
            Just("%2e%2e".to_owned()),
            Just("%2E.".to_owned()),
            Just(".%2e".to_owned()),
            Just("%252e%252e".to_owned()),
            Just(String::new()),
            Just("update-text".to_owned()),
            "[a-z]{1,3}",
        ];
        let sep = prop_oneof![
            Just("/"),
            Just("//"),
            Just("\\"),
            Just("%2f"),
            Just("%2F"),
            Just("%5c"),
            Just("%252f"),
            Just(";x=1/"),
        ];
        proptest::collection::vec((sep, segment), 1..6)
            .prop_map(|parts| parts.into_iter().map(|(s, g)| format!("{s}{g}")).collect())
    }

    /// Ways a server might read a path: as is, decoded once, with dot segments
    /// resolved (WHATWG URL rules, which also read `\\` as `/`), in both orders.
    fn readings(path: &str) -> Vec<String> {
        let once = percent_decode_str(path).decode_utf8_lossy().into_owned();
        let mut out = vec![path.to_owned(), once.clone()];
        for p in [path, once.as_str()] {
            let slashed = if p.starts_with('/') {
                p.to_owned()
            } else {
                format!("/{p}")
            };
            if let Ok(u) = url::Url::parse(&format!("http://h{slashed}")) {
                out.push(
                    percent_decode_str(u.path())
                        .decode_utf8_lossy()
                        .into_owned(),
                );
                out.push(u.path().to_owned());
            }
        }
        out
    }

    /// A reading reaches `/admin` when, with empty segments merged and case
    /// ignored, it starts there.
    fn reaches_admin(reading: &str) -> bool {
        let merged: Vec<&str> = reading
            .split(['/', '\\'])
            .filter(|s| !s.is_empty())
            .collect();
        format!("/{}", merged.join("/"))
            .to_ascii_lowercase()
            .starts_with("/admin")
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4_000))]
        /// No path that any common reading takes to `/admin` gets through.
        #[test]
        fn no_reading_of_a_passed_path_reaches_admin(path in hostile_path()) {
            if !is_admin_path(&path) {
                for r in readings(&path) {
                    proptest::prop_assert!(!reaches_admin(&r), "{path:?} passes but reads as {r:?}");
                }
            }
        }

        /// Arbitrary input never panics the check.
        #[test]
        fn any_path_is_checked_without_panicking(path in "\\PC{0,64}") {
            let _ = is_admin_path(&path);
        }
    }
}
