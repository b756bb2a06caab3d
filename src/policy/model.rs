//! The schema of one policy file: one processing activity (*traitement*). Every key is
//! documented in docs/policies.md; unknown keys are refused.

use serde::{Deserialize, Serialize};

/// The only policy format version this binary understands.
pub const POLICY_VERSION: u32 = 1;

/// One processing activity, as written in its file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityFile {
    pub version: u32,
    /// Stable identifier: lowercase letters, digits and `-`; used in URLs and headers.
    pub id: String,
    /// Short name, in French, as the register shows it.
    pub name: String,
    /// What the activity is for, in plain French, for citizens.
    pub description: String,
    pub controller: Controller,
    pub dpo: Contact,
    #[serde(default)]
    pub purposes: Vec<Purpose>,
    /// Categories of data subjects (*personnes concernées*), in French.
    #[serde(default)]
    pub data_subjects: Vec<String>,
    #[serde(default)]
    pub categories: Vec<Category>,
    #[serde(default)]
    pub fields: Vec<Field>,
    #[serde(default)]
    pub recipients: Vec<Recipient>,
    /// Transfers outside the European Union; normally none.
    #[serde(default)]
    pub transfers: Vec<Transfer>,
    /// Required when a purpose rests on consent.
    #[serde(default)]
    pub consent: Option<ConsentNotice>,
    /// General description of the Art. 32 security measures.
    #[serde(default)]
    pub security_measures: Vec<String>,
    #[serde(default)]
    pub routes: Vec<RouteRule>,
    /// The application's rights endpoint (`https://…`, or `http://` on loopback): rights
    /// requests are signed and POSTed there (docs/rights.md, "The application contract").
    #[serde(default)]
    pub rights_endpoint: Option<String>,
    /// The configured route whose pseudonym the application knows and whose callback secret
    /// authenticates its status callbacks. Absent: the route serving the activity's first
    /// `[[routes]]` rule.
    #[serde(default)]
    pub rights_route: Option<String>,
    /// A withdrawal of consent to one of the activity's purposes erases the citizen's data of
    /// the activity, as a granted erasure request would (Art. 17(1)(b)).
    #[serde(default)]
    pub erase_on_withdrawal: bool,
    /// Agent roles that still see the citizen's values while their processing is restricted
    /// (Art. 18(2)), e.g. the legal service. Empty: nobody.
    #[serde(default)]
    pub restriction_visible_to: Vec<String>,
    /// Strict mode: on routes of an activity that declares fields, a body member or query
    /// parameter no field declares is refused (422) before anything is forwarded. Absent:
    /// off, and `guichet policy check` asks for it (docs/policies.md).
    #[serde(default)]
    pub strict: Option<bool>,
    /// The sector (`etat_civil`, `social`, `scolaire`, `elections`, `voirie`, `general`):
    /// the citizen's pseudonyms inside the gateway are derived per sector. Absent: `general`.
    #[serde(default)]
    pub sector: super::Sector,
    /// `[notice]`: options of the citizen notice (Art. 13), e.g. its easy-to-read version.
    #[serde(default)]
    pub notice: NoticeOptions,
    /// What an anonymous request carrying an encrypted field gets: `sign_in` (the default: it
    /// is sent to sign in first) or `sealed` (the values are sealed under a fresh key of the
    /// request's own record, never linked to a person; docs/policies.md, "Anonymous forms").
    #[serde(default, skip_serializing_if = "AnonymousFields::is_sign_in")]
    pub anonymous: AnonymousFields,
    /// Agent roles that may enter the declared fields for a citizen met at the counter or on
    /// the phone (the assisted citizen they selected): the values are sealed under that
    /// citizen's key. Empty: agents cannot send encrypted fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assisted_entry: Vec<String>,
}

/// `anonymous` of a policy file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnonymousFields {
    /// Encrypted fields need a signed-in citizen: anonymous senders are sent to sign in.
    #[default]
    SignIn,
    /// Encrypted fields of an anonymous request are sealed under a key of its own record.
    Sealed,
}

