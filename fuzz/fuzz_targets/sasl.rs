//! What a client sends in SaslAuthenticate, before it is authenticated: the SCRAM client-first
//! and client-final messages, PLAIN's message and OAUTHBEARER's initial response (RFC 7628),
//! and SCRAM's saslname escaping. The first byte chooses the parser; none may panic, and a
//! saslname that decodes must encode back to an equivalent one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_security::{oauthbearer, plain, scram};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => {
            let _ = scram::parse_client_first(rest);
        }
        1 => {
            let _ = scram::parse_client_final(rest);
        }
        2 => {
            let _ = plain::parse(rest);
        }
        3 => {
            let _ = oauthbearer::parse_client_initial_response(rest);
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Some(name) = scram::decode_saslname(text) {
                    let encoded = scram::encode_saslname(&name);
                    assert_eq!(scram::decode_saslname(&encoded).as_deref(), Some(name.as_str()));
                }
            }
        }
    }
});
