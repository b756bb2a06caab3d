//! Sign-ins under way, as a browser holds them: one cookie per `state` (so sign-ins started
//! in several tabs all finish), at most [`MAX_PER_BROWSER`] of them, and what the store keeps
//! of each sealed with a key derived from the `state` itself. The store holds only the
//! state's SHA-256, so a copy of it cannot read where a citizen was going (the return path
//! and its query) nor the PKCE verifier; the browser coming back with the state can.

use ::http::HeaderMap;
use ring::{aead, hkdf};

use super::LOGIN_COOKIE;
use super::session::hash_id;
use crate::auth::jose;

/// Most sign-ins one browser keeps under way; starting one more drops the oldest cookies.
pub const MAX_PER_BROWSER: usize = 5;
/// What a sealed value is for (associated data and key derivation input: a sealed return
/// path cannot be opened as a verifier).
pub const RETURN_TO: &str = "return_to";
pub const PKCE_VERIFIER: &str = "pkce_verifier";
const SEALED_PREFIX: &str = "p1.";
const SALT: &[u8] = b"guichet-pending-sign-in-v1";

/// The cookie binding `state` to this browser: `__Host-guichet-login-` and 12 hex characters
/// of the state's hash (distinct per sign-in, and not the state itself).
pub fn cookie_name(state: &str) -> String {
    let hash = hash_id(state);
    format!("{LOGIN_COOKIE}-{}", hash.get(..12).unwrap_or(&hash))
}

/// Whether a cookie name is one of ours for sign-ins under way (the single cookie of earlier
/// versions included).
pub fn is_login_cookie(name: &str) -> bool {
    name.strip_prefix(LOGIN_COOKIE).is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// The sign-in cookies the request carries, in the order the browser sent them (oldest first,
/// RFC 6265 §5.4).
fn login_cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    super::cookie_pairs(headers).filter(|(name, _)| is_login_cookie(name))
}

/// The name of the cookie that holds `state`, when this browser started that sign-in
/// (values compared in constant time).
pub fn bound_cookie(headers: &HeaderMap, state: &str) -> Option<String> {
    login_cookies(headers)
        .find(|(_, value)| super::oidc::constant_time_eq(value.as_bytes(), state.as_bytes()))
        .map(|(name, _)| name.to_owned())
}

/// The sign-in cookies to drop so that, with the one being added, the browser keeps at most
/// [`MAX_PER_BROWSER`]: the oldest first.
pub fn cookies_to_drop(headers: &HeaderMap) -> Vec<String> {
    let names: Vec<&str> = login_cookies(headers).map(|(name, _)| name).collect();
    let excess = (names.len() + 1).saturating_sub(MAX_PER_BROWSER);
    names.into_iter().take(excess).map(str::to_owned).collect()
}

#[derive(Debug, thiserror::Error)]
#[error("cannot seal or open a pending sign-in value")]
pub struct SealError;

fn key(state: &str, purpose: &str) -> Result<aead::LessSafeKey, SealError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(state.as_bytes());
    let info = [purpose.as_bytes()];
    let okm = prk.expand(&info, &aead::AES_256_GCM).map_err(|_| SealError)?;
    Ok(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
}

/// Seals `value` under a key derived from `state` and `purpose`. Each key seals one value
/// once (a state is drawn fresh for every sign-in), so a fixed nonce is safe.
pub fn seal(state: &str, purpose: &str, value: &str) -> Result<String, SealError> {
    let mut buf = value.as_bytes().to_vec();
    key(state, purpose)?
        .seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key([0; aead::NONCE_LEN]),
            aead::Aad::from(purpose.as_bytes()),
            &mut buf,
        )
        .map_err(|_| SealError)?;
    Ok(format!("{SEALED_PREFIX}{}", jose::b64e(&buf)))
}

/// Opens what [`seal`] made with the same `state` and `purpose`.
pub fn open(state: &str, purpose: &str, sealed: &str) -> Result<String, SealError> {
    let body = sealed.strip_prefix(SEALED_PREFIX).ok_or(SealError)?;
    let mut buf = jose::b64(body).map_err(|_| SealError)?;
    let plain = key(state, purpose)?
        .open_in_place(
            aead::Nonce::assume_unique_for_key([0; aead::NONCE_LEN]),
            aead::Aad::from(purpose.as_bytes()),
            &mut buf,
        )
        .map_err(|_| SealError)?;
    String::from_utf8(plain.to_vec()).map_err(|_| SealError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::HeaderValue;

    #[test]
    fn sealed_values_open_only_with_their_state_and_purpose() {
        let state = "a".repeat(64);
        let sealed = seal(&state, RETURN_TO, "/prive?canari=XYZ").unwrap();
        assert!(!sealed.contains("canari") && !sealed.contains("prive"));
        assert_eq!(open(&state, RETURN_TO, &sealed).unwrap(), "/prive?canari=XYZ");
        assert!(open(&"b".repeat(64), RETURN_TO, &sealed).is_err());
        assert!(open(&state, PKCE_VERIFIER, &sealed).is_err());
        assert!(open(&state, RETURN_TO, "/prive").is_err(), "a value in clear is not accepted");
    }

    #[test]
    fn each_state_has_its_cookie_and_a_browser_keeps_a_bounded_number() {
        let (s1, s2) = ("1".repeat(64), "2".repeat(64));
        assert_ne!(cookie_name(&s1), cookie_name(&s2));
        assert!(is_login_cookie(&cookie_name(&s1)) && is_login_cookie(LOGIN_COOKIE));
        assert!(!is_login_cookie("__Host-guichet-loginx") && !is_login_cookie("__Host-guichet-session"));
        let mut h = HeaderMap::new();
        let pairs: Vec<String> = (0..6).map(|i| format!("{}={}", cookie_name(&i.to_string()), i)).collect();
        h.insert(::http::header::COOKIE, HeaderValue::from_str(&format!("a=b; {}", pairs.join("; "))).unwrap());
        assert_eq!(bound_cookie(&h, "3"), Some(cookie_name("3")));
        assert_eq!(bound_cookie(&h, "9"), None);
        let dropped = cookies_to_drop(&h);
        assert_eq!(dropped, vec![cookie_name("0"), cookie_name("1")], "the oldest go, four stay beside the new one");
    }
}
