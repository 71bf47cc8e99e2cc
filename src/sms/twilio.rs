//! Twilio's inbound messages: a form POST (`From`, `To`, `Body`, `MessageSid` …) signed in
//! `X-Twilio-Signature`, answered with TwiML.
//!
//! The signature, as Twilio's "Webhooks security" guide defines it: HMAC-SHA1, keyed with
//! the account's auth token, of the URL Twilio requested (as configured in its console,
//! query string included) followed by every POST parameter, sorted by name, each written
//! as its name then its value; base64. The URL is the configured one, not one rebuilt from
//! the request: behind a TLS terminator or a proxy the daemon cannot know what Twilio saw.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// The request header that carries the signature.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The form's parameters, in the order sent.
pub fn params(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The signature of a request to `url` with `params`.
pub fn signature(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `presented` is the signature of this request, compared in constant time.
pub fn verify(auth_token: &[u8], url: &str, params: &[(String, String)], presented: &str) -> bool {
    STANDARD.decode(presented.trim()).is_ok_and(|presented| {
        mac(auth_token, url, params)
            .verify_slice(&presented)
            .is_ok()
    })
}

/// The HMAC of `url` and the sorted `params`.
fn mac(auth_token: &[u8], url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(auth_token)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The fields of an inbound message that matter here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub sid: String,
    pub from: String,
    pub to: String,
    pub body: String,
}

/// The message in `params`; `None` names the first required field missing.
pub fn message(params: &[(String, String)]) -> Result<Message, &'static str> {
    let field = |name: &'static str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or(name)
    };
    Ok(Message {
        sid: field("MessageSid").or_else(|e| field("SmsSid").map_err(|_| e))?,
        from: field("From")?,
        to: field("To")?,
        body: field("Body")?,
    })
}

/// The TwiML answer: `reply` sent back to the person, or nothing.
pub fn twiml(reply: Option<&str>) -> String {
    let mut xml = String::from(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    match reply {
        None => xml.push_str("<Response/>"),
        Some(text) => {
            xml.push_str("<Response><Message>");
            for c in text.chars() {
                match c {
                    '&' => xml.push_str("&amp;"),
                    '<' => xml.push_str("&lt;"),
                    '>' => xml.push_str("&gt;"),
                    '"' => xml.push_str("&quot;"),
                    '\'' => xml.push_str("&apos;"),
                    c => xml.push(c),
                }
            }
            xml.push_str("</Message></Response>");
        }
    }
    xml.push('\n');
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of Twilio's "Webhooks security" guide: auth token `12345`.
    #[test]
    fn twilios_documented_example_verifies_and_any_change_does_not() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        // Out of order on purpose: the signature sorts them.
        let body = b"To=%2B18005551212&CallSid=CA1234567890ABCDE&Digits=1234\
                     &From=%2B12349013030&Caller=%2B12349013030";
        let p = params(body);
        assert_eq!(signature(b"12345", url, &p), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(verify(b"12345", url, &p, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        assert!(!verify(b"12346", url, &p, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        assert!(!verify(
            b"12345",
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &p,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        let mut tampered = p.clone();
        tampered[2].1 = "9999".into();
        assert!(!verify(
            b"12345",
            url,
            &tampered,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!verify(b"12345", url, &p, "0/KCTR6DLpKmkAf8muzZqo1nDgQ"));
        assert!(!verify(b"12345", url, &p, "not base64!"));
        assert!(!verify(b"12345", url, &p, ""));
    }

    #[test]
    fn the_message_fields_are_read_from_the_form() {
        let p = params(b"ToCountry=US&Body=Stop%21&From=%2B14155550100&To=%2B14155550199&MessageSid=SM0123&NumMedia=0");
        assert_eq!(
            message(&p),
            Ok(Message {
                sid: "SM0123".into(),
                from: "+14155550100".into(),
                to: "+14155550199".into(),
                body: "Stop!".into(),
            })
        );
        assert_eq!(
            message(&params(b"From=%2B1&To=%2B2&Body=x")),
            Err("MessageSid")
        );
    }

    #[test]
    fn twiml_escapes_the_reply() {
        assert_eq!(
            twiml(Some("A & B <c>")),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>A &amp; B &lt;c&gt;</Message></Response>\n"
        );
        assert!(twiml(None).ends_with("<Response/>\n"));
    }
}
