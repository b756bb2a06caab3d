//! The built-in demonstration town-hall service that `guichet demo` places behind the gateway.
//!
//! "Mairie de Démoville" is a deliberately naive application: it stores what it is sent, in
//! memory, and every page shows exactly what it received — all request headers and the stored
//! records, verbatim (HTML-escaped). Its purpose is to let a newcomer see what the gateway
//! forwards to the applications behind it (pseudonymous subject, assertions, encrypted field
//! tokens…) and what it keeps away from them.
//!
//! It never validates formats (dates, e-mail addresses): once the gateway replaces personal
//! fields with encrypted tokens, a strict application would reject its own traffic. Only
//! required fields are checked, for being non-blank.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use axum::{Form, Json};
use http::header::CACHE_CONTROL;
use http::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::json;

/// Keeps a long-running demo from growing without bound: the oldest records are dropped first.
const MAX_RECORDS_PER_KIND: usize = 1000;

/// Forms here are a few hundred bytes; a small limit bounds what 1000 stored records can weigh.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Header-name prefix reserved for what the gateway itself adds (see the product brief).
const GUICHET_HEADER_PREFIX: &str = "x-guichet-";

type SharedState = Arc<AppState>;

mod rights;

/// The demo town-hall application's router (state included, in-memory storage).
pub fn router() -> Router {
    build(AppState::default())
}

/// The router with the rights endpoint (`POST /droits`) on, trusting the gateway at
/// `gateway_url` (its JWKS verifies the requests).
pub fn router_with_rights(gateway_url: &str) -> anyhow::Result<Router> {
    let endpoint = rights::Endpoint::new(gateway_url)?;
    Ok(build(AppState { rights: Some(endpoint), ..AppState::default() }))
}

fn build(state: AppState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/recu", get(received))
        // The canteen's back-office list: claimed by the canteen activity, so the gateway
        // reveals its tokens to the school service and shows placeholders to other agents.
        .route("/recu/cantine", get(received_kind::<CanteenRegistration>))
        .route("/api/echo", any(echo))
        // The newsletter (consent-based): the gateway only lets through citizens who agreed.
        .route("/lettre-information", get(newsletter))
        .route("/lettre-information/", get(newsletter))
        .route("/droits", axum::routing::post(rights::answer))
        .merge(service_routes::<CanteenRegistration>())
        .merge(service_routes::<CertificateRequest>())
        .merge(service_routes::<StreetReport>())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(state))
}

fn service_routes<K: Kind>() -> Router<SharedState> {
    let spec = &K::SERVICE;
    Router::new()
        .route(spec.path, get(show_form::<K>).post(submit_form::<K>))
        .route(spec.record_route, get(show_record::<K>))
        .route(spec.api_path, get(api_list::<K>).post(api_create::<K>))
}

// ---------------------------------------------------------------------------------------------
// Received headers
// ---------------------------------------------------------------------------------------------

/// One request header exactly as the application received it.
#[derive(Clone, Debug)]
struct ReceivedHeader {
    name: String,
    value: String,
}

impl ReceivedHeader {
    fn is_from_guichet(&self) -> bool {
        self.name.starts_with(GUICHET_HEADER_PREFIX)
    }
}

/// All headers of one request, in the order received, repeated names kept.
#[derive(Clone, Debug, Default)]
struct ReceivedHeaders(Vec<ReceivedHeader>);

impl ReceivedHeaders {
    fn from_map(headers: &HeaderMap) -> Self {
        Self(
            headers
                .iter()
                .map(|(name, value)| ReceivedHeader {
                    name: name.as_str().to_owned(),
                    // Lossy rather than rejected: showing odd bytes is the point of this page.
                    value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                })
                .collect(),
        )
    }

    fn entries(&self) -> &[ReceivedHeader] {
        &self.0
    }

    /// JSON view: one string per name, repeated headers joined with ", " as HTTP allows, so
    /// clients and tests can simply read `headers["x-guichet-subject"]`.
    fn as_map(&self) -> BTreeMap<&str, String> {
        let mut map: BTreeMap<&str, String> = BTreeMap::new();
        for header in &self.0 {
            map.entry(header.name.as_str())
                .and_modify(|joined| {
                    joined.push_str(", ");
                    joined.push_str(&header.value);
                })
                .or_insert_with(|| header.value.clone());
        }
        map
    }
}

impl Serialize for ReceivedHeaders {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_map().serialize(serializer)
    }
}

// ---------------------------------------------------------------------------------------------
// Field descriptions: one source for the form, the record page, validation and error messages
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Choice {
    value: &'static str,
    label: &'static str,
}