impl AnonymousFields {
    /// The default: left out of the serialised policy, so that the version digest of a
    /// policy without the key stays what it was (`consent::policy_version`).
    pub fn is_sign_in(&self) -> bool {
        *self == Self::SignIn
    }
}

impl ActivityFile {
    /// Strict mode as enforced: only when the activity says so.
    pub fn is_strict(&self) -> bool {
        self.strict == Some(true)
    }
}

/// `[notice]` of a policy file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeOptions {
    /// The notice in easy-to-read French (FALC): short sentences, common words, paragraphs
    /// separated by a blank line. Shown first on the notice page and in "Mes données";
    /// `guichet policy check` holds it to the FALC rules (`policy::falc`).
    #[serde(default)]
    pub falc: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Controller {
    pub organisation: String,
    #[serde(default)]
    pub kind: ControllerKind,
    pub address: String,
    pub contact: String,
    /// Joint controllers, if any (Art. 26).
    #[serde(default)]
    pub joint_controllers: Vec<String>,
    /// Representative (Art. 27), rarely relevant for a French authority.
    #[serde(default)]
    pub representative: Option<String>,
}

/// Public authorities may not rest their tasks on legitimate interests (Art. 6(1), last
/// subparagraph).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ControllerKind {
    #[default]
    PublicAuthority,
    Private,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    pub contact: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    pub id: String,
    /// The purpose in plain French ("Inscrire votre enfant à la cantine").
    pub description: String,
    /// Exactly one basis of Art. 6(1). A list is accepted only to explain why it is refused.
    #[serde(default)]
    pub legal_basis: Option<BasisChoice>,
    /// The EU or French text a legal obligation or public task rests on (Art. 6(3)).
    #[serde(default)]
    pub legal_reference: Option<String>,
    /// The citizen may refuse without losing anything (required for consent).
    #[serde(default)]
    pub optional: bool,
    /// How to get the service without this purpose (required for consent).
    #[serde(default)]
    pub alternative: Option<String>,
    /// What happens if the citizen does not give the data (Art. 13(2)(e)).
    #[serde(default)]
    pub if_not_provided: Option<String>,
}

/// One basis, or several written by mistake (refused by validation with a clear message).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BasisChoice {
    One(LegalBasis),
    Several(Vec<LegalBasis>),
}

// By hand rather than `untagged`: a misspelt basis is then reported with the valid names
// ("unknown variant `consentement`, expected one of `consent`, …"), not as "data did not
// match any variant".
impl<'de> Deserialize<'de> for BasisChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Choice;
        impl<'de> serde::de::Visitor<'de> for Choice {
            type Value = BasisChoice;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "one legal basis: consent, contract, legal_obligation, vital_interests, public_task or \
                     legitimate_interests",
                )
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BasisChoice, E> {
                use serde::de::IntoDeserializer as _;
                LegalBasis::deserialize(v.into_deserializer()).map(BasisChoice::One)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<BasisChoice, A::Error> {
                let mut all = Vec::new();
                while let Some(basis) = seq.next_element::<LegalBasis>()? {
                    all.push(basis);
                }
                Ok(BasisChoice::Several(all))
            }
        }
        d.deserialize_any(Choice)
    }
}

/// The six legal bases of Art. 6(1) a–f.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterests,
    PublicTask,
    LegitimateInterests,
}

impl LegalBasis {
    /// The letter of Art. 6(1).
    pub fn letter(self) -> char {
        match self {
            Self::Consent => 'a',
            Self::Contract => 'b',
            Self::LegalObligation => 'c',
            Self::VitalInterests => 'd',
            Self::PublicTask => 'e',
            Self::LegitimateInterests => 'f',
        }
    }

