//! Names as the applications behind the gateway read them (facts in docs/proxy.md, "How the
//! gateway reads names and paths"):
//!
//! - **header names** by their CGI key: uppercase, with `-`, `_` and `.` all read as `_`
//!   (RFC 3875 maps `-`; PHP's built-in server and other CGI bridges then register the name
//!   through PHP's variable-name mangling, which maps `.` too), so `X_Guichet_Subject`,
//!   `x.guichet.subject` and `X-Guichet-Subject` are all `HTTP_X_GUICHET_SUBJECT`;
//! - **parameter names** (query and URL-encoded forms) by the keys the stacks fill: PHP's
//!   variable name and indexes ([`ParamName`]), and the bracket-and-dot path that Rack,
//!   `qs`/Express, Spring and ASP.NET read, with ASP.NET's optional model prefix; letter case
//!   folded (ASP.NET and Spring ignore it);
//! - **JSON member names** by their folded form ([`fold`]): ASP.NET's and Go's decoders match
//!   members whatever their case (Go with Unicode folding: `ſ` is `s`).
//!
//! The gateway compares reserved and declared names with what a request sends in these forms,
//! and refuses a name that reaches a declared or reserved one without being its exact
//! declared spelling.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization as _;

/// Header names the gateway asserts: every one a client sends, in any spelling whose CGI key
/// starts with `X_GUICHET_`, is removed before forwarding.
pub const RESERVED_HEADER_PREFIX: &str = "x-guichet-";

/// One byte of a header name's CGI key.
const fn cgi_byte(b: u8) -> u8 {
    match b {
        b'-' | b'.' => b'_',
        _ => b.to_ascii_uppercase(),
    }
}

/// The CGI key of a header name, without the `HTTP_` prefix: `x.guichet-Subject` is
/// `X_GUICHET_SUBJECT`. Header names are ASCII; other characters are kept as they are.
pub fn cgi_key(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii() { char::from(cgi_byte(c as u8)) } else { c }).collect()
}

/// True when two header names have the same CGI key (no allocation: this runs on every
/// header of every request).
pub fn same_cgi_key(a: &str, b: &str) -> bool {
    same_cgi_bytes(a.as_bytes(), b.as_bytes())
}

fn same_cgi_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| cgi_byte(x) == cgi_byte(y))
}

/// True when an application would read this header name as one of the reserved
/// `X-Guichet-*` names.
pub fn is_reserved_header(name: &str) -> bool {
    name.as_bytes()
        .get(..RESERVED_HEADER_PREFIX.len())
        .is_some_and(|head| same_cgi_bytes(head, RESERVED_HEADER_PREFIX.as_bytes()))
}

/// The folded form of a name, for comparisons that ignore letter case the way the most
/// lenient stacks do: NFKC (compatibility forms such as fullwidth letters), then each
/// character's uppercase mapped to lowercase, so that `ſ` (long s) and `K` (Kelvin sign)
/// fold with `s` and `k` as in Go's and .NET's case-insensitive matching. Plain ASCII is only
/// lowercased (and not copied when already lowercase).
pub fn fold(name: &str) -> Cow<'_, str> {
    if name.is_ascii() {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(name.to_ascii_lowercase());
        }
        return Cow::Borrowed(name);
    }
    let once: String = name.nfkc().flat_map(char::to_uppercase).flat_map(char::to_lowercase).collect();
    // A fold may produce a character that folds on again (compatibility forms of letters
    // whose case mappings are not NFKC-stable): folded to a fixed point, so that the form
    // is idempotent (`proptest` checks it).
    let twice: String = once.nfkc().flat_map(char::to_uppercase).flat_map(char::to_lowercase).collect();
    Cow::Owned(twice)
}

/// True when `sent` is `declared` spelled otherwise (another case, a compatibility form): a
/// JSON decoder that ignores case would fill the declared member with it.
pub fn same_member_otherwise_spelled(sent: &str, declared: &str) -> bool {
    sent != declared && fold(sent) == fold(declared)
}

/// True when a parameter or member name holds a control character (NUL included): PHP cuts
/// names at NUL, other stacks keep them; no form a browser sends has one.
pub fn has_control(name: &str) -> bool {
    name.chars().any(char::is_control)
}

