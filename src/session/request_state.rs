//! toolwarden's `requestState` for 2026-07-28 clients, which have no
//! server-to-client requests: a call that needs approval is answered
//! `input_required` with toolwarden's form and a state, and the client's
//! retry brings the person's answer and the state back.
//!
//! The client holds the state between the rounds, so it is sealed: an
//! HMAC-SHA256, under a key kept 0600 in the state directory, over what
//! it binds: its kind, the call (tool, canonical arguments, identity and
//! policy namespace: [`crate::inbox::call_key`], a hash the client can
//! make itself), an expiry, this
//! toolwarden process, a nonce, and the server's own state when it
//! carries one. A state is used once ([`Spent`]).
//!
//! Its text: `toolwarden:v1:KIND.EXPIRES.PROCESS.NONCE.CALL.MAC`, then,
//! when it carries the server's state, `~` and that state verbatim (so a
//! large server state costs no more than itself).

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use tracing::warn;

/// Every state toolwarden makes starts with this.
pub const PREFIX: &str = "toolwarden:v1:";

/// States spent and not yet expired that one process keeps, at most: at
/// 10 000 approved rounds within `--approval-timeout`, new ones are not
/// made (the approval is refused as busy) rather than an old one
/// forgotten.
pub const MAX_SPENT: usize = 10_000;

/// What a state is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// toolwarden asked the person; the retry carries the answer.
    Ask,
    /// The call was approved and the server asked for input of its own:
    /// its next round is not asked about again.
    Continue,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Ask => 'a',
            Kind::Continue => 'c',
        }
    }
}

/// A state that opened: what it was made for.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    pub kind: Kind,
    /// The server's own state, to be given back to it.
    pub server: Option<&'a str>,
    nonce: String,
    expires_at: u64,
}

/// Why a state is refused; the text ends the model's sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Forged,
    Expired,
    OtherCall,
    OtherProcess,
    Spent,
}

impl Invalid {
    pub fn why(self) -> &'static str {
        match self {
            Invalid::Forged => "its approval state (requestState) was not made by toolwarden",
            Invalid::Expired => "its approval state (requestState) has expired",
            Invalid::OtherCall => {
                "its approval state (requestState) was made for another call (another tool, \
                 other arguments, identity or policy)"
            }
            Invalid::OtherProcess => {
                "its approval state (requestState) was made by another toolwarden process"
            }
            Invalid::Spent => "its approval state (requestState) was used already",
        }
    }

    /// The audit log's word for it.
    pub fn word(self) -> &'static str {
        match self {
            Invalid::Forged => "forged",
            Invalid::Expired => "expired",
            Invalid::OtherCall => "other_call",
            Invalid::OtherProcess => "other_process",
            Invalid::Spent => "spent",
        }
    }
}

/// Seals and opens states; one for the session.
pub struct Sealer {
    key: [u8; 32],
    /// This process, so that a state is redeemed where it was made (the
    /// states it spent are known here alone).
    process: String,
    spent: Spent,
}

impl Sealer {
    /// The sealer with the machine's key, `approval.key` in the state
    /// directory, made on first use; when it cannot be kept, a key for
    /// this process, with a warning (states are bound to the process
    /// anyway).
    pub fn machines() -> Sealer {
        let key = crate::audit::state_dir()
            .ok_or_else(|| std::io::Error::other("neither XDG_STATE_HOME nor HOME is set"))
            .and_then(|dir| crate::audit::read_or_create_key(&dir.join("approval.key")));
        let key = key.unwrap_or_else(|e| {
            warn!("cannot keep the approval key ({e}); using one for this session");
            crate::audit::session_key()
        });
        Sealer::with_key(key)
    }

    pub fn with_key(key: [u8; 32]) -> Sealer {
        Sealer {
            key,
            process: crate::audit::unguessable_id().unwrap_or_default(),
            spent: Spent::default(),
        }
    }

    /// A state of `kind` for the call `call_key`, valid until
    /// `expires_at` (ms since the epoch); `None` without randomness for
    /// the nonce, or when [`MAX_SPENT`] states are outstanding.
    pub fn seal(
        &self,
        kind: Kind,
        call_key: &str,
        expires_at: u64,
        server: Option<&str>,
    ) -> Option<String> {
        if self.spent.full() || self.process.is_empty() {
            return None;
        }
        let nonce = crate::audit::unguessable_id()?;
        let head = format!(
            "{}.{expires_at}.{}.{nonce}.{call_key}",
            kind.letter(),
            self.process,
        );
        let mac = self.mac(&head, server);
        let mut state = format!("{PREFIX}{head}.{mac}");
        if let Some(server) = server {
            state.push('~');
            state.push_str(server);
        }
        Some(state)
    }