#[derive(Debug)]
enum Control {
    Text,
    Email,
    Date,
    LongText,
    Select(&'static [Choice]),
    Radio(&'static [Choice]),
}

#[derive(Debug)]
struct FieldSpec {
    /// Form field name and JSON key.
    name: &'static str,
    label: &'static str,
    hint: Option<&'static str>,
    control: Control,
    required: bool,
    autocomplete: Option<&'static str>,
}

impl FieldSpec {
    const fn new(name: &'static str, label: &'static str, control: Control) -> Self {
        Self { name, label, hint: None, control, required: true, autocomplete: None }
    }

    const fn optional(self) -> Self {
        Self { required: false, ..self }
    }

    const fn hint(self, hint: &'static str) -> Self {
        Self { hint: Some(hint), ..self }
    }

    const fn autocomplete(self, token: &'static str) -> Self {
        Self { autocomplete: Some(token), ..self }
    }

    fn input_type(&self) -> &'static str {
        match self.control {
            Control::Email => "email",
            Control::Date => "date",
            _ => "text",
        }
    }

    /// The element an error-summary link moves focus to: radio buttons have no element of
    /// their own name, so the first button stands for the group.
    fn anchor(&self) -> String {
        match self.control {
            Control::Radio(_) => self.choice_id(1),
            _ => self.name.to_owned(),
        }
    }

    fn choice_id(&self, position: impl std::fmt::Display) -> String {
        format!("{}-{position}", self.name)
    }

    fn hint_id(&self) -> String {
        format!("{}-aide", self.name)
    }

    fn error_id(&self) -> String {
        format!("{}-erreur", self.name)
    }

    fn missing_message(&self) -> &'static str {
        match self.control {
            Control::Select(_) | Control::Radio(_) => "Choisissez une réponse.",
            _ => "Ce champ est obligatoire. Merci de le remplir.",
        }
    }
}

/// A field of a submission, with its value, ready for a template.
struct FieldView<'a> {
    spec: &'static FieldSpec,
    value: &'a str,
    missing: bool,
}

impl FieldView<'_> {
    fn described_by(&self) -> String {
        let mut ids = Vec::new();
        if self.spec.hint.is_some() {
            ids.push(self.spec.hint_id());
        }
        if self.missing {
            ids.push(self.spec.error_id());
        }
        ids.join(" ")
    }

    fn is_chosen(&self, choice: &Choice) -> bool {
        self.value == choice.value
    }
}

// ---------------------------------------------------------------------------------------------
// The two services
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Home,
    Canteen,
    CivilStatus,
    Roads,
    Received,
    /// Error pages: no menu entry is current.
    Other,
}

/// What differs between the two services apart from their fields.
struct ServiceSpec {
    path: &'static str,
    record_route: &'static str,
    api_path: &'static str,
    section: Section,
    form_title: &'static str,
    intro: &'static [&'static str],
    submit_label: &'static str,
    record_noun: &'static str,
    /// Completed on the record page by " sous le numéro N."
    confirmation: &'static str,
    list_title: &'static str,
    empty_list: &'static str,
    again_label: &'static str,
    /// The processing activity whose Art. 13 notice the form links (`/.guichet/informations/…`).
    notice_activity: &'static str,
}

/// A kind of record the town hall collects through a form and a JSON API.
trait Kind: Clone + Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    const SERVICE: ServiceSpec;
    const FIELDS: &'static [FieldSpec];

    fn value_of(&self, name: &str) -> Option<&str>;

    fn store(state: &AppState) -> &Mutex<Store<Self>>;

    fn field_views(&self, missing: &[&str]) -> Vec<FieldView<'_>> {
        Self::FIELDS
            .iter()
            .map(|spec| FieldView {
                spec,
                value: self.value_of(spec.name).unwrap_or_default(),
                missing: missing.contains(&spec.name),
            })
            .collect()
    }

    /// Names of the required fields left blank.
    fn missing_fields(&self) -> Vec<&'static str> {
        Self::FIELDS
            .iter()
            .filter(|spec| spec.required && self.value_of(spec.name).is_none_or(|value| value.trim().is_empty()))
            .map(|spec| spec.name)
            .collect()
    }
}

const SCHOOLS: &[Choice] = &[
    Choice { value: "École maternelle des Tilleuls", label: "École maternelle des Tilleuls" },
    Choice { value: "École élémentaire Jules-Ferry", label: "École élémentaire Jules-Ferry" },
    Choice { value: "École élémentaire Louise-Michel", label: "École élémentaire Louise-Michel" },
];

const CERTIFICATE_TYPES: &[Choice] = &[
    Choice { value: "naissance", label: "Acte de naissance" },
    Choice { value: "mariage", label: "Acte de mariage" },
    Choice { value: "deces", label: "Acte de décès" },
];

/// Absent fields deserialize as empty so that validation can list every missing field at once.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct CanteenRegistration {
    child_given_names: String,
    child_family_name: String,
    child_birth_date: String,
    school: String,
    parent_email: String,
    diet: String,
}