/// What the modelled stacks bind for one parameter name (already percent-decoded, `+` read
/// as a space), in folded form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamName {
    /// PHP's variable and indexes (`php_register_variable_ex`); `None` when PHP binds
    /// nothing (an empty variable name).
    php: Option<Vec<String>>,
    /// The keys Rack, `qs`/Express, Spring and ASP.NET fill: the name split on `[`, `]` and
    /// `.`, empty keys (`a[]`) dropped.
    path: Vec<String>,
    /// The same with the first key's leading `_` and `!` (Spring's field markers) removed;
    /// equal to `path` when there are none. Both readings are compared.
    unmarked: Vec<String>,
}

impl ParamName {
    /// Folded first ([`fold`]), then split: a folded name splits the same way again, so the
    /// form is idempotent.
    pub fn of(name: &str) -> Self {
        let folded = fold(name);
        let path = path_keys(&folded);
        let unmarked = unmarked(&path);
        Self { php: php_keys(&folded), path, unmarked }
    }

    /// PHP's variable and indexes, as PHP would bind the name (`None`: PHP drops it).
    pub fn php(&self) -> Option<&[String]> {
        self.php.as_deref()
    }

    /// The bracket-and-dot path.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// True when a stack that reads the name `self` fills the variable `declared` names, or
    /// a part of it: PHP's variable and indexes start with the declared ones; or the path
    /// does, possibly under one more leading key or with the declared one's first key
    /// missing (ASP.NET binds `Nom` from `prefix.Nom` and from `Nom`).
    pub fn binds_into(&self, declared: &ParamName) -> bool {
        let php = matches!((&self.php, &declared.php), (Some(s), Some(d)) if !d.is_empty() && s.starts_with(d));
        php || [&self.path, &self.unmarked]
            .into_iter()
            .any(|s| [&declared.path, &declared.unmarked].into_iter().any(|d| path_binds(s, d)))
    }

    /// [`binds_into`](Self::binds_into) for a name as sent ([`Sent`] reads it once for
    /// several declared names).
    pub fn bound_by(&self, sent: &str) -> bool {
        Sent::of(sent).binds_into(self)
    }
}

/// A name as sent, read once to be compared with every declared name: the usual names
/// (lowercase ASCII letters, digits, `-` and `_` after the first character) are their own
/// keys for every stack and are compared without allocating.
#[derive(Debug, Clone)]
pub enum Sent<'a> {
    Plain(&'a str),
    Read(ParamName),
}

impl<'a> Sent<'a> {
    pub fn of(name: &'a str) -> Self {
        if is_plain(name) { Sent::Plain(name) } else { Sent::Read(ParamName::of(name)) }
    }

    /// [`ParamName::binds_into`].
    pub fn binds_into(&self, declared: &ParamName) -> bool {
        let sent = match self {
            Sent::Read(p) => return p.binds_into(declared),
            Sent::Plain(sent) => *sent,
        };
        let one = |keys: &[String]| keys.len() == 1 && keys.first().is_some_and(|k| k == sent);
        let second = |keys: &[String]| keys.len() == 2 && keys.get(1).is_some_and(|k| k == sent);
        declared.php.as_deref().is_some_and(one)
            || [&declared.path, &declared.unmarked].into_iter().any(|d| one(d) || second(d))
    }
}

/// The path rule of [`ParamName::binds_into`]: `s` starts with `d`, possibly under one more
/// leading key, or with `d`'s first key missing (ASP.NET).
fn path_binds(s: &[String], d: &[String]) -> bool {
    !d.is_empty()
        && (s.starts_with(d)
            || s.get(1..).is_some_and(|tail| tail.starts_with(d))
            || d.get(1..).is_some_and(|tail| !tail.is_empty() && s.starts_with(tail)))
}

/// The keys with the first one's Spring markers (`_`, `!`, as many as there are) removed.
fn unmarked(keys: &[String]) -> Vec<String> {
    let mut keys = keys.to_vec();
    if let Some(first) = keys.first_mut() {
        let rest = first.trim_start_matches(['_', '!']);
        if !rest.is_empty() && rest.len() != first.len() {
            *first = rest.to_owned();
        }
    }
    keys
}