    /// The name the CNIL model uses.
    pub fn french(self) -> &'static str {
        match self {
            Self::Consent => "Consentement",
            Self::Contract => "Contrat",
            Self::LegalObligation => "Obligation légale",
            Self::VitalInterests => "Sauvegarde des intérêts vitaux",
            Self::PublicTask => "Mission d'intérêt public",
            Self::LegitimateInterests => "Intérêt légitime",
        }
    }

    /// Bases that must rest on a text of law (Art. 6(3)).
    pub fn needs_legal_reference(self) -> bool {
        matches!(self, Self::LegalObligation | Self::PublicTask)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consent => "consent",
            Self::Contract => "contract",
            Self::LegalObligation => "legal_obligation",
            Self::VitalInterests => "vital_interests",
            Self::PublicTask => "public_task",
            Self::LegitimateInterests => "legitimate_interests",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub id: String,
    /// Name in French ("Identité de l'enfant").
    pub name: String,
    /// Special-category data (Art. 9): health, religion…
    #[serde(default)]
    pub special: bool,
    #[serde(default)]
    pub retention: Option<Retention>,
    /// The category is the client's network address, which routes with `client_address =
    /// "truncated"` or `"full"` send to the application (docs/proxy.md).
    #[serde(default)]
    pub client_address: bool,
    /// Identity claims from sign-in (`given_name`, `birthdate`…) that carry this category:
    /// a route may send a claim upstream only when a category of its activity lists it.
    #[serde(default)]
    pub claims: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// How long the data stays in the active base: `"3 years"`, `"6 months"`, `"30 days"`.
    pub active: String,
    /// The event the duration counts from.
    pub from: RetentionStart,
    /// Name of the event an upstream reports, when `from = "event"` (`"radiation"`).
    #[serde(default)]
    pub event: Option<String>,
    /// The event in plain French, as the notice says it ("votre radiation des listes").
    #[serde(default)]
    pub event_label: Option<String>,
    /// Time in intermediate archive (restricted access), if any.
    #[serde(default)]
    pub intermediate: Option<String>,
    /// What happens at the end.
    pub then: RetentionEnd,
    /// Where the duration comes from (a référentiel, a text); shown in the register.
    #[serde(default)]
    pub source: Option<String>,
    /// The service that produced the records ("Service de l'état civil"): elimination lists
    /// are made per producing service. Required with `then = "archive_review"`.
    #[serde(default)]
    pub producing_service: Option<String>,
    /// Tell the citizen this long before the data is destroyed or anonymised (`"30 days"`).
    #[serde(default)]
    pub notice_before: Option<String>,
    /// Agent roles that may still reveal values in intermediate archive, each time with a
    /// stated reason; empty: nobody.
    #[serde(default)]
    pub archive_visible_to: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionStart {
    Collection,
    LastActivity,
    CaseClosed,
    Event,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionEnd {
    Destroy,
    Anonymise,
    /// Public archives: an elimination list goes to the archivist instead of deletion.
    ArchiveReview,
}

/// Where a field is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldLocation {
    /// A form field (`application/x-www-form-urlencoded` or multipart), by name.
    Form,
    /// A JSON body, by JSON pointer (`/child/name`); `name` becomes `/name` when no pointer.
    Json,
    Query,
    Header,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Request,
    Response,
    Both,
}

/// What the field-encryption phase does with the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    Encrypt,
    Pseudonymize,
    Pass,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: String,
    /// Id of the category the field carries.
    pub category: String,
    #[serde(rename = "in")]
    pub locations: Vec<FieldLocation>,
    /// JSON pointer, when it differs from `/name`.
    #[serde(default)]
    pub json_pointer: Option<String>,
    #[serde(default)]
    pub direction: Direction,
    pub protection: Protection,
    /// What citizens call the field, in plain French ("Adresse e-mail"): the rectification
    /// screen lists the fields that have one, so the citizen can correct them online.
    #[serde(default)]
    pub label: Option<String>,
    /// Agent roles that may see the value in clear. Empty: nobody (privacy by default).
    #[serde(default)]
    pub visible_to: Vec<String>,
    /// Exact-match search on an encrypted field: the gateway sends a blind index (`gchb1.`)
    /// beside the token (`<name>_index`) and rewrites a query parameter of this name into it.
    #[serde(default)]
    pub searchable: bool,
    /// The JSON pointer's unescaped segments, split once per policy load rather than once per
    /// request (see [`Field::json_segments`]).
    #[serde(skip)]
    pub compiled_pointer: Derived<Option<Vec<String>>>,
    /// The name as the modelled stacks read it (form and query), computed once per policy
    /// load (see [`Field::param_name`]).
    #[serde(skip)]
    pub compiled_name: Derived<crate::canonical::names::ParamName>,
    /// The retention class of the field's category (`policy::retention_class`), set when the
    /// policy is compiled: the key the protect phase seals the field's values under.
    #[serde(skip)]
    pub compiled_class: Derived<String>,
}

