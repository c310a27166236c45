//! What the controller and the speaker share, owned by neither: the watches and the change
//! signal ([`watch`]), start-up, the clock, retry waits and memory tuning ([`runtime`]),
//! ConfigurationState writing and its conditions ([`state`]), and the client metrics
//! ([`metrics`]). Neither daemon imports anything from the other.

pub mod metrics;
pub mod runtime;
pub mod state;
pub mod watch;