impl Kind for CanteenRegistration {
    const SERVICE: ServiceSpec = ServiceSpec {
        path: "/cantine",
        record_route: "/cantine/{id}",
        api_path: "/api/inscriptions",
        section: Section::Canteen,
        form_title: "Inscription à la cantine scolaire",
        intro: &[
            "Ce formulaire inscrit votre enfant à la cantine de son école.",
            "Remplissez les champs, puis appuyez sur « Envoyer l'inscription ».",
            "Ensuite, la page suivante vous montre ce que l'application a enregistré.",
        ],
        submit_label: "Envoyer l'inscription",
        record_noun: "Inscription",
        confirmation: "L'inscription est enregistrée",
        list_title: "Inscriptions à la cantine",
        empty_list: "Aucune inscription pour le moment.",
        again_label: "Faire une autre inscription",
        notice_activity: "cantine",
    };

    const FIELDS: &'static [FieldSpec] = &[
        FieldSpec::new("child_given_names", "Prénom(s) de l'enfant", Control::Text),
        FieldSpec::new("child_family_name", "Nom de famille de l'enfant", Control::Text),
        FieldSpec::new("child_birth_date", "Date de naissance de l'enfant", Control::Date)
            .hint("Exemple : 14/07/2018."),
        FieldSpec::new("school", "École", Control::Select(SCHOOLS)),
        FieldSpec::new("parent_email", "Votre adresse e-mail", Control::Email)
            .hint("La mairie vous écrit à cette adresse. Exemple : prenom.nom@exemple.fr")
            .autocomplete("email"),
        FieldSpec::new("diet", "Allergies ou régime alimentaire", Control::LongText)
            .hint("Par exemple : allergie aux arachides, repas sans porc.")
            .optional(),
    ];

    fn value_of(&self, name: &str) -> Option<&str> {
        let value = match name {
            "child_given_names" => &self.child_given_names,
            "child_family_name" => &self.child_family_name,
            "child_birth_date" => &self.child_birth_date,
            "school" => &self.school,
            "parent_email" => &self.parent_email,
            "diet" => &self.diet,
            _ => return None,
        };
        Some(value)
    }

    fn store(state: &AppState) -> &Mutex<Store<Self>> {
        &state.canteen
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct CertificateRequest {
    certificate_type: String,
    family_name: String,
    given_names: String,
    birth_date: String,
    birth_place: String,
    reason: String,
    delivery_address: String,
}

impl Kind for CertificateRequest {
    const SERVICE: ServiceSpec = ServiceSpec {
        path: "/etat-civil",
        record_route: "/etat-civil/{id}",
        api_path: "/api/demandes",
        section: Section::CivilStatus,
        form_title: "Demande d'acte d'état civil",
        intro: &[
            "Ce formulaire demande une copie d'un acte d'état civil.",
            "Donnez les informations de la personne concernée par l'acte.",
            "La mairie envoie l'acte par courrier à l'adresse que vous indiquez.",
        ],
        submit_label: "Envoyer la demande",
        record_noun: "Demande",
        confirmation: "La demande est enregistrée",
        list_title: "Demandes d'actes d'état civil",
        empty_list: "Aucune demande pour le moment.",
        again_label: "Faire une autre demande",
        notice_activity: "etat-civil",
    };

    const FIELDS: &'static [FieldSpec] = &[
        FieldSpec::new("certificate_type", "Type d'acte", Control::Radio(CERTIFICATE_TYPES)),
        FieldSpec::new("family_name", "Nom de famille", Control::Text)
            .hint("Le nom écrit sur l'acte, par exemple le nom de naissance."),
        FieldSpec::new("given_names", "Prénom(s)", Control::Text),
        FieldSpec::new("birth_date", "Date de naissance", Control::Date).hint("Exemple : 03/02/1975."),
        FieldSpec::new("birth_place", "Lieu de naissance", Control::Text)
            .hint("La commune, et le pays si ce n'est pas la France."),
        FieldSpec::new("reason", "Motif de la demande", Control::Text)
            .hint("Par exemple : dossier de mariage, carte d'identité.")
            .optional(),
        FieldSpec::new("delivery_address", "Adresse où envoyer l'acte", Control::LongText)
            .hint("Numéro, rue, code postal et commune.")
            .autocomplete("street-address"),
    ];

    fn value_of(&self, name: &str) -> Option<&str> {
        let value = match name {
            "certificate_type" => &self.certificate_type,
            "family_name" => &self.family_name,
            "given_names" => &self.given_names,
            "birth_date" => &self.birth_date,
            "birth_place" => &self.birth_place,
            "reason" => &self.reason,
            "delivery_address" => &self.delivery_address,
            _ => return None,
        };
        Some(value)
    }

    fn store(state: &AppState) -> &Mutex<Store<Self>> {
        &state.civil_status
    }
}

