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
        // that reads well on stderr.
        log::info!(
            target: "pcad::audit",
            audit_action = event.action.as_str(),
            audit_identity = event.identity.as_str(),
            audit_appkey = event.appkey.as_str(),
            audit_store = event.ca_store_id.unwrap_or(0),
            audit_cert = event.cert_id.unwrap_or(0),
            audit_template = event.template_id.unwrap_or(0),
            audit_serial = event.serial_number.as_deref().unwrap_or(""),
            audit_result = event.result.as_str();
            "{} by {} appkey={} store={:?} cert={:?} template={:?} serial={} result={}",
            event.action,
            event.identity,
            event.appkey,
            event.ca_store_id,
            event.cert_id,
            event.template_id,
            event.serial_number.as_deref().unwrap_or("-"),
            event.result
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
