//! Labels in Kubernetes label syntax, and label selectors over them.
//!
//! A label key is an optional DNS-subdomain prefix and `/`, then a name of at
//! most 63 characters; a value is empty or a name-like string of at most 63.
//! A [`Selector`] is Kubernetes' label-selector syntax: comma-separated
//! requirements, each `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`,
//! `k` (exists) or `!k` (does not exist). As in Kubernetes, `!=` and `notin`
//! match a map without the key, and the empty selector matches every map.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Most labels one container may carry.
pub const MAX_LABELS: usize = 64;
/// Longest name part of a key, and longest value.
pub const MAX_NAME: usize = 63;
/// Longest prefix (before the `/`) of a key.
pub const MAX_PREFIX: usize = 253;

/// A key, a value or a set of labels that Kubernetes would refuse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label key {key:?}: {why}")]
    Key { key: String, why: String },
    #[error("{}value {value:?}: {why}", key.as_ref().map(|k| format!("label {k:?}: ")).unwrap_or_default())]
    Value {
        /// The key whose value it is, when known.
        key: Option<String>,
        value: String,
        why: String,
    },
    #[error("{count} labels: at most {MAX_LABELS}")]
    TooMany { count: usize },
}

/// Why `s` is not a name (the part of a key after the prefix, or a non-empty
/// value): at most 63 characters, `[A-Za-z0-9]` at both ends, `-`, `_`, `.` and
/// alphanumerics inside.
fn name_error(s: &str) -> Option<String> {
    if s.len() > MAX_NAME {
        return Some(format!(
            "{} characters, at most {MAX_NAME}",
            s.chars().count()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Some(format!(
            "{c:?} is not allowed (only letters, digits, '-', '_' and '.')"
        ));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(s.chars().next()) || !alnum(s.chars().last()) {
        return Some("must begin and end with a letter or digit".into());
    }
    None
}

/// Why `s` is not a DNS subdomain (RFC 1123): at most 253 characters, dot-separated
/// parts of lowercase letters, digits and `-`, each beginning and ending with a
/// letter or digit.
fn subdomain_error(s: &str) -> Option<String> {
    if s.len() > MAX_PREFIX {
        return Some(format!(
            "prefix of {} characters, at most {MAX_PREFIX}",
            s.chars().count()
        ));
    }
    for part in s.split('.') {
        let ok = !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !part.starts_with('-')
            && !part.ends_with('-');
        if !ok {
            return Some(format!(
                "prefix {s:?} is not a DNS subdomain (lowercase letters, digits, '-' and '.', \
                 each dot-separated part beginning and ending with a letter or digit)"
            ));
        }
    }
    None
}

/// Checks a label key: `name` or `prefix/name`.
pub fn validate_key(key: &str) -> Result<(), LabelError> {
    let err = |why: String| LabelError::Key {
        key: key.to_owned(),
        why,
    };
    if key.is_empty() {
        return Err(err("empty".into()));
    }
    let name = match key.split_once('/') {
        None => key,
        Some((prefix, name)) => {
            if prefix.is_empty() {
                return Err(err("empty prefix before '/'".into()));
            }
            if name.contains('/') {
                return Err(err("at most one '/'".into()));
            }
            if let Some(why) = subdomain_error(prefix) {
                return Err(err(why));
            }
            name
        }
    };
    if name.is_empty() {
        return Err(err("empty name".into()));
    }
    match name_error(name) {
        Some(why) => Err(err(if name == key {
            why
        } else {
            format!("name {name:?}: {why}")
        })),
        None => Ok(()),
    }
}

/// Checks a label value: empty, or a name of at most 63 characters.
pub fn validate_value(value: &str) -> Result<(), LabelError> {
    match value {
        "" => Ok(()),
        v => match name_error(v) {
            None => Ok(()),
            Some(why) => Err(LabelError::Value {
                key: None,
                value: value.to_owned(),
                why,
            }),
        },
    }
}

/// Checks a whole set of labels: at most 64, every key and value valid.
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), LabelError> {
    if labels.len() > MAX_LABELS {
        return Err(LabelError::TooMany {
            count: labels.len(),
        });
    }
    for (k, v) in labels {
        validate_key(k)?;
        validate_value(v).map_err(|e| match e {
            LabelError::Value { value, why, .. } => LabelError::Value {
                key: Some(k.clone()),
                value,
                why,
            },
            other => other,
        })?;
    }
    Ok(())
}

/// One requirement of a [`Selector`]. Keys and values are valid (as checked by
/// [`validate_key`] and [`validate_value`]) when parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `k=v` or `k==v`: the key is present with this value.
    Equals { key: String, value: String },
    /// `k!=v`: the key is absent, or present with another value.
    NotEquals { key: String, value: String },
    /// `k in (a,b)`: the key is present with one of these values.
    In {
        key: String,
        values: BTreeSet<String>,
    },
    /// `k notin (a,b)`: the key is absent, or present with none of these values.
    NotIn {
        key: String,
        values: BTreeSet<String>,
    },
    /// `k`: the key is present (with any value).
    Exists { key: String },
    /// `!k`: the key is absent.
    DoesNotExist { key: String },
}

impl Requirement {
    /// The key it is about.
    pub fn key(&self) -> &str {
        match self {
            Requirement::Equals { key, .. }
            | Requirement::NotEquals { key, .. }
            | Requirement::In { key, .. }
            | Requirement::NotIn { key, .. }
            | Requirement::Exists { key }
            | Requirement::DoesNotExist { key } => key,
        }
    }

    /// Whether `labels` meet it.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let found = labels.get(self.key());
        match self {
            Requirement::Equals { value, .. } => found == Some(value),
            Requirement::NotEquals { value, .. } => found != Some(value),
            Requirement::In { values, .. } => found.is_some_and(|v| values.contains(v)),
            Requirement::NotIn { values, .. } => !found.is_some_and(|v| values.contains(v)),
            Requirement::Exists { .. } => found.is_some(),
            Requirement::DoesNotExist { .. } => found.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |values: &BTreeSet<String>| values.iter().cloned().collect::<Vec<_>>().join(",");
        match self {
            Requirement::Equals { key, value } => write!(f, "{key}={value}"),
            Requirement::NotEquals { key, value } => write!(f, "{key}!={value}"),
            Requirement::In { key, values } => write!(f, "{key} in ({})", set(values)),
            Requirement::NotIn { key, values } => write!(f, "{key} notin ({})", set(values)),
            Requirement::Exists { key } => write!(f, "{key}"),
            Requirement::DoesNotExist { key } => write!(f, "!{key}"),
        }
    }
}

/// A label selector: every requirement must hold. The empty selector matches
/// every set of labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    pub fn new(requirements: Vec<Requirement>) -> Self {
        Self { requirements }
    }

    /// Its requirements, in the order written.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` meet every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// A selector that does not parse: the requirement at fault, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("requirement {requirement:?}: {why}")]