/// A street-issue report (policies/voirie.toml): anyone may send one without signing in; the
/// gateway seals the reporter's name and e-mail under a key of the report itself and sends the
/// record id (`X-Guichet-Record`) shown on the record page.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct StreetReport {
    location: String,
    description: String,
    reporter_name: String,
    reporter_email: String,
}

impl Kind for StreetReport {
    const SERVICE: ServiceSpec = ServiceSpec {
        path: "/voirie/signalements/",
        record_route: "/voirie/signalements/{id}",
        // Under the `api` route, which no activity claims for reports: refused by the gateway.
        api_path: "/api/signalements",
        section: Section::Roads,
        form_title: "Signaler un problème dans la rue",
        intro: &[
            "Un trou, une lampe cassée, des déchets ? Dites-le à la mairie.",
            "Vous n'avez pas besoin de vous connecter.",
            "Votre nom et votre e-mail sont facultatifs. Ils restent protégés.",
        ],
        submit_label: "Envoyer le signalement",
        record_noun: "Signalement",
        confirmation: "Le signalement est enregistré",
        list_title: "Signalements sur la voirie",
        empty_list: "Aucun signalement pour le moment.",
        again_label: "Faire un autre signalement",
        notice_activity: "voirie",
    };

    const FIELDS: &'static [FieldSpec] = &[
        FieldSpec::new("location", "Lieu du problème", Control::Text).hint("Par exemple : 12 rue des Lilas."),
        FieldSpec::new("description", "Description du problème", Control::LongText),
        FieldSpec::new("reporter_name", "Votre nom", Control::Text).optional().autocomplete("name"),
        FieldSpec::new("reporter_email", "Votre adresse e-mail", Control::Email)
            .hint("Pour vous dire quand c'est réparé. Exemple : prenom.nom@exemple.fr")
            .autocomplete("email")
            .optional(),
    ];

    fn value_of(&self, name: &str) -> Option<&str> {
        let value = match name {
            "location" => &self.location,
            "description" => &self.description,
            "reporter_name" => &self.reporter_name,
            "reporter_email" => &self.reporter_email,
            _ => return None,
        };
        Some(value)
    }

    fn store(state: &AppState) -> &Mutex<Store<Self>> {
        &state.street_reports
    }
}

// ---------------------------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------------------------

/// A record as stored: the submitted fields verbatim, plus the headers of the request that
/// created it, so its page can show what the application got when the data was submitted.
#[derive(Clone, Debug, Serialize)]
struct Stored<K> {
    id: u64,
    #[serde(flatten)]
    fields: K,
    received_headers: ReceivedHeaders,
}

#[derive(Debug)]
struct Store<K> {
    next_id: u64,
    capacity: usize,
    records: VecDeque<Stored<K>>,
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Self::with_capacity(MAX_RECORDS_PER_KIND)
    }
}

impl<K> Store<K> {
    fn with_capacity(capacity: usize) -> Self {
        Self { next_id: 1, capacity, records: VecDeque::new() }
    }
}

impl<K: Clone> Store<K> {
    fn insert(&mut self, fields: K, received_headers: ReceivedHeaders) -> Stored<K> {
        let record = Stored { id: self.next_id, fields, received_headers };
        self.next_id += 1;
        while self.records.len() >= self.capacity.max(1) {
            self.records.pop_front();
        }
        self.records.push_back(record.clone());
        record
    }

    fn get(&self, id: u64) -> Option<Stored<K>> {
        self.records.iter().find(|record| record.id == id).cloned()
    }

    fn oldest_first(&self) -> Vec<Stored<K>> {
        self.records.iter().cloned().collect()
    }

    fn newest_first(&self) -> Vec<Stored<K>> {
        self.records.iter().rev().cloned().collect()
    }
}

#[derive(Debug, Default)]
struct AppState {
    canteen: Mutex<Store<CanteenRegistration>>,
    civil_status: Mutex<Store<CertificateRequest>>,
    street_reports: Mutex<Store<StreetReport>>,
    /// The rights endpoint, when the gateway's address is known.
    rights: Option<rights::Endpoint>,
}

/// A panic while holding the lock cannot leave a store half-updated (every mutation is a single
/// push/pop), so a poisoned lock is safe to keep using.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

/// What the shared layout needs: title, current menu entry, and this request's headers.
struct Page {
    title: String,
    section: Section,
    has_errors: bool,
    headers: ReceivedHeaders,
}

impl Page {
    fn new(title: impl Into<String>, section: Section, headers: &HeaderMap) -> Self {
        Self { title: title.into(), section, has_errors: false, headers: ReceivedHeaders::from_map(headers) }
    }
}

/// A stored record ready for display.
struct RecordView<'a> {
    id: u64,
    heading: String,
    href: String,
    fields: Vec<FieldView<'a>>,
    headers: &'a ReceivedHeaders,
}

