//! Who did what: every state change records one audit event, written before the change is made
//! durable so that both reach the disk in the same fsync, and logged.

use super::{now, Ca, CaError};
use crate::store::AuditEvent;

/// The authenticated caller of a state change.
#[derive(Clone, Debug)]
pub struct Actor {
    pub identity: String,
    pub appkey: String,
}

/// The objects an event is about.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub store: Option<u64>,
    pub cert: Option<u64>,
    pub template: Option<u64>,
    pub serial: Option<Vec<u8>>,
}

impl Ca {
    /// Records an event; `result` is `SUCCESS` or what refused the request.
    pub fn audit(
        &self,
        who: &Actor,
        action: &str,
        target: Target,
        result: &str,
    ) -> Result<(), CaError> {
        let event = AuditEvent {
            event_id: 0,
            time: now(),
            identity: who.identity.clone(),
            appkey: who.appkey.clone(),
            action: action.to_owned(),
            ca_store_id: target.store,
            cert_id: target.cert,
            template_id: target.template,
            serial_number: target.serial.as_deref().map(crate::pki::der_util::hex),
            result: result.to_owned(),
        };
        // Structured fields for the journal (AUDIT_ACTION=, AUDIT_IDENTITY=, ...), and a line
        // that reads well on stderr. Every text field is escaped in both: a value carrying a
        // newline (or any control character) must not be able to write a line of its own.
        let (action, identity, appkey) = (
            escape(&event.action),
            escape(&event.identity),
            escape(&event.appkey),
        );
        let result = escape(&event.result);
        log::info!(
            target: "pcad::audit",
            audit_action = action.as_str(),
            audit_identity = identity.as_str(),
            audit_appkey = appkey.as_str(),
            audit_store = event.ca_store_id.unwrap_or(0),
            audit_cert = event.cert_id.unwrap_or(0),
            audit_template = event.template_id.unwrap_or(0),
            audit_serial = event.serial_number.as_deref().unwrap_or(""),
            audit_result = result.as_str();
            "{action} by {identity} appkey={appkey} store={:?} cert={:?} template={:?} serial={} result={result}",
            event.ca_store_id,
            event.cert_id,
            event.template_id,
            event.serial_number.as_deref().unwrap_or("-"),
        );
        self.db.append_audit(event)?;
        Ok(())
    }

    /// Records a refused state change (best effort: nothing changed, so nothing to make durable).
    pub fn audit_refusal(&self, who: &Actor, action: &str, target: Target, why: &str) {
        if let Err(e) = self.audit(who, action, target, why) {
            log::warn!("audit event of a refused {action} not recorded: {e}");
        }
    }
}

/// A text field as a log line may carry it: control characters (C0, DEL, C1) and the backslash
/// written as escapes, so that what follows an escape is still the same line and field.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn audit_fields_cannot_write_lines() {
        let forged = "x\n2026-01-01T00:00:00Z INFO  pcad::audit: STORE_DELETE by pcad-admin";
        let e = escape(forged);
        assert!(!e.contains('\n'));
        assert!(e.starts_with("x\\n2026"), "{e}");
        assert_eq!(
            escape("a\u{0}b\u{85}c\u{7f}"),
            "a\\u{0000}b\\u{0085}c\\u{007f}"
        );
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(escape("caf\u{e9} ok"), "caf\u{e9} ok");
    }
}
