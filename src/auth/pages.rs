//! The HTML pages of the authorization flow: sign-in, consent with scope
//! narrowing and a patient picker, and errors. Plain forms, no scripts, no
//! assets fetched from anywhere.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1b1f24}\
label{display:block;margin:.6rem 0}input[type=text],input[type=password],select{width:100%;padding:.4rem}\
button{padding:.5rem 1rem;margin:.8rem .5rem 0 0}.err{color:#b42318}.muted{color:#57606a;font-size:.9rem}";

/// A page with security headers: no framing (clickjacking), no caching, no scripts.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1>{body}</body></html>",
        esc(title),
        esc(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    resp
}

/// An error shown to the user (when redirecting to the client is not safe).
pub fn error(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Authorization error",
        &format!("<p class=\"err\">{}</p>", esc(message)),
    )
}

/// The sign-in form.
pub fn login(pending: &str, client_name: &str, message: Option<&str>) -> Response {
    let err = message
        .map(|m| format!("<p class=\"err\">{}</p>", esc(m)))
        .unwrap_or_default();
    let status = if message.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    page(
        status,
        "Sign in to Vesta",
        &format!(
            "<p><b>{}</b> asks to use your Vesta account.</p>{err}\
             <form method=\"post\" action=\"/auth/login\">\
             <input type=\"hidden\" name=\"pending\" value=\"{}\">\
             <label>Username <input type=\"text\" name=\"username\" autocomplete=\"username\" required></label>\
             <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">Sign in</button></form>",
            esc(client_name),
            esc(pending)
        ),
    )
}

/// One selectable patient in the picker.
pub struct PatientChoice {
    pub id: String,
    pub label: String,
}

/// The consent form: one checkbox per scope (all ticked), and a patient
/// picker when the app asked for `launch/patient` without a launch.
pub fn consent(
    pending: &str,
    client_name: &str,
    scopes: &[String],
    picker: Option<&[PatientChoice]>,
    message: Option<&str>,
) -> Response {
    let err = message
        .map(|m| format!("<p class=\"err\">{}</p>", esc(m)))
        .unwrap_or_default();
    let boxes: String = scopes
        .iter()
        .map(|s| {
            format!(
                "<label><input type=\"checkbox\" name=\"scope\" value=\"{}\" checked> <code>{}</code></label>",
                esc(s),
                esc(s)
            )
        })
        .collect();
    let picker = match picker {
        None => String::new(),
        Some(list) => {
            let options: String = list
                .iter()
                .map(|p| {
                    format!(
                        "<option value=\"{}\">{}</option>",
                        esc(&p.id),
                        esc(&p.label)
                    )
                })
                .collect();
            format!(
                "<h2>Patient</h2><label>Choose the patient <select name=\"patient\"><option value=\"\">(choose)</option>{options}</select></label>\
                 <label class=\"muted\">or type a patient id <input type=\"text\" name=\"patient_id\"></label>"
            )
        }
    };
    let status = if message.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    page(
        status,
        "Allow access?",
        &format!(
            "<p><b>{}</b> asks for the access below. Untick what it should not have.</p>{err}\
             <form method=\"post\" action=\"/auth/consent\">\
             <input type=\"hidden\" name=\"pending\" value=\"{}\">{boxes}{picker}\
             <button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
            esc(client_name),
            esc(pending)
        ),
    )
}