impl<'a> RecordView<'a> {
    fn of<K: Kind>(record: &'a Stored<K>) -> Self {
        Self {
            id: record.id,
            heading: format!("{} n° {}", K::SERVICE.record_noun, record.id),
            href: record_href::<K>(record.id),
            fields: record.fields.field_views(&[]),
            headers: &record.received_headers,
        }
    }
}

fn record_href<K: Kind>(id: u64) -> String {
    format!("{}/{id}", K::SERVICE.path.trim_end_matches('/'))
}

#[derive(Template)]
#[template(path = "demo/home.html")]
struct HomePage {
    page: Page,
}

#[derive(Template)]
#[template(path = "demo/form.html")]
struct FormPage<'a> {
    page: Page,
    service: &'static ServiceSpec,
    fields: Vec<FieldView<'a>>,
}

impl FormPage<'_> {
    fn missing(&self) -> impl Iterator<Item = &FieldView<'_>> {
        self.fields.iter().filter(|field| field.missing)
    }
}

#[derive(Template)]
#[template(path = "demo/record.html")]
struct RecordPage<'a> {
    page: Page,
    service: &'static ServiceSpec,
    record: RecordView<'a>,
}

/// One service's records for the "what the application received" page.
struct RecordList<'a> {
    title: &'static str,
    empty: &'static str,
    records: Vec<RecordView<'a>>,
}

#[derive(Template)]
#[template(path = "demo/received.html")]
struct ReceivedPage<'a> {
    page: Page,
    lists: Vec<RecordList<'a>>,
    max_records: usize,
}

#[derive(Template)]
#[template(path = "demo/error.html")]
struct ErrorPage {
    page: Page,
    message: &'static str,
}

fn render_html(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        // Pages show personal data (even if fake): keep them out of shared caches and history.
        Ok(body) => (status, [(CACHE_CONTROL, "no-store")], Html(body)).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Erreur : la page n'a pas pu être affichée.").into_response(),
    }
}

fn error_page(status: StatusCode, title: &str, message: &'static str, headers: &HeaderMap) -> Response {
    render_html(status, &ErrorPage { page: Page::new(title, Section::Other, headers), message })
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

// ---------------------------------------------------------------------------------------------
// HTML handlers
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "demo/lettre.html")]
struct NewsletterPage;

async fn newsletter() -> Response {
    render_html(StatusCode::OK, &NewsletterPage)
}

async fn home(headers: HeaderMap) -> Response {
    render_html(StatusCode::OK, &HomePage { page: Page::new("Mairie de Démoville", Section::Home, &headers) })
}

async fn show_form<K: Kind>(headers: HeaderMap) -> Response {
    let draft = K::default();
    let page = Page::new(K::SERVICE.form_title, K::SERVICE.section, &headers);
    render_html(StatusCode::OK, &FormPage { page, service: &K::SERVICE, fields: draft.field_views(&[]) })
}

async fn submit_form<K: Kind>(
    State(state): State<SharedState>,
    headers: HeaderMap,
    form: Result<Form<K>, FormRejection>,
) -> Response {
    let Form(submission) = match form {
        Ok(form) => form,
        Err(rejection) => return form_rejected(&rejection, &headers),
    };
    let missing = submission.missing_fields();
    if !missing.is_empty() {
        // Shown again with what was typed, so nobody has to start over.
        let mut page = Page::new(K::SERVICE.form_title, K::SERVICE.section, &headers);
        page.has_errors = true;
        let fields = submission.field_views(&missing);
        return render_html(StatusCode::BAD_REQUEST, &FormPage { page, service: &K::SERVICE, fields });
    }
    let stored = lock(K::store(&state)).insert(submission, ReceivedHeaders::from_map(&headers));
    Redirect::to(&record_href::<K>(stored.id)).into_response()
}

fn form_rejected(rejection: &FormRejection, headers: &HeaderMap) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let message = "Le formulaire envoyé est trop long. Raccourcissez les textes puis réessayez.";
        return error_page(StatusCode::PAYLOAD_TOO_LARGE, "Formulaire trop long", message, headers);
    }
    let message = "Le formulaire envoyé n'a pas pu être lu. Revenez au formulaire et réessayez.";
    error_page(StatusCode::BAD_REQUEST, "Formulaire illisible", message, headers)
}

async fn show_record<K: Kind>(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let record = id.parse().ok().and_then(|id| lock(K::store(&state)).get(id));
    let Some(record) = record else {
        let message =
            "Ce dossier n'existe pas, ou il a été effacé. L'application garde les dossiers en mémoire seulement.";
        return error_page(StatusCode::NOT_FOUND, "Dossier introuvable", message, &headers);
    };
    let view = RecordView::of(&record);
    let page = Page::new(view.heading.clone(), K::SERVICE.section, &headers);
    render_html(StatusCode::OK, &RecordPage { page, service: &K::SERVICE, record: view })
}

