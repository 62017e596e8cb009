//! Runtime configuration: `config.json` next to `index.html`, so whoever hosts Ferry can point
//! it at their own signaling endpoint and STUN/TURN servers without rebuilding.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One ICE server (kept in this device's local state too, so it lives in the core).
pub use ferry_core::device::IceServer;

/// The app's runtime configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Signaling endpoint base URL (`ws://` or `wss://`); the room id is appended.
    #[serde(default)]
    pub signal: Option<String>,
    /// ICE servers. Empty = host candidates only (same LAN).
    #[serde(default = "default_ice")]
    pub ice_servers: Vec<IceServer>,
}

/// A public STUN server: the default when nothing is configured.
pub fn default_ice() -> Vec<IceServer> {
    vec![IceServer {
        urls: vec!["stun:stun.l.google.com:19302".into()],
        username: None,
        credential: None,
    }]
}

/// Why a configuration was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Not JSON of the expected shape.
    #[error("config.json is not valid: {0}")]
    Json(String),
    /// An ICE URL the browser would refuse (scheme, host, transport, credentials).
    #[error(transparent)]
    Ice(#[from] ferry_core::IceUrlError),
    /// The signaling URL is not ws(s).
    #[error("signaling URL {0:?} must start with ws:// or wss://")]
    BadSignal(String),
}

impl Config {
    /// Parses and validates `config.json`.
    pub fn parse(json: &str) -> Result<Self, ConfigError> {
        let c: Config = serde_json::from_str(json).map_err(|e| ConfigError::Json(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks what would otherwise make the browser (and matchbox, which unwraps) fail.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(s) = &self.signal
            && !(s.starts_with("ws://") || s.starts_with("wss://"))
        {
            return Err(ConfigError::BadSignal(s.clone()));
        }
        for server in &self.ice_servers {
            let present = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
            let credentials = present(&server.username) && present(&server.credential);
            for url in &server.urls {
                ferry_core::check_ice_url(url, credentials)?;
            }
        }
        Ok(())
    }

    /// The configuration used when `config.json` cannot be fetched: signaling on the same
    /// host at the default port, public STUN.
    pub fn fallback(hostname: &str, https: bool) -> Self {
        let scheme = if https { "wss" } else { "ws" };
        Config {
            signal: Some(format!("{scheme}://{hostname}:3536")),
            ice_servers: default_ice(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_served_shape() {
        let c = Config::parse(
            r#"{"signal":"ws://10.0.0.2:3536","ice_servers":[{"urls":["turn:t:3478"],"username":"u","credential":"p"}]}"#,
        )
        .unwrap();
        assert_eq!(c.signal.as_deref(), Some("ws://10.0.0.2:3536"));
        assert_eq!(c.ice_servers[0].username.as_deref(), Some("u"));
        assert_eq!(
            Config::parse(r#"{"signal":"ws://x"}"#).unwrap().ice_servers,
            default_ice()
        );
        assert!(
            Config::parse(r#"{"ice_servers":[]}"#)
                .unwrap()
                .ice_servers
                .is_empty()
        );
    }

    #[test]
    fn refuses_what_would_crash_the_connection() {
        assert_eq!(
            Config::parse(r#"{"ice_servers":[{"urls":["turn:t:3478"]}]}"#),
            Err(ConfigError::Ice(ferry_core::IceUrlError::NoCredentials(
                "turn:t:3478".into()
            )))
        );
        assert!(matches!(
            Config::parse(
                r#"{"ice_servers":[{"urls":["turns:t:443?transport=udp"],"username":"u","credential":"p"}]}"#
            ),
            Err(ConfigError::Ice(ferry_core::IceUrlError::Transport(_)))
        ));
        assert!(
            Config::parse(
                r#"{"ice_servers":[{"urls":["turn:t:3478?transport=tcp","turns:t:443"],"username":"u","credential":"p"}]}"#
            )
            .is_ok()
        );
        assert!(matches!(
            Config::parse(r#"{"signal":"http://x"}"#),
            Err(ConfigError::BadSignal(_))
        ));
        assert!(matches!(Config::parse("nope"), Err(ConfigError::Json(_))));
    }
}
