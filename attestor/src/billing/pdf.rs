//! The invoice PDF, rendered from the invoice document with krilla:
//! PDF/A-3b, the canonical JSON embedded as `invoice.json` (an associated
//! file, relationship `Source`), A4 pages in DejaVu Sans Mono (embedded
//! from `attestor/assets/fonts`, subset by krilla; a monospace face so
//! columns align by character count).
//!
//! Byte-for-byte reproducible: the PDF is a function of the document alone.
//! No clock (the metadata and the attachment carry the invoice's issue
//! time), no random ids (krilla derives the file id from the content), no
//! iteration over unordered maps.

use super::document::{InvoiceDocument, sha256_hex};
use super::money::format_usd;
use super::rating::LineKind;
use krilla::Document;
use krilla::SerializeSettings;
use krilla::color::rgb;
use krilla::configure::{Archival, ConfigurationBuilder};
use krilla::embed::{AssociationKind, EmbeddedFile, MimeType};
use krilla::geom::{PathBuilder, Point};
use krilla::metadata::{DateTime, Metadata};
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};

/// The font every invoice uses (Bitstream Vera license, see
/// `assets/fonts/DejaVu-LICENSE`).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

/// Errors rendering a PDF.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the embedded font cannot be loaded")]
    Font,
    #[error("invalid time {0:?} in the document")]
    Time(String),
    #[error("cannot build the PDF: {0}")]
    Build(String),
}

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 48.0;
const SIZE: f32 = 8.5;
/// DejaVu Sans Mono's advance: 1233/2048 em.
const ADVANCE: f32 = 1233.0 / 2048.0;
const LINE: f32 = 12.0;
/// Characters per full-width line.
const COLS: usize = 96;

/// Renders `doc` (whose canonical bytes are `canonical`) as PDF/A-3b.
pub fn render(doc: &InvoiceDocument, canonical: &[u8]) -> Result<Vec<u8>, PdfError> {
    let font = Font::new(FONT.to_vec().into(), 0).ok_or(PdfError::Font)?;
    let issued = pdf_date(&doc.issued_at)?;
    let configuration = ConfigurationBuilder::new()
        .with_archival_validator(Archival::A3_B)
        .finish()
        .map_err(|e| PdfError::Build(format!("{e:?}")))?;
    let settings = SerializeSettings {
        configuration,
        ..SerializeSettings::default()
    };
    let mut pdf = Document::new_with(settings);
    pdf.set_metadata(
        Metadata::new()
            .title(format!("Invoice {}", doc.number))
            .authors(vec![doc.seller.name.clone()])
            .creator("Cloister attestor".to_owned())
            .producer("Cloister attestor (krilla)".to_owned())
            .language("en".to_owned())
            .creation_date(issued)
            .document_id(sha256_hex(canonical)),
    );
    pdf.embed_file(EmbeddedFile {
        path: "invoice.json".to_owned(),
        mime_type: MimeType::new("application/json"),
        description: Some(format!(
            "Invoice {} as canonical JSON (the signed document)",
            doc.number
        )),
        association_kind: AssociationKind::Source,
        data: canonical.to_vec().into(),
        modification_date: Some(issued),
        compress: Some(true),
        location: None,
    })
    .ok_or_else(|| PdfError::Build("invoice.json embedded twice".into()))?;

    let rows = layout(doc, canonical);
    let per_page = ((PAGE_H - 2.0 * MARGIN - 3.0 * LINE) / LINE) as usize;
    let pages: Vec<&[Row]> = rows.chunks(per_page.max(1)).collect();
    let total = pages.len();
    for (i, chunk) in pages.iter().enumerate() {
        let settings = PageSettings::from_wh(PAGE_W, PAGE_H)
            .ok_or_else(|| PdfError::Build("page size".into()))?;
        let mut page = pdf.start_page_with(settings);
        let mut s = page.surface();
        let mut y = MARGIN + LINE;
        for row in chunk.iter() {
            match row {
                Row::Text { text, size, grey } => {
                    text_at(&mut s, &font, MARGIN, y, *size, text, *grey);
                }
                Row::Rule => rule(&mut s, y - LINE * 0.6),
                Row::Blank => {}
            }
            y += LINE;
        }
        let footer = format!("{}  page {} of {}", doc.number, i + 1, total);
        text_at(
            &mut s,
            &font,
            PAGE_W - MARGIN - footer.chars().count() as f32 * SIZE * ADVANCE,
            PAGE_H - MARGIN + LINE,
            SIZE,
            &footer,
            true,
        );
        s.finish();
        page.finish();
    }
    pdf.finish().map_err(|e| PdfError::Build(format!("{e:?}")))
}

