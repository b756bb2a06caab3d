//! The console's lists as files: CSV (UTF-8, `;`-separated as French spreadsheets expect,
//! formula guard) and ODS (the format the register's CNIL export already uses, same crate).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A list as the pages show it and the exports write it.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The sheet's name and the file's stem (`demandes`, `consentements`, `journal`).
    pub name: &'static str,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// One line of a list, as the cells of its row.
pub trait Cells {
    fn cells(&self) -> Vec<String>;
}

impl Table {
    pub fn of<L: Cells>(name: &'static str, headers: Vec<&'static str>, lines: &[L]) -> Self {
        Self { name, headers, rows: lines.iter().map(Cells::cells).collect() }
    }
}

/// The file format asked with `?format=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ods,
}

impl Format {
    pub fn parse(s: Option<&str>) -> Option<Self> {
        match s {
            Some("csv") => Some(Self::Csv),
            Some("ods") => Some(Self::Ods),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Csv(#[from] csv::Error),
    #[error(transparent)]
    Ods(#[from] spreadsheet_ods::OdsError),
    #[error("the CSV writer could not finish")]
    Finish,
}

/// A cell a spreadsheet would read as a formula is written as text.
fn guarded(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{cell}") } else { cell.to_owned() }
}

pub fn to_csv(t: &Table) -> Result<Vec<u8>, ExportError> {
    let mut w = csv::WriterBuilder::new().delimiter(b';').from_writer(Vec::new());
    w.write_record(&t.headers)?;
    for row in &t.rows {
        w.write_record(row.iter().map(|c| guarded(c)))?;
    }
    w.into_inner().map_err(|_| ExportError::Finish)
}

pub fn to_ods(t: &Table) -> Result<Vec<u8>, ExportError> {
    use spreadsheet_ods::{Sheet, WorkBook};
    let mut wb = WorkBook::new_empty();
    let mut sheet = Sheet::new(t.name);
    for (col, h) in (0u32..).zip(&t.headers) {
        sheet.set_value(0, col, *h);
    }
    for (row, cells) in (1u32..).zip(&t.rows) {
        for (col, c) in (0u32..).zip(cells) {
            sheet.set_value(row, col, c.as_str());
        }
    }
    wb.push_sheet(sheet);
    Ok(spreadsheet_ods::write_ods_buf(&mut wb, Vec::new())?)
}

/// The table as a download in `format` (never cached: it may name pseudonyms).
pub fn download(t: &Table, format: Format) -> Result<Response, ExportError> {
    let (body, mime, ext) = match format {
        Format::Csv => (to_csv(t)?, "text/csv; charset=utf-8", "csv"),
        Format::Ods => (to_ods(t)?, "application/vnd.oasis.opendocument.spreadsheet", "ods"),
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}.{ext}\"", t.name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_is_semicolon_separated_with_a_formula_guard() {
        let t = Table { name: "journal", headers: vec!["a", "b"], rows: vec![vec!["=SUM(A1)".into(), "x;y".into()]] };
        let text = String::from_utf8(to_csv(&t).unwrap()).unwrap();
        assert_eq!(text, "a;b\n'=SUM(A1);\"x;y\"\n");
        let ods = to_ods(&t).unwrap();
        assert!(ods.starts_with(b"PK"), "an ODS file is a zip");
    }
}