/// A name every modelled stack reads as itself.
fn is_plain(name: &str) -> bool {
    let b = name.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

/// PHP's reading (PHP 8, `main/php_variables.c`): cut at NUL, leading spaces dropped, ` `
/// and `.` → `_` before the first `[`; `a[b][c]` nests and text after a `]` not followed by
/// `[` is dropped; a first `[` without `]` becomes `_` (and ` `, `.`, `[` after it too), a
/// later one ends the indexes.
fn php_keys(name: &str) -> Option<Vec<String>> {
    let name = name.split('\0').next().unwrap_or_default().trim_start_matches(' ');
    let mangle = |s: &str, bracket: bool| -> String {
        s.chars().map(|c| if c == ' ' || c == '.' || (bracket && c == '[') { '_' } else { c }).collect()
    };
    let (var, mut rest) = match name.split_once('[') {
        Some((var, rest)) => (var, Some(rest)),
        None => (name, None),
    };
    if var.is_empty() {
        return None;
    }
    let mut keys = vec![mangle(var, false)];
    let mut level = 0;
    while let Some(inner) = rest {
        match inner.split_once(']') {
            None if level == 0 => {
                return Some(vec![format!("{}_{}", mangle(var, false), mangle(inner, true))]);
            }
            None => break,
            Some((index, after)) => {
                keys.push(index.to_owned());
                rest = after.strip_prefix('[');
            }
        }
        level += 1;
    }
    Some(keys)
}

fn path_keys(name: &str) -> Vec<String> {
    name.split(['[', ']', '.']).filter(|k| !k.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_compare_by_their_cgi_key() {
        assert_eq!(cgi_key("x.Guichet-subject_A"), "X_GUICHET_SUBJECT_A");
        for sent in ["X_Guichet_Subject", "x-guichet_assertion", "X.GUICHET.PURPOSE", "x-guichet-claim-email"] {
            assert!(is_reserved_header(&sent.to_ascii_lowercase()), "{sent}");
        }
        for sent in ["x-guichetx", "x-guichet", "x_guichetsubject", "guichet-x", "é"] {
            assert!(!is_reserved_header(sent), "{sent}");
        }
        assert!(same_cgi_key("x_numero_allocataire", "x-numero-allocataire"));
        assert!(!same_cgi_key("x-numero-allocataire", "x-numero-allocataires"));
    }

    fn php(name: &str) -> Option<Vec<String>> {
        ParamName::of(name).php
    }

    fn keys(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn php_reads_names_as_php_variables_do() {
        // The brief's example: `?+e.mail[a]z=1&e_mail[a]=2` binds e_mail[a] twice.
        assert_eq!(php(" e.mail[a]z"), keys(&["e_mail", "a"]));
        assert_eq!(php("e_mail[a]"), keys(&["e_mail", "a"]));
        assert_eq!(php("date naissance"), keys(&["date_naissance"]));
        assert_eq!(php("a[b"), keys(&["a_b"]));
        assert_eq!(php("a.b[c.d"), keys(&["a_b_c_d"]));
        assert_eq!(php("a[b][c"), keys(&["a", "b"]));
        assert_eq!(php("a[]"), keys(&["a", ""]));
        assert_eq!(php("a[b][c]"), keys(&["a", "b", "c"]));
        assert_eq!(php("nom\0x"), keys(&["nom"]));
        assert_eq!(php("NOM"), keys(&["nom"]), "folded: other stacks ignore case");
        assert_eq!(php("[a]"), None);
        assert_eq!(php("  "), None);
    }

    #[test]
    fn paths_read_brackets_dots_and_markers() {
        let path = |n: &str| ParamName::of(n).path;
        assert_eq!(path("a.b[c][]"), ["a", "b", "c"]);
        assert_eq!(ParamName::of("_nom").unmarked, ["nom"]);
        assert_eq!(ParamName::of("!nom").unmarked, ["nom"]);
        assert_eq!(path("[0].Nom"), ["0", "nom"]);
        assert_eq!(path("[]a"), ["a"]);
    }

    #[test]
    fn spellings_that_stacks_bind_to_a_declared_name_are_recognised() {
        let nom = ParamName::of("nom");
        for sent in [
            "NOM", "Nom", "nom[]", "nom[0]", "NOM[x]", " nom", "nom\0x", "_nom", "!nom", "x.nom", "x[nom]", "[0].nom",
            "nom.x", "nom[",
        ] {
            assert!(nom.bound_by(sent), "{sent:?}");
        }
        for sent in ["prenom", "nomination", "n", "nom_usage", "x[y][nom]", "nomx[", "no.m"] {
            assert!(!nom.bound_by(sent), "{sent:?}");
        }
        let date = ParamName::of("date_naissance");
        for sent in ["date.naissance", "date naissance", "date[naissance", " date.naissance[x]", "DATE_NAISSANCE"] {
            assert!(date.bound_by(sent), "{sent:?}");
        }
        let courriel = ParamName::of("inscription[courriel]");
        for sent in ["inscription.courriel", "courriel", "Inscription[Courriel][]", "x[inscription][courriel]"] {
            assert!(courriel.bound_by(sent), "{sent:?}");
        }
        for sent in ["inscription", "inscription[nom]", "inscription_courriel"] {
            assert!(!courriel.bound_by(sent), "{sent:?}");
        }
        assert!(ParamName::of("prénom").bound_by("PRÉNOM"), "non-ASCII letters too");
    }

    #[test]
    fn members_fold_letter_case_and_compatibility_forms() {
        assert!(same_member_otherwise_spelled("NOM", "nom"));
        assert!(same_member_otherwise_spelled("PRÉNOM", "prénom"));
        assert!(same_member_otherwise_spelled("ſsn", "ssn"), "Go folds the long s");
        assert!(same_member_otherwise_spelled("\u{212a}ey", "key"), "and the Kelvin sign");
        assert!(same_member_otherwise_spelled("ｎｏｍ", "nom"), "fullwidth letters");
        assert!(!same_member_otherwise_spelled("nom", "nom"));
        assert!(!same_member_otherwise_spelled("nomme", "nom"));
    }
}

/// Properties of the canonical forms against small, independent models of how each stack
/// binds a name (written from the sources cited in docs/proxy.md, not from the code above).
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// PHP 8 `php_register_variable_ex`, step by step as the C code walks the bytes.
    fn php_model(name: &str) -> Option<Vec<String>> {
        let name = match name.find('\0') {
            Some(i) => &name[..i],
            None => name,
        };
        let chars: Vec<char> = name.chars().skip_while(|&c| c == ' ').collect();
        let mut var = String::new();
        let mut i = 0;
        while i < chars.len() && chars[i] != '[' {
            var.push(if chars[i] == ' ' || chars[i] == '.' { '_' } else { chars[i] });
            i += 1;
        }
        if var.is_empty() {
            return None;
        }
        let mut keys = vec![var.clone()];
        let mut first = true;
        while i < chars.len() && chars[i] == '[' {
            let start = i + 1;
            let Some(close) = chars[start..].iter().position(|&c| c == ']').map(|p| p + start) else {
                if first {
                    let tail: String =
                        chars[start..].iter().map(|&c| if matches!(c, ' ' | '.' | '[') { '_' } else { c }).collect();
                    return Some(vec![format!("{var}_{tail}")]);
                }
                break;
            };
            keys.push(chars[start..close].iter().collect());
            i = close + 1;
            first = false;
        }
        Some(keys)
    }

    /// Rack's `QueryParser` (brackets only, leading brackets skipped, case kept), `qs` alike.
    fn rack_model(name: &str) -> Vec<String> {
        name.split(['[', ']']).filter(|k| !k.is_empty()).map(str::to_owned).collect()
    }

    /// Spring's `WebDataBinder`: a leading `_` or `!` marker, `.` and `[..]` paths, property
    /// names whose first letter's case does not matter.
    fn spring_model(name: &str) -> Vec<String> {
        let name = name.strip_prefix(['_', '!']).unwrap_or(name);
        let mut keys: Vec<String> = name.split(['.', '[', ']']).filter(|k| !k.is_empty()).map(str::to_owned).collect();
        if let Some(first) = keys.first_mut() {
            let mut c = first.chars();
            if let Some(f) = c.next() {
                *first = f.to_lowercase().chain(c).collect();
            }
        }
        keys
    }

    /// ASP.NET Core: `.` and `[..]` paths compared `OrdinalIgnoreCase` (simple uppercase).
    fn aspnet_model(name: &str) -> Vec<String> {
        name.split(['.', '[', ']'])
            .filter(|k| !k.is_empty())
            .map(|k| k.chars().flat_map(char::to_uppercase).collect())
            .collect()
    }

    /// True when a stack reading `sent` fills the variable `declared` names (or inside it).
    fn some_stack_binds(sent: &str, declared: &str) -> bool {
        let prefix = |s: &[String], d: &[String]| !d.is_empty() && s.starts_with(d);
        let php = matches!((php_model(sent), php_model(declared)), (Some(s), Some(d)) if prefix(&s, &d));
        let (s, d) = (aspnet_model(sent), aspnet_model(declared));
        // ASP.NET binds `Prop` from `param.Prop` and from `Prop`.
        let aspnet =
            prefix(&s, &d) || s.get(1..).is_some_and(|t| prefix(t, &d)) || d.get(1..).is_some_and(|t| prefix(&s, t));
        php || prefix(&rack_model(sent), &rack_model(declared))
            || prefix(&spring_model(sent), &spring_model(declared))
            || aspnet
    }

    /// Names from an alphabet of the characters that matter, so that collisions are common.
    fn name() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop::sample::select(vec!['a', 'b', 'A', 'B', '[', ']', '.', ' ', '_', '!', '\0', 'é', 'É', 'ſ', 's', '-']),
            0..7,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    /// A declared name: starts with a letter, as policies write them.
    fn declared() -> impl Strategy<Value = String> {
        (prop::sample::select(vec!["a", "b", "s", "é"]), name()).prop_map(|(a, b)| format!("{a}{b}"))
    }

    /// How the gateway treats a name sent where `declared` is declared.
    fn refused_or_protected(sent: &str, declared: &str) -> bool {
        sent == declared || has_control(sent) || ParamName::of(declared).bound_by(sent)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn every_spelling_a_stack_binds_to_a_declared_parameter_is_refused_or_protected(
            sent in name(), declared in declared()
        ) {
            if some_stack_binds(&sent, &declared) {
                prop_assert!(refused_or_protected(&sent, &declared), "{sent:?} reaches {declared:?}");
            }
        }

        #[test]
        fn variations_of_a_declared_parameter_are_refused_or_protected(
            declared in declared(), lead in " {0,2}", tail in prop::sample::select(vec!["", "[]", "[0]", "[x]", "[", ".x", "\0z"]),
            upper in any::<bool>(), dots in any::<bool>(), marker in prop::sample::select(vec!["", "_", "!", "p.", "p["])
        ) {
            let mut sent = declared.clone();
            if upper { sent = sent.to_uppercase(); }
            if dots { sent = sent.replace('_', "."); }
            let sent = format!("{lead}{marker}{sent}{tail}");
            if some_stack_binds(&sent, &declared) {
                prop_assert!(refused_or_protected(&sent, &declared), "{sent:?} reaches {declared:?}");
            }
        }

        #[test]
        fn the_allocation_free_reading_of_plain_names_agrees_with_the_full_one(
            sent in "[a-z0-9][a-z0-9_-]{0,5}", declared in declared()
        ) {
            let d = ParamName::of(&declared);
            prop_assert!(matches!(Sent::of(&sent), Sent::Plain(_)));
            prop_assert_eq!(Sent::of(&sent).binds_into(&d), ParamName::of(&sent).binds_into(&d));
        }

        #[test]
        fn the_canonical_forms_are_idempotent(s in name()) {
            let folded = fold(&s).into_owned();
            prop_assert_eq!(fold(&folded), folded.as_str());
            let key = cgi_key(&s);
            prop_assert_eq!(cgi_key(&key), key.clone());
            let p = ParamName::of(&s);
            let path = p.path().join(".");
            let reread = ParamName::of(&path);
            prop_assert_eq!(reread.path(), p.path(), "{:?}", path);
            if let Some(php) = p.php() {
                let (var, indexes) = php.split_first().unwrap();
                let written: String = indexes.iter().map(|i| format!("[{i}]")).collect();
                let again = ParamName::of(&format!("{var}{written}"));
                let again = again.clone();
                prop_assert_eq!(again.php(), Some(php));
            }
        }

        #[test]
        fn every_header_an_application_reads_as_reserved_is_reserved(
            head in "[xX][-_.][gG][uU][iI][cC][hH][eE][tT][-_.]", tail in "[a-zA-Z_.-]{0,8}"
        ) {
            let name = format!("{head}{tail}");
            // RFC 3875: uppercase, `-` → `_`; PHP then maps `.` (and ` `) to `_` in HTTP_*.
            let cgi: String = name.to_uppercase().replace('-', "_").replace(['.', ' '], "_");
            prop_assert!(cgi.starts_with("X_GUICHET_"));
            prop_assert!(is_reserved_header(&name.to_ascii_lowercase()), "{name}");
        }

        #[test]
        fn every_member_a_case_insensitive_decoder_matches_is_the_declared_one_or_refused(
            sent in name(), declared in declared()
        ) {
            // ASP.NET (`OrdinalIgnoreCase`) and Go (simple Unicode folding).
            let up = |s: &str| s.chars().flat_map(char::to_uppercase).collect::<String>();
            let low = |s: &str| s.chars().flat_map(char::to_lowercase).collect::<String>();
            let matched = up(&sent) == up(&declared) || low(&up(&sent)) == low(&up(&declared));
            if matched {
                prop_assert!(sent == declared || same_member_otherwise_spelled(&sent, &declared));
            }
        }
    }
}
