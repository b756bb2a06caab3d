//! The archive: `donnees.json` (machine-readable, `docs/schemas/export.schema.json`),
//! `donnees.html` (printable, plain French, A4), `LISEZMOI.txt` and the schema, in one zip file.

use std::io::Write as _;

use zip::write::SimpleFileOptions;

use super::ExportError;
use super::model::Export;

pub const JSON_NAME: &str = "donnees.json";
pub const HTML_NAME: &str = "donnees.html";
pub const README_NAME: &str = "LISEZMOI.txt";
pub const SCHEMA_NAME: &str = "export.schema.json";

/// The JSON Schema of `donnees.json`, shipped in every archive.
pub const SCHEMA: &str = include_str!("../../../docs/schemas/export.schema.json");

#[derive(askama::Template)]
#[template(path = "rights/export.html")]
struct Page<'a> {
    e: &'a Export,
}

/// The printable page (also what an agent prints at the counter).
pub fn html(e: &Export) -> Result<String, ExportError> {
    askama::Template::render(&Page { e }).map_err(|_| ExportError::Render)
}

pub fn json(e: &Export) -> Result<Vec<u8>, ExportError> {
    serde_json::to_vec_pretty(e).map_err(|_| ExportError::Render)
}

pub fn readme(e: &Export) -> String {
    format!(
        "Vos données – demande {reference}\n\
         Préparé le {at}.\n\n\
         Ce dossier contient :\n\
         - {HTML_NAME} : vos données à lire ou à imprimer. Ouvrez-le avec votre navigateur.\n\
         - {JSON_NAME} : les mêmes données pour un ordinateur, par exemple pour les donner à un autre service.\n\
         \u{20}  Son format est décrit dans {SCHEMA_NAME} (format {format}).\n\n\
         Gardez ce dossier en lieu sûr : il contient des informations sur vous.\n\
         Une question ? Écrivez au délégué à la protection des données de la mairie,\n\
         ou venez au guichet avec la référence {reference}.\n",
        reference = e.reference,
        at = e.generated_at_fr,
        format = e.format,
    )
}

/// The three files in one zip archive.
pub fn archive(e: &Export) -> Result<Vec<u8>, ExportError> {
    let files: [(&str, Vec<u8>); 4] = [
        (HTML_NAME, html(e)?.into_bytes()),
        (JSON_NAME, json(e)?),
        (README_NAME, readme(e).into_bytes()),
        (SCHEMA_NAME, SCHEMA.as_bytes().to_vec()),
    ];
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        zip.start_file(name, options).map_err(|_| ExportError::Render)?;
        zip.write_all(&bytes).map_err(|_| ExportError::Render)?;
    }
    Ok(zip.finish().map_err(|_| ExportError::Render)?.into_inner())
}

/// The archive encrypted with age to `recipient` (an `age1…` public key), for e-mail or post.
pub fn age_encrypt(archive: &[u8], recipient: &str) -> Result<Vec<u8>, ExportError> {
    let recipient: age::x25519::Recipient = recipient.parse().map_err(|_| ExportError::BadRecipient)?;
    age::encrypt(&recipient, archive).map_err(|_| ExportError::Render)
}
