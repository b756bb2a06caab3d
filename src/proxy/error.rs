//! Errors of the forwarding phases, tagged with the side at fault so each maps to the right
//! status (client → 4xx, upstream → 502/504, internal → 500) and metric.

use crate::error::GatewayError;

/// Which side of the exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    #[error("request head of {size} bytes exceeds {limit}")]
    HeadersTooLarge { size: usize, limit: usize },
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("client body idle for longer than the timeout")]
    ClientIdle,
    #[error("no route matches")]
    NoRoute,
    #[error("no processing activity covers the request and its route is not declared without personal data")]
    NoProcessingActivity,
    #[error("an activity claims the path but not the method")]
    MethodNotAllowed(String),
    #[error("cannot connect to upstream: {0}")]
    Connect(String),
    #[error("connecting to upstream timed out")]
    ConnectTimeout,
    #[error("upstream response head timed out")]
    ResponseTimeout,
    #[error("upstream exchange failed: {0}")]
    Exchange(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// Sign-in required, refused, or the session store failed (identify/authorize phases).
    #[error("access: {1}")]
    Access(GatewayError, &'static str),
    /// A declared personal field could not be protected (protect phase): nothing forwarded.
    #[error("field protection: {1}")]
    Fields(GatewayError, &'static str),
}

impl ProxyError {
    pub fn side(&self) -> Side {
        match self {
            Self::BadRequest(_)
            | Self::HeadersTooLarge { .. }
            | Self::BodyTooLarge { .. }
            | Self::ClientIdle
            | Self::NoRoute
            | Self::NoProcessingActivity
            | Self::MethodNotAllowed(_) => Side::Client,
            Self::Connect(_) | Self::ConnectTimeout | Self::ResponseTimeout | Self::Exchange(_) => Side::Upstream,
            Self::Internal(_)
            | Self::Access(GatewayError::StoreUnavailable, _)
            | Self::Fields(GatewayError::StoreUnavailable | GatewayError::ProtectionUnavailable, _) => Side::Internal,
            Self::Access(..) | Self::Fields(..) => Side::Client,
        }
    }

    /// Label for the `upstream_errors` metric (upstream-side errors only).
    pub fn upstream_kind(&self) -> Option<&'static str> {
        match self {
            Self::Connect(_) => Some("connect"),
            Self::ConnectTimeout => Some("connect_timeout"),
            Self::ResponseTimeout => Some("response_timeout"),
            Self::Exchange(_) => Some("exchange"),
            _ => None,
        }
    }

    pub fn to_gateway(&self) -> GatewayError {
        match self {
            Self::BadRequest(why) => GatewayError::BadRequest(why),
            Self::HeadersTooLarge { .. } => GatewayError::HeadersTooLarge,
            Self::BodyTooLarge { limit } => GatewayError::PayloadTooLarge { limit: *limit },
            Self::ClientIdle => GatewayError::RequestTimeout,
            Self::NoRoute => GatewayError::NoRoute,
            Self::NoProcessingActivity => GatewayError::NoProcessingActivity,
            Self::MethodNotAllowed(allow) => GatewayError::MethodNotAllowed { allow: allow.clone() },
            Self::Connect(_) | Self::Exchange(_) => GatewayError::BadGateway,
            Self::ConnectTimeout | Self::ResponseTimeout => GatewayError::GatewayTimeout,
            Self::Internal(_) => GatewayError::Internal,
            Self::Access(e, _) | Self::Fields(e, _) => e.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_map_to_statuses() {
        assert_eq!(ProxyError::Connect("refused".into()).to_gateway().status(), 502);
        assert_eq!(ProxyError::ConnectTimeout.to_gateway().status(), 504);
        assert_eq!(ProxyError::ResponseTimeout.to_gateway().status(), 504);
        assert_eq!(ProxyError::BodyTooLarge { limit: 1 }.to_gateway().status(), 413);
        assert_eq!(ProxyError::HeadersTooLarge { size: 2, limit: 1 }.side(), Side::Client);
        assert_eq!(ProxyError::Internal("x".into()).side(), Side::Internal);
        assert_eq!(ProxyError::NoProcessingActivity.side(), Side::Client);
        assert_eq!(ProxyError::NoProcessingActivity.to_gateway(), GatewayError::NoProcessingActivity);
        let keys = ProxyError::Fields(GatewayError::ProtectionUnavailable, "no keyring");
        assert_eq!((keys.side(), keys.to_gateway().status().as_u16()), (Side::Internal, 503));
        let shape = ProxyError::Fields(GatewayError::FieldNotProtectable("x"), "shape");
        assert_eq!((shape.side(), shape.to_gateway().status().as_u16()), (Side::Client, 422));
    }
}
