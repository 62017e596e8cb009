//! STUN/TURN server URLs: what each one is, checked the same way wherever a person can give
//! one (Advanced → Connection, `config.json`, `ferry-signal --ice`, a pairing link).
//!
//! A network that blocks UDP lets only TURN over TCP (`turn:host:3478?transport=tcp`) or over
//! TLS (`turns:host:443`, TLS always runs over TCP) through; the kind tells diagnostics which
//! of those a device has.

use thiserror::Error;

/// How a device reaches an ICE server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceKind {
    /// A STUN server (UDP): learns the public address.
    Stun,
    /// A TURN relay over UDP.
    TurnUdp,
    /// A TURN relay over TCP (`?transport=tcp`).
    TurnTcp,
    /// A TURN relay over TLS (`turns:`).
    TurnTls,
}

impl IceKind {
    /// A relay (TURN).
    pub fn is_turn(self) -> bool {
        self != IceKind::Stun
    }

    /// Reached over UDP (what a network that blocks UDP silences).
    pub fn is_udp(self) -> bool {
        matches!(self, IceKind::Stun | IceKind::TurnUdp)
    }
}

/// Why an ICE server URL cannot be used.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum IceUrlError {
    /// Not a STUN or TURN URL.
    #[error("ICE server URL {0:?} must start with stun:, turn: or turns:")]
    Scheme(String),
    /// No host after the scheme.
    #[error("ICE server URL {0:?} names no host")]
    NoHost(String),
    /// A query the browser would refuse.
    #[error(
        "ICE server URL {0:?}: only turn: and turns: take a query, and only ?transport=udp or \
         ?transport=tcp (turns: is TLS, always over TCP)"
    )]
    Transport(String),
    /// A TURN server without credentials (the browser would throw).
    #[error("TURN server {0:?} needs a username and a credential")]
    NoCredentials(String),
}

/// Checks one URL (`credentials`: a username and a credential come with it) and says what
/// kind of server it names.
pub fn check_ice_url(url: &str, credentials: bool) -> Result<IceKind, IceUrlError> {
    let bad = |e: fn(String) -> IceUrlError| Err(e(url.to_owned()));
    let (scheme, rest) = match url.split_once(':') {
        Some((s @ ("stun" | "turn" | "turns"), rest)) => (s, rest),
        _ => return bad(IceUrlError::Scheme),
    };
    let (host, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    if host.is_empty() || host.starts_with(':') || host.contains(char::is_whitespace) {
        return bad(IceUrlError::NoHost);
    }
    let kind = match (scheme, query) {
        ("stun", None) => IceKind::Stun,
        ("stun", Some(_)) => return bad(IceUrlError::Transport),
        ("turn", None | Some("transport=udp")) => IceKind::TurnUdp,
        ("turn", Some("transport=tcp")) => IceKind::TurnTcp,
        ("turns", None | Some("transport=tcp")) => IceKind::TurnTls,
        _ => return bad(IceUrlError::Transport),
    };
    if kind.is_turn() && !credentials {
        return bad(IceUrlError::NoCredentials);
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_server_is_named() {
        let ok = |u: &str| check_ice_url(u, true);
        assert_eq!(ok("stun:stun.example:3478"), Ok(IceKind::Stun));
        assert_eq!(ok("turn:turn.example:3478"), Ok(IceKind::TurnUdp));
        assert_eq!(
            ok("turn:turn.example:3478?transport=udp"),
            Ok(IceKind::TurnUdp)
        );
        assert_eq!(
            ok("turn:turn.example:3478?transport=tcp"),
            Ok(IceKind::TurnTcp)
        );
        assert_eq!(ok("turns:turn.example:443"), Ok(IceKind::TurnTls));
        assert_eq!(
            ok("turns:turn.example:443?transport=tcp"),
            Ok(IceKind::TurnTls)
        );
        assert_eq!(
            ok("turn:[2001:db8::1]:3478?transport=tcp"),
            Ok(IceKind::TurnTcp)
        );
        assert!(IceKind::TurnUdp.is_udp() && IceKind::Stun.is_udp());
        assert!(!IceKind::TurnTcp.is_udp() && !IceKind::TurnTls.is_udp());
        assert!(!IceKind::Stun.is_turn() && IceKind::TurnTls.is_turn());
    }

    #[test]
    fn what_a_browser_would_refuse_is_refused_with_the_reason() {
        let err = |u: &str, c| check_ice_url(u, c).unwrap_err();
        assert_eq!(
            err("http://x", true),
            IceUrlError::Scheme("http://x".into())
        );
        assert_eq!(err("turnx:x", true), IceUrlError::Scheme("turnx:x".into()));
        assert_eq!(err("stun:", true), IceUrlError::NoHost("stun:".into()));
        assert_eq!(
            err("turn::3478", true),
            IceUrlError::NoHost("turn::3478".into())
        );
        assert!(matches!(
            err("stun:x?transport=tcp", true),
            IceUrlError::Transport(_)
        ));
        assert!(matches!(
            err("turns:x:443?transport=udp", true),
            IceUrlError::Transport(_)
        ));
        assert!(matches!(
            err("turn:x?transport=sctp", true),
            IceUrlError::Transport(_)
        ));
        assert!(matches!(
            err("turn:x?foo=bar", true),
            IceUrlError::Transport(_)
        ));
        assert_eq!(
            err("turn:x:3478", false),
            IceUrlError::NoCredentials("turn:x:3478".into())
        );
        assert!(
            err("turns:x:443", false)
                .to_string()
                .contains("needs a username")
        );
    }
}