/// One laid-out line.
enum Row {
    Text { text: String, size: f32, grey: bool },
    Rule,
    Blank,
}

fn t(text: impl Into<String>) -> Row {
    Row::Text {
        text: text.into(),
        size: SIZE,
        grey: false,
    }
}

fn grey(text: impl Into<String>) -> Row {
    Row::Text {
        text: text.into(),
        size: SIZE,
        grey: true,
    }
}

/// `left` and `right` on one line of `width` characters.
fn spread(left: &str, right: &str, width: usize) -> String {
    let used = left.chars().count() + right.chars().count();
    let pad = width.saturating_sub(used).max(1);
    format!("{left}{}{right}", " ".repeat(pad))
}

/// Splits `s` into pieces of at most `width` characters at spaces where
/// possible.
fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in s.split(' ') {
        let mut word = word.to_owned();
        while word.chars().count() > width {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            out.push(head);
        }
        let need = cur.chars().count() + usize::from(!cur.is_empty()) + word.chars().count();
        if need > width && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&word);
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

const DESC: usize = 42;

fn table_row(desc: &str, qty: &str, incl: &str, unit: &str, amount: &str) -> String {
    format!(
        "{desc:<DESC$} {qty:>11} {incl:>9} {unit:>14} {amount:>16}",
        desc = desc,
        qty = qty,
        incl = incl,
        unit = unit,
        amount = amount
    )
}

fn layout(doc: &InvoiceDocument, canonical: &[u8]) -> Vec<Row> {
    let mut rows = vec![
        Row::Text {
            text: spread("INVOICE", &doc.number, COLS * 85 / 140),
            size: 14.0,
            grey: false,
        },
        Row::Blank,
    ];
    // Seller (left) and invoice facts (right).
    let mut left = vec![doc.seller.name.clone()];
    left.extend(doc.seller.address.iter().cloned());
    if let Some(e) = &doc.seller.email {
        left.push(e.clone());
    }
    if let Some(t) = &doc.seller.tax_id {
        left.push(format!("Tax id {t}"));
    }
    let right = [
        format!("Issued   {}", doc.issued_at),
        format!("Period   {}", doc.period.label),
        format!("From     {}", doc.period.start),
        format!(
            "To       {}{}",
            doc.period.end,
            if doc.period.early { " (early)" } else { "" }
        ),
        format!("Currency {}", doc.currency),
    ];
    for i in 0..left.len().max(right.len()) {
        let l: String = left
            .get(i)
            .map(|s| s.chars().take(46).collect())
            .unwrap_or_default();
        let r = right.get(i).cloned().unwrap_or_default();
        rows.push(t(format!("{l:<48}{r}")));
    }
    rows.push(Row::Blank);
    rows.push(grey("Bill to"));
    rows.push(t(doc.customer.name.clone()));
    rows.push(t(format!("Tenant {}", doc.customer.tenant_id)));
    rows.push(t(format!("Plan   {}", doc.customer.plan)));
    rows.push(Row::Blank);
    rows.push(t(table_row(
        "Description",
        "Quantity",
        "Included",
        "Unit (USD)",
        "Amount (USD)",
    )));
    rows.push(Row::Rule);
    for line in &doc.lines {
        let desc = wrap(&line.description, DESC);
        let (qty, incl, unit) = match line.kind {
            LineKind::Minimum => (String::new(), String::new(), String::new()),
            _ => (
                line.quantity.to_string(),
                line.included_units.to_string(),
                format_usd(line.unit_price_micros),
            ),
        };
        for (i, d) in desc.iter().enumerate() {
            if i == 0 {
                rows.push(t(table_row(
                    d,
                    &qty,
                    &incl,
                    &unit,
                    &format_usd(line.amount_micros),
                )));
            } else {
                rows.push(t(table_row(d, "", "", "", "")));
            }
        }
        rows.push(grey(format!("  {} to {}", line.start, line.end)));
    }
    rows.push(Row::Rule);
    rows.push(t(table_row(
        "Total",
        "",
        "",
        "",
        &format!("{} USD", format_usd(doc.total_micros)),
    )));
    rows.push(Row::Blank);
    for piece in wrap(&format!("Rounding: {}.", doc.rounding), COLS) {
        rows.push(grey(piece));
    }
    rows.push(grey(format!("Document sha256 {}", sha256_hex(canonical))));
    rows.push(grey(
        "The signed invoice JSON is attached to this PDF as invoice.json.",
    ));
    rows
}

