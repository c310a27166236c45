//! FRR's defaults for what ferrolb configures: FRR leaves a value at its default out of
//! `show running-config`, so the model leaves it out too, and the delta types the default to
//! put a value back. One home for each, read by [`super::model`] and [`super::delta`].

/// BFD `detect-multiplier`.
pub(crate) const BFD_DETECT_MULTIPLIER: u32 = 3;
/// BFD `transmit-interval` and `receive-interval`, in milliseconds.
pub(crate) const BFD_INTERVAL_MS: u32 = 300;
/// BFD `echo transmit-interval` and `echo receive-interval`, in milliseconds.
pub(crate) const BFD_ECHO_INTERVAL_MS: u32 = 50;
/// BFD `minimum-ttl`.
pub(crate) const BFD_MINIMUM_TTL: u32 = 254;
/// `bgp route-map delay-timer`, in seconds: how long bgpd gathers route-map and prefix-list
/// changes before applying them to its neighbours. FRR 10 also starts no neighbour that
/// uses a route-map before this timer has first run, so it delays every session after a
/// start; ferrolb sets [`ROUTE_MAP_DELAY_S`] instead.
pub(crate) const FRR_ROUTE_MAP_DELAY_S: u32 = 5;
/// The route-map delay ferrolb configures: a session starts within a second of bgpd's start,
/// and a burst of changes is still gathered.
pub(crate) const ROUTE_MAP_DELAY_S: u32 = 1;
