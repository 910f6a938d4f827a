//! Sample app configuration, read from environment-style key-value lookups.

use std::fmt;
use std::net::{AddrParseError, IpAddr, Ipv4Addr};
use std::num::ParseIntError;
use std::path::PathBuf;

/// Port listened on when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 8080;
/// Text file served when `TEXT_FILE` is not set, relative to the working directory.
pub const DEFAULT_TEXT_FILE: &str = "index.txt";
/// Where a bind's files go when `WARMPOOL_FILES_DIR` is not set: the working
/// directory.
pub const DEFAULT_FILES_DIR: &str = ".";
/// Value of the container metadata headers whose variable is not set.
pub const UNKNOWN: &str = "unknown";

/// Everything the sample app needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address listened on (`HOST`, default all interfaces).
    pub host: IpAddr,
    /// Port listened on (`PORT`, default 8080).
    pub port: u16,
    /// File whose contents `GET` serves (`TEXT_FILE`, default `index.txt`).
    pub text_file: PathBuf,
    /// Where `POST /admin/bind` writes its files (`WARMPOOL_FILES_DIR`, default
    /// the working directory).
    pub files_dir: PathBuf,
    /// How `POST /admin/bind` answers (`SAMPLE_APP_BIND`): `absent` 404, as an
    /// app without the hook; `fail` 500, as a hook that cannot set up; anything
    /// else (the default) takes the set-up. For testing warmpool's handling of
    /// apps without a hook, or with a failing one.
    pub bind_mode: String,
    /// `X-Container-ID` header value (`WARMPOOL_CONTAINER_ID`).
    pub container_id: String,
    /// `X-Container-Country` header value (`WARMPOOL_COUNTRY`).
    pub country: String,
    /// `X-Container-Location` header value (`WARMPOOL_LOCATION`).
    pub location: String,
    /// `X-Container-Region` header value (`WARMPOOL_REGION`).
    pub region: String,
}

impl Config {
    /// Builds the configuration from `lookup`, which answers the value of a
    /// variable such as `PORT`; unset and empty variables take their default.
    ///
    /// # Errors
    ///
    /// Fails when `HOST` is not an IP address or `PORT` not a port number.
    pub fn from_lookup(
        mut lookup: impl FnMut(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut get = |key: &str| lookup(key).filter(|value| !value.is_empty());
        let host = match get("HOST") {
            Some(value) => value
                .parse()
                .map_err(|source| ConfigError::InvalidHost { value, source })?,
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let port = match get("PORT") {
            Some(value) => value
                .parse()
                .map_err(|source| ConfigError::InvalidPort { value, source })?,
            None => DEFAULT_PORT,
        };
        let text_file = get("TEXT_FILE").map_or_else(|| DEFAULT_TEXT_FILE.into(), PathBuf::from);
        let files_dir =
            get("WARMPOOL_FILES_DIR").map_or_else(|| DEFAULT_FILES_DIR.into(), PathBuf::from);
        let bind_mode = get("SAMPLE_APP_BIND").unwrap_or_default();
        let mut metadata = |key: &str| get(key).unwrap_or_else(|| UNKNOWN.to_owned());
        Ok(Self {
            host,
            port,
            text_file,
            files_dir,
            bind_mode,
            container_id: metadata("WARMPOOL_CONTAINER_ID"),
            country: metadata("WARMPOOL_COUNTRY"),
            location: metadata("WARMPOOL_LOCATION"),
            region: metadata("WARMPOOL_REGION"),
        })
    }

    /// Builds the configuration from the process environment; variables that
    /// are not valid Unicode count as unset.
    ///
    /// # Errors
    ///
    /// Fails like [`Config::from_lookup`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }
}

/// A configuration variable that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `HOST` is not an IP address.
    InvalidHost {
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        source: AddrParseError,
    },
    /// `PORT` is not a number from 0 to 65535.
    InvalidPort {
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        source: ParseIntError,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidHost { value, .. } => {
                write!(f, "invalid HOST {value:?}: expected an IP address")
            }
            Self::InvalidPort { value, .. } => {
                write!(
                    f,
                    "invalid PORT {value:?}: expected a port number from 0 to 65535"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidHost { source, .. } => Some(source),
            Self::InvalidPort { source, .. } => Some(source),
        }
    }
}