/// A value computed once from the rest of its struct: not part of what the struct means, so
/// it never makes two values differ.
#[derive(Debug, Clone, Default)]
pub struct Derived<T>(std::sync::OnceLock<T>);

impl<T> Derived<T> {
    pub fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(f)
    }
}

impl<T> PartialEq for Derived<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Field {
    /// The retention class the field's values are sealed in. Set when the activity is
    /// compiled (`Field::set_class`); a field never compiled is in the default class.
    pub fn retention_class(&self) -> &str {
        self.compiled_class.0.get().map_or(crate::crypto::vault::DEFAULT_CLASS, String::as_str)
    }

    /// Records the field's retention class, computed from its activity's categories.
    pub fn set_class(&self, class: String) {
        // Already set: the same activity compiled it, to the same value.
        let _ = self.compiled_class.0.set(class);
    }

    /// How the modelled application stacks read the field's name as a form or query
    /// parameter: a parameter bound the same way under another spelling is refused.
    pub fn param_name(&self) -> &crate::canonical::names::ParamName {
        self.compiled_name.0.get_or_init(|| crate::canonical::names::ParamName::of(&self.name))
    }

    /// The unescaped segments of the field's JSON pointer (`/name` unless `json_pointer` says
    /// otherwise; `~1` is `/`, `~0` is `~`, RFC 6901). `None` when the pointer is invalid.
    pub fn json_segments(&self) -> Option<&[String]> {
        self.compiled_pointer
            .0
            .get_or_init(|| match &self.json_pointer {
                Some(p) => pointer_segments(p),
                None => Some(vec![self.name.clone()]),
            })
            .as_deref()
    }
}

/// The unescaped segments of an RFC 6901 pointer (`~1` is `/`, `~0` is `~`).
pub fn pointer_segments(pointer: &str) -> Option<Vec<String>> {
    let rest = pointer.strip_prefix('/')?;
    Some(rest.split('/').map(|s| s.replace("~1", "/").replace("~0", "~")).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientKind {
    Internal,
    Processor,
    Authority,
    Other,
}

impl RecipientKind {
    pub fn french(self) -> &'static str {
        match self {
            Self::Internal => "Destinataire interne",
            Self::Processor => "Sous-traitant",
            Self::Authority => "Autre autorité",
            Self::Other => "Autre destinataire",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    pub name: String,
    pub kind: RecipientKind,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    pub country: String,
    pub recipient: String,
    /// The safeguard (adequacy decision, standard clauses…) and where its document is.
    pub safeguard: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentNotice {
    /// The text shown when asking for consent, in plain French.
    pub text: String,
    /// Version of the text; a consent proof records it.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Match only this host (case-insensitive, port ignored). Absent: any host.
    #[serde(default)]
    pub host: Option<String>,
    /// `/exact/path`, `/with/{param}/segments`, `/prefix/*` (the path and everything under it).
    pub path: String,
    /// Methods covered. Absent: every method.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Which purpose requests on this route serve; optional when there is one purpose.
    #[serde(default)]
    pub purpose: Option<String>,
}
