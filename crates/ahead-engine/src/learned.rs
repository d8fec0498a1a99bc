//! What each method's finished requests measured about acceptance, kept by the engine so that
//! the next request of the same method starts from it instead of the controller's optimistic
//! prior (see `ahead_core::spec::controller`).
//!
//! Only requests whose drafting schedule may depend on the past read and feed it: greedy ones
//! (their tokens never depend on the schedule) and unseeded sampled ones. A seeded request's
//! tokens depend on which positions had drafts, so it must not depend on earlier requests.

use std::collections::HashMap;
use std::sync::Mutex;

use ahead_core::spec::{Controller, Learned};

/// Acceptance learned per method and setting (the key says which).
#[derive(Debug, Default)]
pub(crate) struct LearnedByMethod {
    by_key: Mutex<HashMap<String, Learned>>,
}

impl LearnedByMethod {
    /// `controller`, starting from what requests under `key` learned, if any did.
    pub fn start(&self, key: &str, controller: Controller) -> Controller {
        match self.by_key.lock().ok().and_then(|m| m.get(key).cloned()) {
            Some(learned) => controller.starting_from(&learned),
            None => controller,
        }
    }

    /// Folds a finished request's controller into what `key` learned.
    pub fn fold(&self, key: &str, finished: &Controller) {
        // A poisoned lock only means a panic elsewhere mid-fold: the estimates stay usable.
        let mut map = match self.by_key.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut learned = map.get(key).cloned().unwrap_or_default();
        learned.fold(finished);
        // A request that never drafted measured nothing: no entry for it.
        if !learned.is_empty() {
            map.insert(key.to_string(), learned);
        }
    }

    /// What requests under `key` learned.
    pub fn get(&self, key: &str) -> Option<Learned> {
        self.by_key.lock().ok().and_then(|m| m.get(key).cloned())
    }
}
