//! OCSP (RFC 6960 / RFC 5019) requests and responses, through rasn-ocsp.
//! INTERFACE SKELETON — the status helper replaces the bodies.