fn text_at(s: &mut Surface<'_>, font: &Font, x: f32, y: f32, size: f32, text: &str, grey: bool) {
    let shade = if grey { 90 } else { 0 };
    s.set_fill(Some(Fill {
        paint: rgb::Color::new(shade, shade, shade).into(),
        opacity: NormalizedF32::ONE,
        rule: Default::default(),
    }));
    s.draw_text(
        Point::from_xy(x, y),
        font.clone(),
        size,
        text,
        false,
        TextDirection::Auto,
    );
}

fn rule(s: &mut Surface<'_>, y: f32) {
    let mut pb = PathBuilder::new();
    pb.move_to(MARGIN, y);
    pb.line_to(PAGE_W - MARGIN, y);
    if let Some(path) = pb.finish() {
        s.set_fill(None);
        s.set_stroke(Some(Stroke {
            paint: rgb::Color::new(120, 120, 120).into(),
            width: 0.5,
            ..Stroke::default()
        }));
        s.draw_path(&path);
        s.set_stroke(None);
    }
}

/// A document time (`2026-12-01T00:00:05Z`, optional milliseconds) as a
/// PDF date in UTC.
fn pdf_date(s: &str) -> Result<DateTime, PdfError> {
    let bad = || PdfError::Time(s.to_owned());
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad())?;
    let year = u16::try_from(t.year()).map_err(|_| bad())?;
    Ok(DateTime::new(year)
        .month(u8::from(t.month()))
        .day(t.day())
        .hour(t.hour())
        .minute(t.minute())
        .second(t.second())
        .utc_offset_hour(0)
        .utc_offset_minute(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_invoices_span_pages_and_render_the_same_twice() {
        use crate::billing::document::{DocCustomer, DocLine, DocPeriod, DocSeller};
        let line = |i: i64| DocLine {
            kind: LineKind::Late,
            description: format!(
                "Late usage: attestation.verify (Pro plan), batch {i} of a long tail"
            ),
            plan: "Pro".into(),
            event: Some("attestation.verify".into()),
            start: "2026-10-01T00:00:00Z".into(),
            end: "2026-10-02T00:00:00Z".into(),
            quantity: i,
            included_units: 0,
            billable_quantity: i,
            unit_price_micros: 5_000,
            amount_micros: i * 10_000,
        };
        let doc = InvoiceDocument {
            kind: crate::billing::document::DOCUMENT_TYPE.into(),
            number: "CLO-2026-000009".into(),
            issued_at: "2026-12-01T09:30:00.250Z".into(),
            currency: "USD".into(),
            period: DocPeriod {
                label: "2026-11".into(),
                start: "2026-11-01T00:00:00Z".into(),
                end: "2026-12-01T00:00:00Z".into(),
                early: false,
            },
            seller: DocSeller {
                name: "Seller – ünïcödé GmbH".into(),
                address: vec![],
                email: None,
                tax_id: Some("DE123".into()),
            },
            customer: DocCustomer {
                tenant_id: "tn_x".into(),
                name: "x".into(),
                plan: "Pro".into(),
            },
            lines: (1..=150).map(line).collect(),
            total_micros: 1,
            rounding: "r".into(),
        };
        let json = doc.canonical().unwrap();
        let a = render(&doc, json.as_bytes()).unwrap();
        let b = render(&doc, json.as_bytes()).unwrap();
        assert_eq!(a, b);
        let one = InvoiceDocument {
            lines: vec![line(1)],
            ..doc.clone()
        };
        let short = render(&one, one.canonical().unwrap().as_bytes()).unwrap();
        assert!(a.len() > short.len());
        assert!(
            layout(&doc, json.as_bytes()).len() > 300,
            "several pages of rows"
        );
    }

    #[test]
    fn wrapping_keeps_words_and_width() {
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), vec![""]);
        for piece in wrap(&"word ".repeat(50), DESC) {
            assert!(piece.chars().count() <= DESC);
        }
    }
}
