//! Tests of reading the sample app configuration from key-value lookups.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use warmpool_sample_app::{Config, ConfigError};

fn from_pairs(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: HashMap<String, String> = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    Config::from_lookup(|key| vars.get(key).cloned())
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let config = from_pairs(&[]).unwrap();
    assert_eq!(
        config,
        Config {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 8080,
            text_file: PathBuf::from("index.txt"),
            files_dir: PathBuf::from("."),
            bind_mode: String::new(),
            container_id: "unknown".to_owned(),
            country: "unknown".to_owned(),
            location: "unknown".to_owned(),
            region: "unknown".to_owned(),
        }
    );
}

#[test]
fn empty_values_count_as_unset() {
    let config = from_pairs(&[
        ("HOST", ""),
        ("PORT", ""),
        ("TEXT_FILE", ""),
        ("WARMPOOL_FILES_DIR", ""),
        ("WARMPOOL_CONTAINER_ID", ""),
        ("WARMPOOL_COUNTRY", ""),
        ("WARMPOOL_LOCATION", ""),
        ("WARMPOOL_REGION", ""),
    ])
    .unwrap();
    assert_eq!(config, from_pairs(&[]).unwrap());
}

#[test]
fn custom_values_are_used() {
    let config = from_pairs(&[
        ("HOST", "127.0.0.1"),
        ("PORT", "9123"),
        ("TEXT_FILE", "/srv/text/greeting.txt"),
        ("WARMPOOL_FILES_DIR", "/warmpool/files"),
        ("WARMPOOL_CONTAINER_ID", "c-7"),
        ("WARMPOOL_COUNTRY", "FR"),
        ("WARMPOOL_LOCATION", "Paris"),
        ("WARMPOOL_REGION", "eu-west"),
    ])
    .unwrap();
    assert_eq!(
        config,
        Config {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 9123,
            text_file: PathBuf::from("/srv/text/greeting.txt"),
            files_dir: PathBuf::from("/warmpool/files"),
            bind_mode: String::new(),
            container_id: "c-7".to_owned(),
            country: "FR".to_owned(),
            location: "Paris".to_owned(),
            region: "eu-west".to_owned(),
        }
    );
}

#[test]
fn ipv6_host_is_accepted() {
    let config = from_pairs(&[("HOST", "::1")]).unwrap();
    assert_eq!(config.host, IpAddr::V6(Ipv6Addr::LOCALHOST));
}

#[test]
fn invalid_port_is_an_error() {
    for port in ["http", "65536", "-1", "80a"] {
        let err = from_pairs(&[("PORT", port)]).unwrap_err();
        assert!(matches!(err, ConfigError::InvalidPort { ref value, .. } if value == port));
        assert_eq!(
            err.to_string(),
            format!("invalid PORT \"{port}\": expected a port number from 0 to 65535")
        );
    }
}

#[test]
fn invalid_host_is_an_error() {
    let err = from_pairs(&[("HOST", "localhost")]).unwrap_err();
    assert!(matches!(err, ConfigError::InvalidHost { ref value, .. } if value == "localhost"));
    assert_eq!(
        err.to_string(),
        "invalid HOST \"localhost\": expected an IP address"
    );
}