async fn received(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let canteen = lock(&state.canteen).newest_first();
    let civil_status = lock(&state.civil_status).newest_first();
    let street_reports = lock(&state.street_reports).newest_first();
    let lists = vec![record_list(&canteen), record_list(&civil_status), record_list(&street_reports)];
    let page = Page::new("Ce que l'application a reçu", Section::Received, &headers);
    render_html(StatusCode::OK, &ReceivedPage { page, lists, max_records: MAX_RECORDS_PER_KIND })
}

async fn received_kind<K: Kind>(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let records = lock(K::store(&state)).newest_first();
    let page = Page::new(K::SERVICE.list_title, Section::Received, &headers);
    render_html(
        StatusCode::OK,
        &ReceivedPage { page, lists: vec![record_list(&records)], max_records: MAX_RECORDS_PER_KIND },
    )
}

fn record_list<K: Kind>(records: &[Stored<K>]) -> RecordList<'_> {
    RecordList {
        title: K::SERVICE.list_title,
        empty: K::SERVICE.empty_list,
        records: records.iter().map(RecordView::of).collect(),
    }
}

async fn not_found(headers: HeaderMap) -> Response {
    let message = "Cette page n'existe pas. Utilisez le menu pour trouver le service que vous cherchez.";
    error_page(StatusCode::NOT_FOUND, "Page introuvable", message, &headers)
}

// ---------------------------------------------------------------------------------------------
// JSON API
// ---------------------------------------------------------------------------------------------

async fn api_list<K: Kind>(State(state): State<SharedState>) -> Json<Vec<Stored<K>>> {
    Json(lock(K::store(&state)).oldest_first())
}

async fn api_create<K: Kind>(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Result<Json<K>, JsonRejection>,
) -> Response {
    let Json(submission) = match body {
        Ok(body) => body,
        Err(rejection) => return json_rejected(&rejection),
    };
    let missing = submission.missing_fields();
    if !missing.is_empty() {
        let body = json!({ "error": "Des champs obligatoires sont absents ou vides.", "missing_fields": missing });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let stored = lock(K::store(&state)).insert(submission, ReceivedHeaders::from_map(&headers));
    (StatusCode::CREATED, Json(stored)).into_response()
}

fn json_rejected(rejection: &JsonRejection) -> Response {
    let message = match rejection {
        JsonRejection::JsonSyntaxError(_) => "Le corps de la requête n'est pas du JSON valide.",
        JsonRejection::JsonDataError(_) => {
            "Le JSON n'a pas la forme attendue : un objet dont chaque champ est une chaîne de caractères."
        }
        JsonRejection::MissingJsonContentType(_) => "L'en-tête Content-Type doit valoir application/json.",
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return json_error(StatusCode::PAYLOAD_TOO_LARGE, "Le corps de la requête est trop long.");
        }
        _ => "Le corps de la requête n'a pas pu être lu.",
    };
    json_error(StatusCode::BAD_REQUEST, message)
}

