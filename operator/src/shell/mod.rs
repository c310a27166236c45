//! What the controller and the speaker share, owned by neither: the watches and the change
//! signal ([`watch`]), start-up, the clock, retry waits and memory tuning ([`runtime`]),
//! ConfigurationState writing and its conditions ([`state`]), and the client metrics
//! ([`metrics`]). Neither daemon imports anything from the other.

pub(crate) mod metrics;
pub(crate) mod runtime;
pub(crate) mod state;
pub(crate) mod watch;