    /// Opens a state presented with the call `call_key` at `now`, without
    /// spending it.
    pub fn open<'a>(
        &self,
        state: &'a str,
        call_key: &str,
        now: u64,
    ) -> Result<Opened<'a>, Invalid> {
        let body = state.strip_prefix(PREFIX).ok_or(Invalid::Forged)?;
        let (sealed, server) = match body.split_once('~') {
            Some((sealed, server)) => (sealed, Some(server)),
            None => (body, None),
        };
        let (head, mac) = sealed.rsplit_once('.').ok_or(Invalid::Forged)?;
        let parts: Vec<&str> = head.split('.').collect();
        let [kind, expires_at, process, nonce, call] = parts[..] else {
            return Err(Invalid::Forged);
        };
        let kind = match kind {
            "a" => Kind::Ask,
            "c" => Kind::Continue,
            _ => return Err(Invalid::Forged),
        };
        let expires_at: u64 = expires_at.parse().map_err(|_| Invalid::Forged)?;
        if !constant_time_eq(mac.as_bytes(), self.mac(head, server).as_bytes()) {
            return Err(Invalid::Forged);
        }
        if call != call_key {
            return Err(Invalid::OtherCall);
        }
        if process != self.process {
            return Err(Invalid::OtherProcess);
        }
        if now >= expires_at {
            return Err(Invalid::Expired);
        }
        Ok(Opened {
            kind,
            server,
            nonce: nonce.to_owned(),
            expires_at,
        })
    }

    /// Spends an opened state: `false` when it was spent already.
    pub fn spend(&self, opened: &Opened<'_>, now: u64) -> bool {
        self.spent.spend(&opened.nonce, opened.expires_at, now)
    }

    fn mac(&self, head: &str, server: Option<&str>) -> String {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(head.as_bytes());
        match server {
            Some(server) => mac.update(&Sha256::digest(server.as_bytes())),
            None => mac.update(b"-"),
        }
        hex(&mac.finalize().into_bytes())
    }
}

/// The nonces of the states spent, until they expire.
#[derive(Default)]
struct Spent(Mutex<HashMap<String, u64>>);

impl Spent {
    fn spend(&self, nonce: &str, expires_at: u64, now: u64) -> bool {
        let mut spent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if spent.len() >= MAX_SPENT {
            spent.retain(|_, &mut expires| expires > now);
        }
        spent.insert(nonce.to_owned(), expires_at).is_none()
    }

    fn full(&self) -> bool {
        let now = crate::inbox::now_ms();
        let mut spent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if spent.len() >= MAX_SPENT {
            spent.retain(|_, &mut expires| expires > now);
        }
        spent.len() >= MAX_SPENT
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const OTHER: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    #[test]
    fn a_state_opens_for_its_call_once() {
        let sealer = Sealer::with_key([7; 32]);
        let state = sealer.seal(Kind::Ask, CALL, 2_000, None).unwrap();
        assert!(state.starts_with(PREFIX));
        let opened = sealer.open(&state, CALL, 1_000).unwrap();
        assert_eq!((opened.kind, opened.server), (Kind::Ask, None));
        assert!(sealer.spend(&opened, 1_000));
        let again = sealer.open(&state, CALL, 1_001).unwrap();
        assert!(!sealer.spend(&again, 1_001), "a state is used once");
    }

    #[test]
    fn what_a_state_binds_cannot_change() {
        let sealer = Sealer::with_key([7; 32]);
        let state = sealer
            .seal(Kind::Continue, CALL, 2_000, Some("server~state"))
            .unwrap();
        let opened = sealer.open(&state, CALL, 1_000).unwrap();
        assert_eq!(opened.server, Some("server~state"));
        assert_eq!(sealer.open(&state, OTHER, 1_000), Err(Invalid::OtherCall));
        assert_eq!(sealer.open(&state, CALL, 2_000), Err(Invalid::Expired));
        // Another server state, kind or expiry under the same MAC.
        let swapped = state.replace("server~state", "server~other");
        assert_eq!(sealer.open(&swapped, CALL, 1_000), Err(Invalid::Forged));
        let kind = state.replacen(":c.", ":a.", 1);
        assert_eq!(sealer.open(&kind, CALL, 1_000), Err(Invalid::Forged));
        let later = state.replacen(".2000.", ".9000.", 1);
        assert_eq!(sealer.open(&later, CALL, 1_000), Err(Invalid::Forged));
        let cut = state.split('~').next().unwrap();
        assert_eq!(sealer.open(cut, CALL, 1_000), Err(Invalid::Forged));
        for junk in [
            "",
            PREFIX,
            "toolwarden:v1:a.1.2.3",
            "toolwarden:v1:a.x.p.n.c.m",
        ] {
            assert!(sealer.open(junk, CALL, 1_000).is_err(), "{junk}");
        }
    }

    #[test]
    fn another_key_or_process_does_not_open_it() {
        let sealer = Sealer::with_key([7; 32]);
        let state = sealer.seal(Kind::Ask, CALL, 2_000, None).unwrap();
        let other_key = Sealer::with_key([8; 32]);
        assert_eq!(other_key.open(&state, CALL, 1_000), Err(Invalid::Forged));
        let other_process = Sealer::with_key([7; 32]);
        assert_eq!(
            other_process.open(&state, CALL, 1_000),
            Err(Invalid::OtherProcess)
        );
    }
}