/// Reflects the request as received — including its body, so tests can check what the gateway
/// did to submitted fields.
async fn echo(
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<serde_json::Value> {
    Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": ReceivedHeaders::from_map(&headers),
        "body": String::from_utf8_lossy(&body),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;
    use http::header::{CONTENT_TYPE, LOCATION};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    const FORM: &str = "application/x-www-form-urlencoded";

    async fn send(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Askama writes `<` as `&#60;`; either entity form is fine, a raw `<` is not.
    fn is_escaped(body: &str, raw: &str) -> bool {
        let named = raw.replace('<', "&lt;").replace('>', "&gt;");
        let numeric = raw.replace('<', "&#60;").replace('>', "&#62;");
        !body.contains(raw) && (body.contains(&named) || body.contains(&numeric))
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    fn post(uri: &str, content_type: &str, body: &str) -> Request<Body> {
        Request::post(uri)
            .header(CONTENT_TYPE, content_type)
            .header("x-guichet-subject", "abc")
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    const CANTEEN_FORM: &str = "child_given_names=%3Cscript%3Ealert(1)%3C%2Fscript%3E&child_family_name=Martin\
        &child_birth_date=2018-07-14&school=%C3%89cole+maternelle+des+Tilleuls\
        &parent_email=parent%40exemple.fr&diet=";

    #[tokio::test]
    async fn posting_the_canteen_form_stores_the_record_and_redirects_to_it() {
        let app = router();
        let (status, headers, _) = send(&app, post("/cantine", FORM, CANTEEN_FORM)).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[LOCATION], "/cantine/1");

        let (status, _, body) = send(&app, get("/api/inscriptions")).await;
        assert_eq!(status, StatusCode::OK);
        let records: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(records[0]["id"], 1);
        assert_eq!(records[0]["child_given_names"], "<script>alert(1)</script>");
        assert_eq!(records[0]["school"], "École maternelle des Tilleuls");
    }

    #[tokio::test]
    async fn record_page_shows_submitted_values_escaped_and_the_headers_received() {
        let app = router();
        send(&app, post("/cantine", FORM, CANTEEN_FORM)).await;
        let request = Request::get("/cantine/1").header("x-request-id", "req-42").body(Body::empty()).unwrap();
        let (status, headers, body) = send(&app, request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert!(is_escaped(&body, "<script>alert(1)</script>"), "{body}");
        // Header of the POST that created the record, then header of this GET.
        assert!(body.contains("x-guichet-subject") && body.contains(">abc<"), "{body}");
        assert!(body.contains("x-request-id") && body.contains("req-42"), "{body}");
        assert!(body.contains("Martin"));
    }

    #[tokio::test]
    async fn certificate_request_form_round_trip() {
        let app = router();
        let form = "certificate_type=deces&family_name=Dupont&given_names=Jean&birth_date=1950-01-02\
            &birth_place=D%C3%A9moville&reason=&delivery_address=1+rue+de+la+Mairie";
        let (status, headers, _) = send(&app, post("/etat-civil", FORM, form)).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[LOCATION], "/etat-civil/1");
        let (status, _, body) = send(&app, get("/etat-civil/1")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("Demande n° 1") && body.contains("Démoville") && body.contains("deces"), "{body}");
    }

    #[tokio::test]
    async fn blank_required_fields_redisplay_the_form_with_what_was_typed() {
        let app = router();
        let (status, _, body) = send(&app, post("/cantine", FORM, "child_family_name=%3Cb%3EMartin")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("<title>Erreur"), "{body}");
        assert!(body.contains("href=\"#child_given_names\""), "{body}");
        assert!(is_escaped(&body, "value=\"<b>Martin\""), "{body}");
        assert!(!body.contains("href=\"#diet\""), "optional field reported missing");
        let (_, _, list) = send(&app, get("/api/inscriptions")).await;
        assert_eq!(list, "[]");
    }

    #[tokio::test]
    async fn each_form_links_its_notice() {
        let app = router();
        for (form, activity) in [("/cantine", "cantine"), ("/etat-civil", "etat-civil")] {
            let (status, _, body) = send(&app, get(form)).await;
            assert_eq!(status, StatusCode::OK);
            let link = format!("<a href=\"/.guichet/informations/{activity}\">");
            let (before_form, _) = body.split_once("<form").unwrap();
            assert!(before_form.contains(&link), "{form} does not link its notice before the form: {body}");
        }
        // Each activity a form links is one of the example policies (the notice page exists).
        let examples = crate::policy::load::embedded_examples();
        for activity in ["cantine", "etat-civil"] {
            assert!(examples.iter().any(|f| f.text.contains(&format!("id = \"{activity}\""))), "{activity}");
        }
    }

    #[tokio::test]
    async fn unreadable_form_gives_400_in_french() {
        let app = router();
        let (status, _, body) = send(&app, post("/etat-civil", "text/plain", "hello")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("Formulaire illisible"));
    }

    #[tokio::test]
    async fn api_post_returns_201_with_id_and_received_headers() {
        let app = router();
        let body = r#"{"child_given_names":"Léa","child_family_name":"Martin","child_birth_date":"2018-07-14",
            "school":"École élémentaire Jules-Ferry","parent_email":"p@exemple.fr"}"#;
        let (status, _, body) = send(&app, post("/api/inscriptions", "application/json", body)).await;
        assert_eq!(status, StatusCode::CREATED);
        let record: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(record["id"], 1);
        assert_eq!(record["child_given_names"], "Léa");
        assert_eq!(record["diet"], "");
        assert_eq!(record["received_headers"]["x-guichet-subject"], "abc");

        let body = r#"{"certificate_type":"naissance","family_name":"Dupont","given_names":"Jean",
            "birth_date":"1950-01-02","birth_place":"Démoville","delivery_address":"1 rue de la Mairie"}"#;
        let (status, _, body) = send(&app, post("/api/demandes", "application/json", body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (_, _, list) = send(&app, get("/api/demandes")).await;
        let list: serde_json::Value = serde_json::from_str(&list).unwrap();
        assert_eq!(list[0]["family_name"], "Dupont");
        assert_eq!(list[0]["received_headers"]["content-type"], "application/json");
    }

    #[tokio::test]
    async fn invalid_json_gives_400_with_a_json_error() {
        let app = router();
        for body in ["{not json", r#"{"family_name": 3}"#] {
            let (status, headers, body) = send(&app, post("/api/demandes", "application/json", body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(headers[CONTENT_TYPE], "application/json");
            let error: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(error["error"].is_string());
        }
        let (status, _, body) = send(&app, post("/api/demandes", "application/json", "{}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["missing_fields"][0], "certificate_type");
        assert!(!error["missing_fields"].as_array().unwrap().contains(&json!("reason")));
        let (status, _, _) = send(&app, post("/api/demandes", "text/plain", "{}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn echo_reflects_the_request_as_received() {
        let app = router();
        let request = Request::post("/api/echo?a=1&b=%C3%A9")
            .header("x-guichet-subject", "abc")
            .header("x-forwarded-for", "192.0.2.1")
            .header("accept", "text/html")
            .header("accept", "application/json")
            .body(Body::from("name=Martin"))
            .unwrap();
        let (status, _, body) = send(&app, request).await;
        assert_eq!(status, StatusCode::OK);
        let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["path"], "/api/echo");
        assert_eq!(echo["query"], "a=1&b=%C3%A9");
        assert_eq!(echo["headers"]["x-guichet-subject"], "abc");
        assert_eq!(echo["headers"]["x-forwarded-for"], "192.0.2.1");
        assert_eq!(echo["headers"]["accept"], "text/html, application/json");
        assert_eq!(echo["body"], "name=Martin");

        let (_, _, body) = send(&app, get("/api/echo")).await;
        let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echo["method"], "GET");
        assert!(echo["query"].is_null());
    }

    #[tokio::test]
    async fn received_page_lists_records_newest_first_and_current_headers() {
        let app = router();
        for name in ["Premier", "Second"] {
            let body = CANTEEN_FORM.replace("Martin", name);
            send(&app, post("/cantine", FORM, &body)).await;
        }
        let request = Request::get("/recu").header("x-guichet-subject", "pseudo-123").body(Body::empty()).unwrap();
        let (status, _, body) = send(&app, request).await;
        assert_eq!(status, StatusCode::OK);
        let second = body.find("Second").unwrap();
        let first = body.find("Premier").unwrap();
        assert!(second < first, "newest first");
        assert!(body.contains("pseudo-123"));
        assert!(body.contains("Aucune demande pour le moment."));
    }

    #[tokio::test]
    async fn unknown_records_and_pages_are_404_in_french() {
        let app = router();
        for uri in ["/cantine/7", "/etat-civil/abc", "/nulle-part"] {
            let (status, _, body) = send(&app, get(uri)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            assert!(body.contains("introuvable"), "{uri}");
        }
    }

    #[tokio::test]
    async fn every_page_is_accessible_french_and_script_free() {
        let app = router();
        send(&app, post("/cantine", FORM, CANTEEN_FORM)).await;
        for uri in ["/", "/cantine", "/etat-civil", "/recu", "/cantine/1", "/nulle-part"] {
            let (_, headers, body) = send(&app, get(uri)).await;
            assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8", "{uri}");
            assert!(body.contains("<html lang=\"fr\">"), "{uri}");
            assert!(body.contains("name=\"viewport\""), "{uri}");
            assert_eq!(body.matches("<h1").count(), 1, "{uri}");
            assert_eq!(body.matches("<main").count(), 1, "{uri}");
            assert!(body.contains("Application de démonstration — aucune donnée réelle"), "{uri}");
            assert!(!body.contains("<script"), "{uri}");
            assert!(!body.contains("style=\""), "{uri}");
            assert!(!body.contains("http://") && !body.contains("https://"), "external resource in {uri}");
        }
    }

    #[tokio::test]
    async fn every_form_control_has_a_bound_label() {
        let app = router();
        for uri in ["/cantine", "/etat-civil"] {
            let (_, _, body) = send(&app, get(uri)).await;
            assert!(body.contains("method=\"post\""));
            for control in ["<input", "<select", "<textarea"] {
                for tag in body.split(control).skip(1) {
                    let id = tag.split("id=\"").nth(1).unwrap().split('"').next().unwrap();
                    assert!(body.contains(&format!("for=\"{id}\"")), "{uri}: no label for {id}");
                }
            }
        }
    }

    #[test]
    fn field_specs_match_the_serialized_field_names() {
        fn check<K: Kind>() {
            let value = serde_json::to_value(K::default()).unwrap();
            let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            let mut names: Vec<&str> = K::FIELDS.iter().map(|spec| spec.name).collect();
            names.sort_unstable();
            assert_eq!(keys, names);
            assert!(K::FIELDS.iter().all(|spec| K::default().value_of(spec.name).is_some()));
        }
        check::<CanteenRegistration>();
        check::<CertificateRequest>();
    }

    #[test]
    fn store_drops_the_oldest_records_beyond_its_capacity() {
        let mut store = Store::with_capacity(2);
        for _ in 0..3 {
            store.insert(CanteenRegistration::default(), ReceivedHeaders::default());
        }
        let ids: Vec<u64> = store.newest_first().iter().map(|record| record.id).collect();
        assert_eq!(ids, [3, 2]);
        assert!(store.get(1).is_none());
    }
}