pub struct SelectorError {
    /// The offending requirement as written (trimmed).
    pub requirement: String,
    pub why: String,
}

/// Splits a selector at the commas outside parentheses.
fn split_requirements(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_requirement(r: &str) -> Result<Requirement, String> {
    let key = |k: &str| -> Result<String, String> {
        let k = k.trim();
        if k.is_empty() {
            return Err("no key".into());
        }
        validate_key(k).map_err(|e| e.to_string())?;
        Ok(k.to_owned())
    };
    let value = |v: &str| -> Result<String, String> {
        let v = v.trim();
        validate_value(v).map_err(|e| e.to_string())?;
        Ok(v.to_owned())
    };
    if r.is_empty() {
        return Err("empty (a stray comma?)".into());
    }
    if let Some(rest) = r.strip_prefix('!') {
        if rest.contains(['=', '(', ')', '!']) {
            return Err("'!' takes a key only (did you mean 'k!=v'?)".into());
        }
        return Ok(Requirement::DoesNotExist { key: key(rest)? });
    }
    if let Some(i) = r.find(['=', '!']) {
        let (k, op) = (&r[..i], &r[i..]);
        let (not, v) = if let Some(v) = op.strip_prefix("!=") {
            (true, v)
        } else if let Some(v) = op.strip_prefix("==") {
            (false, v)
        } else if let Some(v) = op.strip_prefix('=') {
            (false, v)
        } else {
            return Err("'!' must be followed by '=' or come before a key".into());
        };
        if v.contains(['=', '!', '(', ')']) {
            return Err(format!("unexpected {:?} in the value", v.trim()));
        }
        let (key, value) = (key(k)?, value(v)?);
        return Ok(if not {
            Requirement::NotEquals { key, value }
        } else {
            Requirement::Equals { key, value }
        });
    }
    let k_end = r
        .find(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .unwrap_or(r.len());
    let (k, rest) = (&r[..k_end], r[k_end..].trim_start());
    if rest.is_empty() {
        return Ok(Requirement::Exists { key: key(k)? });
    }
    let op_end = rest
        .find(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .unwrap_or(rest.len());
    let (op, set) = (&rest[..op_end], rest[op_end..].trim());
    let not = match op {
        "in" => false,
        "notin" => true,
        "" => return Err("expected 'in' or 'notin' before '('".into()),
        other => {
            return Err(format!(
                "unexpected {other:?}: expected =, ==, !=, in or notin"
            ))
        }
    };
    let inner = set
        .strip_prefix('(')
        .ok_or_else(|| format!("expected '(' after '{op}'"))?;
    let Some(close) = inner.find(')') else {
        return Err("missing ')'".into());
    };
    let (inner, after) = (&inner[..close], inner[close + 1..].trim());
    if inner.contains('(') {
        return Err("unexpected '(' inside the set".into());
    }
    if !after.is_empty() {
        return Err(format!("unexpected {after:?} after ')'"));
    }
    // As in Kubernetes, `()` is the set of the empty value.
    let values = inner.split(',').map(value).collect::<Result<_, _>>()?;
    let key = key(k)?;
    Ok(if not {
        Requirement::NotIn { key, values }
    } else {
        Requirement::In { key, values }
    })
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Ok(Selector::default());
        }
        split_requirements(s)
            .into_iter()
            .map(|r| {
                let r = r.trim();
                parse_requirement(r).map_err(|why| SelectorError {
                    requirement: r.to_owned(),
                    why,
                })
            })
            .collect::<Result<_, _>>()
            .map(Selector::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(s: &str) -> Selector {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn err(s: &str) -> SelectorError {
        match s.parse::<Selector>() {
            Ok(x) => panic!("{s:?} should not parse, got {x:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn keys() {
        for ok in [
            "a",
            "team",
            "A-b_c.D9",
            "example.com/team",
            "a.b-c.d/x",
            "app.kubernetes.io/name",
            &"k".repeat(63),
            &format!("{}/n", "p".repeat(253)),
        ] {
            validate_key(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for (bad, why) in [
            ("", "empty"),
            ("-a", "begin and end"),
            ("a-", "begin and end"),
            ("a b", "' '"),
            ("a\"b", "'\"'"),
            ("a'b", "'\\''"),
            ("/a", "empty prefix"),
            ("p/", "empty name"),
            ("a/b/c", "one '/'"),
            ("Example.com/a", "DNS subdomain"),
            ("a..b/c", "DNS subdomain"),
            ("-a.com/c", "DNS subdomain"),
            ("x.com/-c", "name \"-c\""),
            (&"k".repeat(64), "64 characters, at most 63"),
            (&format!("{}/n", "p".repeat(254)), "at most 253"),
        ] {
            let e = validate_key(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.starts_with("label key"), "{e}");
        }
    }

    #[test]
    fn values() {
        for ok in ["", "a", "free", "v1.2_3-x", &"v".repeat(63)] {
            validate_value(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for (bad, why) in [
            ("-a", "begin and end"),
            (".", "begin and end"),
            ("a/b", "'/'"),
            ("a b", "' '"),
            ("é", "'é'"),
            (&"v".repeat(64), "at most 63"),
        ] {
            let e = validate_value(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_set_of_labels_names_the_bad_key_or_value() {
        assert_eq!(
            validate_labels(&labels(&[("team", "a"), ("tier", "")])),
            Ok(())
        );
        let e = validate_labels(&labels(&[("team", "a b")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "label \"team\": value \"a b\": ' ' is not allowed (only letters, digits, '-', '_' and '.')"
        );
        let e = validate_labels(&labels(&[("-x", "a")])).unwrap_err();
        assert!(e.to_string().starts_with("label key \"-x\""), "{e}");
        let many: BTreeMap<_, _> = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(
            validate_labels(&many).unwrap_err().to_string(),
            "65 labels: at most 64"
        );
        let most: BTreeMap<_, _> = (0..64).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(validate_labels(&most), Ok(()));
    }

    #[test]
    fn parses_every_operator() {
        let s = sel("a=1, b==2 ,c!=3,d in (x, y),e notin (z),f,!g, h in(),i=");
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let k = |s: &str| s.to_string();
        assert_eq!(
            s.requirements(),
            &[
                Requirement::Equals {
                    key: k("a"),
                    value: k("1")
                },
                Requirement::Equals {
                    key: k("b"),
                    value: k("2")
                },
                Requirement::NotEquals {
                    key: k("c"),
                    value: k("3")
                },
                Requirement::In {
                    key: k("d"),
                    values: set(&["x", "y"])
                },
                Requirement::NotIn {
                    key: k("e"),
                    values: set(&["z"])
                },
                Requirement::Exists { key: k("f") },
                Requirement::DoesNotExist { key: k("g") },
                Requirement::In {
                    key: k("h"),
                    values: set(&[""])
                },
                Requirement::Equals {
                    key: k("i"),
                    value: k("")
                },
            ]
        );
        assert_eq!(
            s.to_string(),
            "a=1,b=2,c!=3,d in (x,y),e notin (z),f,!g,h in (),i="
        );
        assert_eq!(
            sel("example.com/team = a").requirements()[0].key(),
            "example.com/team"
        );
        // Keys named like the keywords are still keys.
        assert_eq!(sel("in in (notin)").to_string(), "in in (notin)");
    }

    #[test]
    fn the_empty_selector_matches_everything() {
        for s in ["", "  "] {
            let s = sel(s);
            assert!(s.is_empty());
            assert!(s.matches(&BTreeMap::new()));
            assert!(s.matches(&labels(&[("a", "b")])));
        }
    }

    #[test]
    fn matching() {
        let m = labels(&[("team", "a"), ("tier", "free"), ("gpu", "")]);
        let cases = [
            ("team=a", true),
            ("team==a", true),
            ("team=b", false),
            ("team!=b", true),
            ("team!=a", false),
            ("nokey!=a", true),
            ("team in (a,b)", true),
            ("team in (b,c)", false),
            ("nokey in (a)", false),
            ("team notin (b)", true),
            ("team notin (a)", false),
            ("nokey notin (a)", true),
            ("team", true),
            ("nokey", false),
            ("!team", false),
            ("!nokey", true),
            ("gpu", true),
            ("gpu=", true),
            ("gpu in ()", true),
            ("team=a,tier!=free", false),
            ("team=a,tier!=paid", true),
            ("team=a,tier in (free),!nokey,gpu", true),
        ];
        for (s, want) in cases {
            assert_eq!(sel(s).matches(&m), want, "{s}");
        }
    }

    #[test]
    fn errors_name_the_requirement() {
        for (s, req, why) in [
            ("a=b,,c", "", "empty"),
            ("a=b,", "", "empty"),
            ("team=a,tier in (x", "tier in (x", "missing ')'"),
            ("tier in x", "tier in x", "expected '('"),
            ("tier in (x) y", "tier in (x) y", "after ')'"),
            ("tier (x)", "tier (x)", "expected 'in' or 'notin'"),
            ("tier within (x)", "tier within (x)", "\"within\""),
            ("a b", "a b", "\"b\""),
            ("=a", "=a", "no key"),
            ("a=b=c", "a=b=c", "unexpected"),
            ("a!b", "a!b", "'!' must be followed by '='"),
            ("!a=b", "!a=b", "'!' takes a key only"),
            ("!", "!", "no key"),
            ("-a=b", "-a=b", "begin and end"),
            ("a=b c", "a=b c", "' '"),
            ("a in (b c)", "a in (b c)", "' '"),
            ("a\"b=c", "a\"b=c", "'\"'"),
            ("a in ((b))", "a in ((b))", "'('"),
        ] {
            let e = err(s);
            assert_eq!(e.requirement, req, "{s}");
            assert!(e.why.contains(why), "{s}: {e}");
            assert!(
                e.to_string().starts_with(&format!("requirement {req:?}: ")),
                "{e}"
            );
        }
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-z][a-z0-9]{0,3}",
            1 => "[a-z]{1,3}(\\.[a-z]{1,3})?/[A-Za-z][-_.A-Za-z0-9]{0,4}[A-Za-z0-9]",
            1 => Just("in".to_string()),
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => Just(String::new()),
            4 => "[a-c]",
            1 => "[A-Za-z0-9][-_.A-Za-z0-9]{0,5}[A-Za-z0-9]",
        ]
    }

    fn value_set() -> impl Strategy<Value = BTreeSet<String>> {
        proptest::collection::btree_set(value(), 1..4)
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        prop_oneof![
            (key(), value()).prop_map(|(key, value)| Requirement::Equals { key, value }),
            (key(), value()).prop_map(|(key, value)| Requirement::NotEquals { key, value }),
            (key(), value_set()).prop_map(|(key, values)| Requirement::In { key, values }),
            (key(), value_set()).prop_map(|(key, values)| Requirement::NotIn { key, values }),
            key().prop_map(|key| Requirement::Exists { key }),
            key().prop_map(|key| Requirement::DoesNotExist { key }),
        ]
    }

    fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
        proptest::collection::btree_map(key(), value(), 0..5)
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(reqs in proptest::collection::vec(requirement(), 0..5)) {
            let s = Selector::new(reqs);
            let text = s.to_string();
            let back: Selector = text.parse().map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
            prop_assert_eq!(back, s);
        }

        #[test]
        fn equals_matches_iff_the_map_holds_the_pair(m in label_map(), k in key(), v in value()) {
            let eq: Selector = format!("{k}={v}").parse().unwrap();
            let ne: Selector = format!("{k}!={v}").parse().unwrap();
            let holds = m.get(&k) == Some(&v);
            prop_assert_eq!(eq.matches(&m), holds);
            prop_assert_eq!(ne.matches(&m), !holds);
            let mut with = m.clone();
            with.insert(k.clone(), v.clone());
            prop_assert!(eq.matches(&with));
            prop_assert!(!ne.matches(&with));
        }

        #[test]
        fn notin_and_does_not_exist_are_negations(m in label_map(), r in requirement()) {
            let negated = match &r {
                Requirement::In { key, values } => Some(Requirement::NotIn { key: key.clone(), values: values.clone() }),
                Requirement::Exists { key } => Some(Requirement::DoesNotExist { key: key.clone() }),
                Requirement::Equals { key, value } => Some(Requirement::NotEquals { key: key.clone(), value: value.clone() }),
                _ => None,
            };
            if let Some(n) = negated {
                prop_assert_eq!(n.matches(&m), !r.matches(&m));
            }
        }

        #[test]
        fn a_selector_is_the_conjunction_of_its_requirements(m in label_map(), reqs in proptest::collection::vec(requirement(), 0..5)) {
            let all = reqs.iter().all(|r| r.matches(&m));
            prop_assert_eq!(Selector::new(reqs).matches(&m), all);
        }

        #[test]
        fn parsing_never_panics(s in "[-a-z=!(), ./_\"]{0,24}") {
            let _ = s.parse::<Selector>();
        }

        #[test]
        fn valid_labels_are_accepted(m in label_map()) {
            prop_assert_eq!(validate_labels(&m), Ok(()));
        }
    }
}
